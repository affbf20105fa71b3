//! Network labs: lab.conf (Netkit/Kathará) and lab.toml readers, planner and runner.

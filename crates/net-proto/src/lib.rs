//! Pure network protocol formats: Ethernet/VLAN frame views, uml_switch and VDE control messages, management console commands. No I/O.

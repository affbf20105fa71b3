//! `umlkit` subcommands of the switch area: `umlkit switch`, `umlkit bench
//! switch`, and the `uml_switch` multi-call entry point.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use net_proto::link::{LinkDir, LinkSpec};
use switchd::{ExitReason, Logger, Server};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a virtual Ethernet switch for UML guests and VDE clients
    ///
    /// Serves a VDE switch directory (DIR/ctl: vde_plug, UML eth=vde and
    /// eth=daemon) and/or a uml_switch control socket (-u), one switching
    /// fabric for all of them, plus an optional management console (-M).
    Switch(SwitchArgs),
}

#[derive(Args, Debug)]
pub struct SwitchArgs {
    /// VDE switch directory (control socket DIR/ctl) [default: /var/run/vde.ctl
    /// as root, else /tmp/vde.ctl, unless -u is given alone]
    #[arg(short = 's', long = "sock", visible_aliases = ["vdesock", "unix"], value_name = "DIR")]
    sock: Option<PathBuf>,
    /// uml_switch control socket (UML eth=daemon,,unix,CTL)
    #[arg(short = 'u', long = "uml-ctl", value_name = "CTL")]
    uml_ctl: Option<PathBuf>,
    /// Act as a hub: flood every frame, no learning, no VLANs
    #[arg(short = 'x', long)]
    hub: bool,
    /// Number of ports (valid port numbers are 0..N-1)
    #[arg(short = 'n', long = "numports", value_name = "N", default_value_t = switch_core::DEFAULT_NUMPORTS)]
    numports: u32,
    /// Octal mode of the control and port sockets [default: 0600]
    #[arg(short = 'm', long = "mode", value_name = "MODE", value_parser = parse_octal)]
    mode: Option<u32>,
    /// Octal mode of the switch directory [default: derived from -m, else 02700]
    #[arg(long = "dirmode", value_name = "MODE", value_parser = parse_octal)]
    dirmode: Option<u32>,
    /// Group owning the directory and sockets
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    group: Option<String>,
    /// Management console socket
    #[arg(short = 'M', long = "mgmt", value_name = "MGMT")]
    mgmt: Option<PathBuf>,
    /// Octal mode of the management socket
    #[arg(long = "mgmtmode", value_name = "MODE", value_parser = parse_octal, default_value = "0600")]
    mgmtmode: u32,
    /// Run in the background (logs go to syslog)
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Write the process id to this file (after daemonizing)
    #[arg(short = 'p', long = "pidfile", value_name = "PIDFILE")]
    pidfile: Option<PathBuf>,
    /// Run the management commands of this file at start (vde_switch's rc
    /// file: one command per line, `#` comments)
    #[arg(short = 'f', long = "rcfile", value_name = "RCFILE")]
    rcfile: Option<PathBuf>,
    /// Impair port PORT (both directions, or `in`/`out` only), e.g.
    /// `--link 1:delay=20ms,loss=1%` or `--link 2:out:rate=10mbit`
    #[arg(long = "link", value_name = "PORT[:in|out]:SPEC", value_parser = parse_port_link)]
    link: Vec<(u32, LinkDir, LinkSpec)>,
    /// Cable this switch to another one: dial URL (DIR, DIR[PORT],
    /// vde://DIR[PORT]; umlkit's or the C vde_switch) and keep the cable up,
    /// reconnecting when either end restarts. Repeatable. Two cables between
    /// the same switches make a loop: a broadcast storm
    #[arg(long = "uplink", value_name = "URL")]
    uplink: Vec<String>,
    /// Also serve UML's vector transport on DIR/vec (guests boot with
    /// `vecN:transport=bess,dst=DIR/vec`): frames in batches, no helper process
    #[arg(long = "vector")]
    vector: bool,
    /// Largest frame payload forwarded: 1500 (default, as vde_switch) up to
    /// 9216 for jumbo frames between vector guests booted with `mtu=N`
    /// (`umlkit run --net DIR,vector,mtu=9000`); legacy transports stay at 1500
    #[arg(long = "mtu", value_name = "N")]
    mtu: Option<usize>,
    /// Join a VXLAN segment (RFC 7348) as one port: frames to MACs learned
    /// behind a peer go to it, the rest to every remote and the group.
    /// `vni=N,remote=IP[,remote=IP...][,group=MCAST][,local=IP][,port=4789][,reply=port|source]`;
    /// `reply=source` answers peers at their UDP source port (vdeplug4 vxvde)
    #[arg(long = "vxlan", value_name = "SPEC", value_parser = parse_vxlan)]
    vxlan: Vec<net_proto::vxlan::VxlanSpec>,
    /// Give the guests a way out without root, as QEMU's user networking
    /// (libslirp) does: one port of the switch answers DHCP (10.0.2.15 on),
    /// DNS (10.0.2.3) and carries their TCP/UDP out through this user's own
    /// sockets, gateway 10.0.2.2 (also the host's 127.0.0.1)
    #[arg(long = "nat")]
    nat: bool,
    /// Forward a host port to a guest's port through the NAT:
    /// `tcp|udp:[HOSTIP:]HOSTPORT:GUESTIP:GUESTPORT`, e.g.
    /// `tcp:8080:10.0.2.15:80` (HOSTIP defaults to 127.0.0.1). Repeatable
    #[arg(long = "forward", value_name = "SPEC", requires = "nat")]
    forward: Vec<String>,
    /// With --nat: refuse the guests' connections to the host's loopback
    /// (127.0.0.1 reached as 10.0.2.2)
    #[arg(long = "nat-no-host-loopback", requires = "nat")]
    nat_no_host_loopback: bool,
}

fn parse_vxlan(s: &str) -> Result<net_proto::vxlan::VxlanSpec, String> {
    net_proto::vxlan::VxlanSpec::parse(s)
}

fn parse_port_link(s: &str) -> Result<(u32, LinkDir, LinkSpec), String> {
    let (port, rest) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}': expected PORT:SPEC, e.g. 1:delay=20ms"))?;
    let port: u32 = port
        .parse()
        .map_err(|_| format!("'{s}': '{port}' is not a port number"))?;
    let (dir, spec) = match rest
        .split_once(':')
        .and_then(|(d, spec)| Some((LinkDir::parse(d)?, spec)))
    {
        Some(x) => x,
        None => (LinkDir::Both, rest),
    };
    let spec = LinkSpec::parse(spec).map_err(|e| e.to_string())?;
    Ok((port, dir, spec))
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("'{s}' is not an octal mode"))
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Switch(a) => run_switch(a),
    }
}

fn run_switch(a: SwitchArgs) -> anyhow::Result<ExitCode> {
    let o = switchd::options::SwitchFlags {
        sock: a.sock,
        uml_ctl: a.uml_ctl,
        hub: a.hub,
        numports: a.numports,
        mode: a.mode,
        dirmode: a.dirmode,
        group: a.group,
        mgmt: a.mgmt,
        mgmtmode: a.mgmtmode,
        vector: a.vector,
        mtu: a.mtu,
    }
    .options()?;
    let pidfile = a
        .pidfile
        .as_deref()
        .map(switchd::options::absolute)
        .transpose()?;
    let log = Logger::new("umlkit switch: ");
    let mut server = match Server::bind(o.clone(), log) {
        Ok(s) => s,
        Err(e) => {
            // vde_switch exits 255 when the socket is live
            let code = if matches!(e, switchd::Error::InUse(_)) {
                255
            } else {
                1
            };
            errln!("umlkit switch: {}", crate::cmd::chain_of(&e));
            return Ok(ExitCode::from(code));
        }
    };
    for (port, dir, spec) in &a.link {
        if let Err(e) = server.set_link(*port, *dir, *spec) {
            errln!("umlkit switch: --link {port}: {}", crate::cmd::chain_of(&e));
            server.close();
            return Ok(ExitCode::from(1));
        }
    }
    if let Some(rc) = &a.rcfile {
        if let Err(e) = server.run_rc_file(rc) {
            errln!("umlkit switch: {}", crate::cmd::chain_of(&e));
            server.close();
            return Ok(ExitCode::from(1));
        }
    }
    // VXLAN sockets are bound (and groups joined) before anything runs
    let mut vxlans = Vec::new();
    for spec in &a.vxlan {
        if o.vde_dir.is_none() {
            errln!("umlkit switch: --vxlan needs a switch directory (-s DIR)");
            server.close();
            return Ok(ExitCode::from(1));
        }
        match switchd::vxlan::bind(spec) {
            Ok(sock) => vxlans.push((spec.clone(), sock)),
            Err(e) => {
                errln!(
                    "umlkit switch: --vxlan vni={}: {}",
                    spec.vni,
                    super::chain_of(&e)
                );
                server.close();
                return Ok(ExitCode::from(1));
            }
        }
    }
    // the NAT's host forwards are bound before anything runs
    let nat = if a.nat {
        let r = if o.vde_dir.is_none() {
            Err(switchd::Error::NatNeedsDir)
        } else {
            switchd::nat::NatSpec::new(&a.forward, a.nat_no_host_loopback)
                .and_then(|spec| switchd::nat::Nat::new(&spec).map(|n| (n, spec)))
        };
        match r {
            Ok(n) => Some(n),
            Err(e) => {
                errln!("umlkit switch: {}", super::chain_of(&e));
                server.close();
                return Ok(ExitCode::from(1));
            }
        }
    } else {
        None
    };
    // uplinks are checked (and relative paths resolved) before -d moves to /
    let mut uplinks = Vec::new();
    for url in &a.uplink {
        let bad = if o.vde_dir.is_none() {
            Some("needs a switch directory (-s DIR)".to_string())
        } else {
            net_proto::stream::VdeUrl::parse(url)
                .err()
                .map(|e| e.to_string())
        };
        if let Some(why) = bad {
            errln!("umlkit switch: --uplink {url}: {why}");
            server.close();
            return Ok(ExitCode::from(1));
        }
        uplinks.push(if !url.contains("://") && !url.starts_with('/') {
            switchd::options::absolute(std::path::Path::new(url))?
                .display()
                .to_string()
        } else {
            url.clone()
        });
    }
    if a.daemon {
        umlkit_sys::net::daemonize(false, false).context("cannot daemonize")?;
        server.logger_mut().use_syslog("umlkit-switch");
    }
    if let Some(p) = &pidfile {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pidfile {}", p.display()))?;
    }
    if !a.daemon {
        errln!("umlkit switch: {}", switchd::options::describe(&o));
    }
    for (spec, sock) in vxlans {
        let mut log = Logger::new("umlkit switch: ");
        if a.daemon {
            log.use_syslog("umlkit-switch");
        }
        if let Some(dir) = &o.vde_dir {
            switchd::vxlan::spawn(dir.clone(), spec, sock, log);
        }
    }
    if let (Some((nat, spec)), Some(dir)) = (nat, &o.vde_dir) {
        if !a.daemon {
            errln!("umlkit switch: NAT: {}", spec.describe());
        }
        let mut log = Logger::new("umlkit switch: ");
        let mut peer_log = Logger::new("umlkit switch: ");
        if a.daemon {
            log.use_syslog("umlkit-switch");
            peer_log.use_syslog("umlkit-switch");
        }
        switchd::nat::spawn(
            nat,
            dir.clone(),
            o.numports.saturating_sub(1),
            log,
            peer_log,
        );
    }
    for url in uplinks {
        let mut log = Logger::new("umlkit switch: ");
        if a.daemon {
            log.use_syslog("umlkit-switch");
        }
        if let Some(dir) = &o.vde_dir {
            switchd::plug::spawn_uplink(dir.clone(), url, log);
        }
    }
    let reason = server.run()?;
    if let Some(p) = &pidfile {
        let _ = std::fs::remove_file(p);
    }
    match reason {
        ExitReason::Shutdown => {}
        ExitReason::Signal(sig) => {
            if !a.daemon {
                errln!("umlkit switch: caught signal {sig}, cleaning up and exiting");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// Throughput and latency of `umlkit switch` vs vde_switch, measured
    /// side by side with vdeblast (libvdeplug clients)
    Switch(BenchArgs),
    /// Guest-to-guest TCP throughput and ping RTT over vector, daemon and
    /// vde guests on `umlkit switch`, vde guests on vde_switch and daemon
    /// guests on uml_switch, in one run; the switches' CPU per frame; VXLAN
    /// frames per second between two namespaces next to Linux bridge+vxlan
    /// (root only)
    Net(NetArgs),
}

#[derive(Args, Debug)]
pub struct NetArgs {
    /// TCP throughput runs per path (median and min-max reported)
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// MiB per TCP run (128 KiB writes)
    #[arg(long, default_value_t = 100)]
    mb: u64,
    /// Pings per path, 10 ms apart (RTT p50/p99 from the per-packet times)
    #[arg(long, default_value_t = 200)]
    pings: u32,
    /// Guest memory in MiB
    #[arg(long, default_value_t = 64)]
    mem: u32,
    /// Frames per VXLAN blast (64 bytes)
    #[arg(long, default_value_t = 200_000)]
    vxlan_frames: u64,
    /// Skip the VXLAN part
    #[arg(long)]
    no_vxlan: bool,
    /// tcpblast source (.c, built static with gcc) or a static executable
    /// [default: $UMLKIT_TCPBLAST, else shared/bench/tcpblast.c beside the
    /// repository checkout]
    #[arg(long, value_name = "PATH")]
    tcpblast: Option<PathBuf>,
    /// vdeblast source (.c) or executable, for the VXLAN part
    #[arg(long, value_name = "PATH")]
    vdeblast: Option<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Frames per throughput run
    #[arg(long, default_value_t = 200_000)]
    frames: u64,
    /// Frame sizes in bytes, comma separated
    #[arg(long, value_delimiter = ',', default_values_t = vec![64usize, 1500])]
    sizes: Vec<usize>,
    /// Round trips per latency run
    #[arg(long, default_value_t = 5000)]
    pingpong: u64,
    /// Rounds (the median is reported)
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// vdeblast source (.c, compiled with gcc) or a built executable
    /// [default: $UMLKIT_VDEBLAST, else shared/bench/vdeblast.c beside the
    /// repository checkout]
    #[arg(long, value_name = "PATH")]
    vdeblast: Option<PathBuf>,
    /// Also measure umlkit with a neutral link configured on every port
    /// (`--link N:none`) and with `umlkit capture` writing every frame to a
    /// file, in the same run
    #[arg(long)]
    links: bool,
}

pub fn bench(b: Bench) -> anyhow::Result<ExitCode> {
    let a = match b {
        Bench::Switch(a) => a,
        Bench::Net(n) => return bench_net(n),
    };
    warn_if_debug_build();
    let cfg = bench::switch::SwitchBench {
        frames: a.frames,
        sizes: a.sizes,
        pingpong: a.pingpong,
        rounds: a.rounds,
        vdeblast: a.vdeblast,
        links: a.links,
        umlkit: std::env::current_exe().context("cannot find the umlkit executable")?,
    };
    bench::switch::run(
        &cfg,
        &mut |l: &str| errln!("{l}"),
        &mut crate::cmd::out::Stdout,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Benchmarks of a debug build say so first: its numbers mean little.
fn warn_if_debug_build() {
    if cfg!(debug_assertions) {
        errln!("warning: this is a debug build of umlkit; build with `cargo build --release -p umlkit` for meaningful numbers");
    }
}

fn bench_net(a: NetArgs) -> anyhow::Result<ExitCode> {
    for (name, v) in [
        ("--runs", a.runs as u64),
        ("--mb", a.mb),
        ("--pings", u64::from(a.pings)),
        ("--mem", u64::from(a.mem)),
        ("--vxlan-frames", a.vxlan_frames),
    ] {
        if v == 0 {
            anyhow::bail!("{name} must be at least 1");
        }
    }
    warn_if_debug_build();
    let cfg = bench::net::NetBench {
        runs: a.runs,
        mb: a.mb,
        pings: a.pings,
        mem_mb: a.mem,
        vxlan_frames: a.vxlan_frames,
        no_vxlan: a.no_vxlan,
        tcpblast: a.tcpblast,
        vdeblast: a.vdeblast,
        umlkit: std::env::current_exe().context("cannot find the umlkit executable")?,
    };
    bench::net::run(
        &cfg,
        a.json,
        &mut |l: &str| errln!("{l}"),
        &mut crate::cmd::out::Stdout,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `uml_switch` (uml-utilities) drop-in: same options, messages and exit codes.
pub fn multicall_uml_switch(args: &[OsString]) -> ExitCode {
    let u = match switchd::options::uml_switch(args, &mut crate::cmd::out::Stdout) {
        Ok(u) => u,
        Err(switchd::Error::UmlSwitchUsage) => {
            err!("{}", switchd::options::UML_SWITCH_USAGE);
            return ExitCode::from(1);
        }
        Err(e) => {
            errln!("uml_switch: {e}");
            return ExitCode::from(1);
        }
    };
    let (o, ctl, daemon) = (u.options, u.ctl, u.daemon);
    let server = match Server::bind(o, Logger::new("")) {
        Ok(s) => s,
        Err(switchd::Error::InUse(_)) => {
            errln!("{}", switchd::options::uml_switch_in_use(&ctl));
            return ExitCode::from(1);
        }
        Err(e) => {
            errln!("uml_switch: {}", crate::cmd::chain_of(&e));
            return ExitCode::from(1);
        }
    };
    outln!("uml_switch attached to unix socket '{}'", ctl.display());
    if daemon {
        if let Err(e) = umlkit_sys::net::daemonize(false, true) {
            errln!("uml_switch: daemon failed: {e}");
            return ExitCode::from(1);
        }
    }
    match server.run() {
        Ok(ExitReason::Signal(sig)) => {
            outln!("Caught signal {sig}, cleaning up and exiting");
            umlkit_sys::net::reraise(sig);
            ExitCode::from(128 + sig as u8)
        }
        Ok(ExitReason::Shutdown) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("uml_switch: {}", crate::cmd::chain_of(&e));
            ExitCode::from(1)
        }
    }
}

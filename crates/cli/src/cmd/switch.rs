//! `umlkit` subcommands of the switch area: `umlkit switch`, `umlkit bench
//! switch`, and the `uml_switch` multi-call entry point.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use net_proto::link::{LinkDir, LinkSpec};
use switchd::{ExitReason, Flavor, Logger, Options, Server};

#[path = "switch_bench.rs"]
mod switch_bench;

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
    /// Join a VXLAN segment (RFC 7348) as one port: frames to MACs learned
    /// behind a peer go to it, the rest to every remote and the group.
    /// `vni=N,remote=IP[,remote=IP...][,group=MCAST][,local=IP][,port=4789]`
    #[arg(long = "vxlan", value_name = "SPEC", value_parser = parse_vxlan)]
    vxlan: Vec<net_proto::vxlan::VxlanSpec>,
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

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("bad path {}", p.display()))
}

fn run_switch(a: SwitchArgs) -> anyhow::Result<ExitCode> {
    let vde_dir = match (&a.sock, &a.uml_ctl) {
        (Some(d), _) => Some(absolute(d)?),
        (None, Some(_)) => None,
        (None, None) => Some(PathBuf::from(if umlkit_sys::net::euid() == 0 {
            "/var/run/vde.ctl"
        } else {
            "/tmp/vde.ctl"
        })),
    };
    let mut o = Options {
        vde_dir,
        ..Options::default()
    };
    o.uml_ctl = a.uml_ctl.as_deref().map(absolute).transpose()?;
    o.mgmt = a.mgmt.as_deref().map(absolute).transpose()?;
    o.hub = a.hub;
    o.vector = a.vector;
    if a.vector && o.vde_dir.is_none() {
        anyhow::bail!("--vector needs a switch directory (-s DIR): its socket is DIR/vec");
    }
    if a.numports == 0 {
        anyhow::bail!("the number of ports must be at least 1");
    }
    if a.numports > switch_core::MAX_NUMPORTS {
        anyhow::bail!(
            "-n {}: at most {} ports are supported",
            a.numports,
            switch_core::MAX_NUMPORTS
        );
    }
    o.numports = a.numports;
    match (a.mode, a.dirmode) {
        (Some(m), Some(d)) => {
            o.mode = m;
            o.dirmode = d;
        }
        (Some(m), None) => {
            o.mode = m;
            o.dirmode = switchd::dirmode_from_mode(m);
        }
        (None, Some(d)) => {
            o.dirmode = d;
            o.mode = d & 0o666;
        }
        (None, None) => {}
    }
    o.uml_mode = a.mode;
    o.mgmt_mode = a.mgmtmode;
    if let Some(g) = &a.group {
        let gid = match umlkit_sys::net::group_id(g) {
            Some(gid) => gid,
            None => g
                .parse()
                .ok()
                .with_context(|| format!("No such group '{g}'"))?,
        };
        o.group = Some(gid);
    }
    let pidfile = a.pidfile.as_deref().map(absolute).transpose()?;
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
            eprintln!("umlkit switch: {}", crate::cmd::chain_of(&e));
            return Ok(ExitCode::from(code));
        }
    };
    for (port, dir, spec) in &a.link {
        if let Err(e) = server.set_link(*port, *dir, *spec) {
            eprintln!("umlkit switch: --link {port}: {}", crate::cmd::chain_of(&e));
            server.close();
            return Ok(ExitCode::from(1));
        }
    }
    if let Some(rc) = &a.rcfile {
        if let Err(e) = server.run_rc_file(rc) {
            eprintln!("umlkit switch: {}", crate::cmd::chain_of(&e));
            server.close();
            return Ok(ExitCode::from(1));
        }
    }
    // VXLAN sockets are bound (and groups joined) before anything runs
    let mut vxlans = Vec::new();
    for spec in &a.vxlan {
        if o.vde_dir.is_none() {
            eprintln!("umlkit switch: --vxlan needs a switch directory (-s DIR)");
            server.close();
            return Ok(ExitCode::from(1));
        }
        match switchd::vxlan::bind(spec) {
            Ok(sock) => vxlans.push((spec.clone(), sock)),
            Err(e) => {
                eprintln!(
                    "umlkit switch: --vxlan vni={}: {}",
                    spec.vni,
                    super::chain_of(&e)
                );
                server.close();
                return Ok(ExitCode::from(1));
            }
        }
    }
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
            eprintln!("umlkit switch: --uplink {url}: {why}");
            server.close();
            return Ok(ExitCode::from(1));
        }
        uplinks.push(if !url.contains("://") && !url.starts_with('/') {
            absolute(Path::new(url))?.display().to_string()
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
        let mut what = Vec::new();
        if let Some(d) = &o.vde_dir {
            what.push(format!("switch directory {}", d.display()));
            if o.vector {
                what.push(format!(
                    "vector socket {}",
                    switchd::vector_socket(d).display()
                ));
            }
        }
        if let Some(u) = &o.uml_ctl {
            what.push(format!("uml_switch socket {}", u.display()));
        }
        if let Some(m) = &o.mgmt {
            what.push(format!("management socket {}", m.display()));
        }
        eprintln!(
            "umlkit switch: {} with {} ports on {}",
            if o.hub { "hub" } else { "switch" },
            o.numports,
            what.join(", ")
        );
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
                eprintln!("umlkit switch: caught signal {sig}, cleaning up and exiting");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// Throughput and latency of `umlkit switch` vs vde_switch, measured
    /// side by side with vdeblast (libvdeplug clients)
    Switch(switch_bench::BenchArgs),
}

pub fn bench(b: Bench) -> anyhow::Result<ExitCode> {
    match b {
        Bench::Switch(a) => switch_bench::run(a),
    }
}

const UML_SWITCH_USAGE: &str =
    "Usage : uml_switch [ -unix control-socket ] [ -hub ] [ -tap tap-device ]\n\
or : uml_switch -compat-v0 [ -unix control-socket data-socket ] [ -hub ] [ -tap tap-device ]\n";

/// `uml_switch` (uml-utilities) drop-in: same options, messages and exit codes.
pub fn multicall_uml_switch(args: &[OsString]) -> ExitCode {
    let mut ctl = PathBuf::from("/tmp/uml.ctl");
    let mut data: Option<PathBuf> = None;
    let mut hub = false;
    let mut daemon = false;
    let mut compat = false;
    let usage = || {
        eprint!("{UML_SWITCH_USAGE}");
        ExitCode::from(1)
    };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        match a.as_ref() {
            "-unix" => {
                let Some(p) = args.get(i + 1) else {
                    return usage();
                };
                ctl = PathBuf::from(p);
                i += 1;
                if compat {
                    let Some(d) = args.get(i + 1) else {
                        return usage();
                    };
                    data = Some(PathBuf::from(d));
                    i += 1;
                }
            }
            "-hub" => {
                outln!("uml_switch will be a hub instead of a switch");
                hub = true;
            }
            "-compat-v0" => {
                outln!("Control protocol 0 compatibility");
                compat = true;
                data.get_or_insert_with(|| PathBuf::from("/tmp/uml.data"));
            }
            "-daemon" => daemon = true,
            "-tap" => {
                eprintln!(
                    "uml_switch: -tap is not supported by this implementation (umlkit); \
                     attach the tap device with a VDE tap plug instead"
                );
                return ExitCode::from(1);
            }
            _ => return usage(),
        }
        i += 1;
    }
    let mut o = Options {
        uml_ctl: Some(ctl.clone()),
        v0_data: if compat { data } else { None },
        hub,
        numports: 4096,
        flavor: Flavor::UmlSwitch,
        ..Options::default()
    };
    if let Ok(abs) = std::path::absolute(&ctl) {
        o.uml_ctl = Some(abs);
    }
    let server = match Server::bind(o, Logger::new("")) {
        Ok(s) => s,
        Err(switchd::Error::InUse(_)) => {
            let p = ctl.display();
            eprintln!(
                "The control socket '{p}' has another server attached to it\nYou can either\n\tremove '{p}'\n\tor rerun with a different, unused filename for a socket"
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("uml_switch: {}", crate::cmd::chain_of(&e));
            return ExitCode::from(1);
        }
    };
    outln!("uml_switch attached to unix socket '{}'", ctl.display());
    if daemon {
        if let Err(e) = umlkit_sys::net::daemonize(false, true) {
            eprintln!("uml_switch: daemon failed: {e}");
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
            eprintln!("uml_switch: {}", crate::cmd::chain_of(&e));
            ExitCode::from(1)
        }
    }
}

//! `umlkit lab ...`: network labs (Netkit/Kathará lab.conf, lab.toml).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cmd::{shown, shown_lines};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use lab::model::Dialect;
use lab::plan::Plan;
use lab::runner::{self, GuestBackend};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Network labs: start, inspect, test and clean Netkit/Kathará labs
    Lab {
        #[command(subcommand)]
        cmd: LabCmd,
    },
}

/// Options every lab command takes.
#[derive(Args, Debug, Clone)]
pub struct LabOpts {
    /// Force the lab.conf dialect instead of detecting it
    #[arg(long, global = true)]
    pub dialect: Option<Dialect>,
    /// Root of the per-lab state folders (default $UMLKIT_LAB_STATE, else
    /// $XDG_RUNTIME_DIR/umlkit-lab, else /tmp/umlkit-lab-UID); must be yours
    /// and not writable by others
    #[arg(long, global = true)]
    pub state_root: Option<PathBuf>,
    /// Memory floor in MiB for machines asking for less (default 64, measured; lab.toml [lab] min_mem)
    #[arg(long, global = true, value_name = "MIB")]
    pub min_mem: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// Start the lab (switches, then machines in lab.dep waves)
    Start {
        /// Lab folder
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Machines booting at the same time (default: 8 x cores, at least 16, bounded by memory)
        #[arg(short = 'p', long)]
        parallel: Option<usize>,
        /// Seconds a machine may take to boot
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Start only these machines (and what they depend on)
        machines: Vec<String>,
        /// Trust this lab: share the folder live through hostfs (machines can
        /// write to it) and allow host-side kernel arguments in M[append]
        #[arg(long)]
        host_access: bool,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Stop machines gracefully (M.shutdown, then shared.shutdown), then the switches
    Stop {
        #[arg(default_value = ".")]
        dir: PathBuf,
        machines: Vec<String>,
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Kill machines at once (no shutdown scripts)
    Crash {
        #[arg(default_value = ".")]
        dir: PathBuf,
        machines: Vec<String>,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Stop then start machines
    Restart {
        #[arg(default_value = ".")]
        dir: PathBuf,
        machines: Vec<String>,
        #[arg(short = 'p', long)]
        parallel: Option<usize>,
        /// Trust this lab (see `lab start --host-access`)
        #[arg(long)]
        host_access: bool,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Kill whatever runs and remove every file the lab made (the lab folder stays)
    Clean {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Machines, states, interfaces, addresses, domains
    Status {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// A machine's full boot and startup logs (umlkit's boot steps,
    /// /var/log/shared.{log,err}, /var/log/startup.{log,err})
    Logs {
        /// Lab folder
        #[arg(short = 'd', long, default_value = ".")]
        dir: PathBuf,
        machine: String,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Run a command in a machine: `umlkit lab exec pc1 -- ping -c1 10.0.0.2`
    Exec {
        /// Lab folder
        #[arg(short = 'd', long, default_value = ".")]
        dir: PathBuf,
        /// Seconds before giving up
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        machine: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// A line-oriented shell on a machine (each line runs through `lab exec`)
    Console {
        #[arg(short = 'd', long, default_value = ".")]
        dir: PathBuf,
        machine: String,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Plug a running machine into a collision domain (new interface, via mconsole)
    Connect {
        #[arg(short = 'd', long, default_value = ".")]
        dir: PathBuf,
        machine: String,
        domain: String,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Shape a running lab: SPEC (`delay=20ms,loss=1%`, `none` to clear)
    /// on every port of a collision domain (frames on their way out), or on
    /// one machine's interface MACHINE:IF (both directions); without SPEC,
    /// show the settings and counters
    Link {
        #[arg(short = 'd', long, default_value = ".")]
        dir: PathBuf,
        /// DOMAIN or MACHINE:IF
        target: String,
        spec: Option<String>,
        /// Without SPEC: the settings and counters as JSON (docs/json.md)
        #[arg(long, conflicts_with = "spec")]
        json: bool,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Record a running lab's collision domain (see `umlkit capture`)
    Capture {
        #[arg(short = 'd', long, default_value = ".")]
        dir: PathBuf,
        #[arg(required_unless_present = "list")]
        domain: Option<String>,
        /// List the captures started with the lab (`capture = true`)
        #[arg(long, conflicts_with_all = ["domain", "machine", "write", "count", "pcap"])]
        list: bool,
        /// Only this machine's interface, as MACHINE:ethN
        #[arg(long, value_name = "M:IF")]
        machine: Option<String>,
        /// Write pcapng to FILE (`-` = standard output) instead of text
        #[arg(short = 'w', long = "write", value_name = "FILE")]
        write: Option<PathBuf>,
        /// Stop after COUNT frames
        #[arg(short = 'c', long = "count", value_name = "COUNT")]
        count: Option<u64>,
        /// Classic pcap instead of pcapng (with -w)
        #[arg(long, requires = "write")]
        pcap: bool,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Unplug a running machine from a collision domain
    Disconnect {
        #[arg(short = 'd', long, default_value = ".")]
        dir: PathBuf,
        machine: String,
        domain: String,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Topology as DOT (stdout) and/or SVG
    Graph {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Write an SVG picture here (laid out by Graphviz neato: Debian package graphviz)
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Write DOT here instead of stdout
        #[arg(long)]
        dot: Option<PathBuf>,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Serve a web view of the lab: live topology, machine states and
    /// logs, a terminal per machine, start/stop/restart (prints the URL
    /// with its access token; Ctrl-C ends)
    Web {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        listen: crate::cmd::web::WebOpts,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Run lab.test.toml checks and/or Netkit _test/ signatures on the running lab
    Test {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Netkit mode: write _test/signatures/ from the current results
        #[arg(long)]
        write_signatures: bool,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Write lab.toml from lab.conf (and lab.dep)
    Convert {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Write here instead of DIR/lab.toml ("-" = stdout)
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Replace an existing lab.toml
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Read the lab and show the plan (dialect, machines, domains, waves, notes)
    Info {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Measure: lab start until every machine answers, vs the bare kernel
    #[command(hide = true)]
    Bench {
        /// Machine counts to try
        #[arg(long, value_delimiter = ',', default_value = "10,40")]
        sizes: Vec<usize>,
        /// Runs per size (the median is reported)
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(short = 'p', long)]
        parallel: Option<usize>,
        #[command(flatten)]
        opts: LabOpts,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Lab { cmd } = cmd;
    match cmd {
        LabCmd::Start {
            dir,
            parallel,
            timeout,
            machines,
            host_access,
            opts,
        } => {
            let (mut plan, loaded) = load_plan(&dir, &opts, true)?;
            trust(&mut plan, &loaded, host_access)?;
            let backend = backend(&plan)?;
            let waves = lab::plan::select(&plan, &machines)?;
            let p = parallel.unwrap_or_else(|| default_parallel(&plan));
            let t0 = Instant::now();
            let n: usize = waves.iter().map(Vec::len).sum();
            errln!(
                "lab {}: {} switches, {n} machines, {} waves, {p} in parallel",
                plan.name,
                plan.switches.len(),
                waves.len()
            );
            for (prog, pkg) in image::hosttools::missing_on_host() {
                errln!(
                    "  note: the default image has busybox's {prog}, not the full one \
                     (install the host package {pkg} for it)"
                );
            }
            runner::start_until(
                &backend,
                &plan,
                &waves,
                p,
                Duration::from_secs(timeout),
                &mut |s: &str| errln!("  {}", shown(s)),
                &interrupt_on_signal(),
            )
            .context("lab start failed (`umlkit lab clean` removes what was started)")?;
            errln!(
                "lab {} up in {:.1} s",
                plan.name,
                t0.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Stop {
            dir,
            machines,
            timeout,
            opts,
        } => {
            let plan = load_plan_or_saved(&dir, &opts)?;
            runner::stop(
                &backend(&plan)?,
                &plan,
                &machines,
                Duration::from_secs(timeout),
                &mut |s: &str| errln!("  {}", shown(s)),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Crash {
            dir,
            machines,
            opts,
        } => {
            let plan = load_plan_or_saved(&dir, &opts)?;
            runner::crash(&plan, &machines)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Restart {
            dir,
            machines,
            parallel,
            host_access,
            opts,
        } => {
            let (mut plan, loaded) = load_plan(&dir, &opts, false)?;
            trust(&mut plan, &loaded, host_access)?;
            let b = backend(&plan)?;
            runner::stop(
                &b,
                &plan,
                &machines,
                Duration::from_secs(30),
                &mut |s: &str| errln!("  {}", shown(s)),
            )?;
            let waves = lab::plan::select(&plan, &machines)?;
            let p = parallel.unwrap_or_else(|| default_parallel(&plan));
            runner::start(
                &b,
                &plan,
                &waves,
                p,
                Duration::from_secs(120),
                &mut |s: &str| errln!("  {}", shown(s)),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Clean { dir, opts } => {
            let plan = load_plan_or_saved(&dir, &opts)?;
            runner::clean(&plan)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Status { dir, json, opts } => {
            let (plan, _) = load_plan(&dir, &opts, false)?;
            let status = lab::status::gather(&backend(&plan)?, &plan)?;
            let st = &status.machines;
            if json {
                let v = status.json(&plan);
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!(
                    "lab {} ({}, {})",
                    shown(&plan.name),
                    plan.dialect,
                    plan.lab_dir.display()
                );
                for m in st {
                    outln!(
                        "{:<16} {:<11} pid {:<8} {} MiB",
                        shown(&m.name),
                        m.state,
                        m.pid.map(|p| p.to_string()).unwrap_or("-".into()),
                        m.mem_mb
                    );
                    if let Some(e) = &m.boot_error {
                        for l in e.lines().take(6) {
                            outln!("    boot: {}", shown(l));
                        }
                    }
                    if let (Some(e), Some(mp)) = (&m.startup_errors, plan.machine(&m.name)) {
                        outln!(
                            "    {}",
                            shown_lines(&runner::startup_errors_text(&plan, mp, e))
                        );
                    }
                    for i in &m.interfaces {
                        let lost = if m.lost_links.contains(&i.domain) {
                            "  LINK LOST (switch died)"
                        } else {
                            ""
                        };
                        outln!(
                            "    {:<5} {:<12} {}  {}{lost}",
                            shown(&i.name),
                            shown(&i.domain),
                            i.mac,
                            i.addresses.join(" ")
                        );
                        let planned = plan
                            .machine(&m.name)
                            .and_then(|mp| mp.interfaces.iter().find(|x| x.name == i.name));
                        if let Some(l) = planned.and_then(|p| status.iface_link(&plan, &m.name, p))
                        {
                            outln!("          port {}: {l}", planned.map_or(0, |p| p.port));
                        }
                    }
                }
                for (s, link) in plan.switches.iter().zip(&status.links) {
                    let state = status.switch_state(&s.domain);
                    outln!(
                        "domain {:<12} {} {:<8} {}",
                        shown(&s.domain),
                        if s.hub { "hub   " } else { "switch" },
                        state,
                        s.ctl().display()
                    );
                    if let Some(l) = link {
                        outln!("    link: {l}");
                    }
                }
                for c in &status.captures {
                    outln!("capture {c}");
                }
            }
            // Anything that does not work as started makes the exit code 1.
            use lab::status::Problem;
            let problems: Vec<String> = status
                .problems()
                .into_iter()
                .map(|p| match p {
                    Problem::DeadSwitch(d) => format!("the switch of domain {} is dead", shown(&d)),
                    Problem::DeadCapture(c, log) => format!(
                        "the capture {} ended early (see {})",
                        shown(&c),
                        log.display()
                    ),
                    Problem::Dead(m) => format!("{} is dead", shown(&m)),
                    Problem::Interrupted(m) => format!(
                        "{}: its boot steps never finished (the lab start was killed)",
                        shown(&m)
                    ),
                    Problem::Failed(m) => format!("{}: its boot steps failed", shown(&m)),
                    Problem::LostLinks(m, ds) => format!(
                        "{} lost its link to domain {}",
                        shown(&m),
                        ds.iter().map(|d| shown(d)).collect::<Vec<_>>().join(", ")
                    ),
                })
                .collect();
            if problems.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            for p in &problems {
                errln!("umlkit: {p}");
            }
            errln!(
                "umlkit: fix with `umlkit lab restart {}` (or name the machines to restart)",
                plan.lab_dir.display()
            );
            Ok(ExitCode::from(1))
        }
        LabCmd::Web { dir, listen, opts } => {
            let plan = load_plan_or_saved(&dir, &opts)?;
            crate::cmd::web::serve(vec![plan], &state_root(&opts), &listen, false)
        }
        LabCmd::Logs { dir, machine, opts } => {
            let (plan, _) = load_plan(&dir, &opts, false)?;
            let m = plan
                .machine(&machine)
                .with_context(|| format!("no machine {machine} in lab {}", plan.name))?;
            out!("{}", runner::logs(&backend(&plan)?, &plan, m)?);
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Exec {
            dir,
            timeout,
            machine,
            cmd,
            opts,
        } => {
            let (plan, _) = load_plan(&dir, &opts, false)?;
            let m = running_machine(&plan, &machine)?;
            let line = if cmd.len() == 1 {
                cmd[0].clone()
            } else {
                cmd.iter()
                    .map(|a| lab::script::shq(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let out = backend(&plan)?.exec(m, &line, Duration::from_secs(timeout))?;
            out!("{}", out.stdout);
            err!("{}", out.stderr);
            Ok(ExitCode::from(out.code.clamp(0, 255) as u8))
        }
        LabCmd::Console { dir, machine, opts } => {
            let (plan, _) = load_plan(&dir, &opts, false)?;
            let m = running_machine(&plan, &machine)?;
            let b = backend(&plan)?;
            if let Some(mut c) = b.console_command(&plan, m) {
                let st = c.status().context("cannot run the console")?;
                return Ok(ExitCode::from(st.code().unwrap_or(1).clamp(0, 255) as u8));
            }
            errln!("{machine}: each line runs in the guest (/bin/sh); Ctrl-D ends");
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                err!("{machine}# ");
                line.clear();
                if stdin.read_line(&mut line)? == 0 {
                    break;
                }
                if line.trim().is_empty() {
                    continue;
                }
                match b.exec(m, line.trim(), Duration::from_secs(300)) {
                    Ok(o) => {
                        out!("{}", o.stdout);
                        err!("{}", o.stderr);
                    }
                    Err(e) => errln!("{}", crate::cmd::chain_of(&e)),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Link {
            dir,
            target,
            spec,
            json,
            opts,
        } => {
            let plan = load_plan_or_saved(&dir, &opts)?;
            if json {
                let v = lab_link_json(&plan, &target)?;
                outln!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some((m, ifname)) = target.split_once(':') {
                let domain = plan
                    .machine(m)
                    .and_then(|mp| mp.interfaces.iter().find(|i| i.name == ifname))
                    .map(|i| i.domain.clone())
                    .with_context(|| format!("no interface {} in the lab", shown(&target)))?;
                let mgmt = domain_console(&plan, &domain)?;
                let port = machine_port(&plan, &mgmt, &domain, &target)?;
                let mut c = switchd::client::Console::connect(&mgmt)?;
                match spec {
                    None => match c.command(&format!("link/show {port}")) {
                        Ok(t) => out!("{t}"),
                        // 1006: the port has no settings (a neutral link)
                        Err(switchd::Error::Refused { .. }) => outln!(
                            "{}: port {port} of domain {}: no link settings",
                            shown(&target),
                            shown(&domain)
                        ),
                        Err(e) => return Err(e.into()),
                    },
                    Some(spec) => {
                        let spec: net_proto::link::LinkSpec = spec
                            .parse()
                            .with_context(|| format!("{}", shown(&target)))?;
                        c.command(&format!("link/set {port} {spec}"))?;
                        outln!(
                            "{}: {spec} on port {port} of domain {}",
                            shown(&target),
                            shown(&domain)
                        );
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let domain = target;
            let mgmt = domain_console(&plan, &domain)?;
            let mut c = switchd::client::Console::connect(&mgmt)?;
            match spec {
                None => {
                    out!("{}", c.command("link/show")?);
                }
                Some(spec) => {
                    let spec: net_proto::link::LinkSpec =
                        spec.parse().with_context(|| format!("domain {domain}"))?;
                    let info = c.command("port/showinfo")?;
                    let n: u32 = info
                        .lines()
                        .find_map(|l| l.strip_prefix("Numports="))
                        .and_then(|v| v.trim().parse().ok())
                        .with_context(|| format!("{}: no port count", mgmt.display()))?;
                    for p in 0..n {
                        c.command(&format!("link/set {p} out {spec}"))?;
                    }
                    outln!("domain {}: {spec} on {n} ports", shown(&domain));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Capture {
            dir,
            domain,
            list,
            machine,
            write,
            count,
            pcap,
            opts,
        } => {
            let plan = load_plan_or_saved(&dir, &opts)?;
            if list {
                for c in lab::links::capture_status(&plan)? {
                    outln!("{c}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let domain = domain.context("a collision domain (or --list) is needed")?;
            let mgmt = domain_console(&plan, &domain)?;
            let port = match machine {
                None => None,
                Some(mi) => Some(machine_port(&plan, &mgmt, &domain, &mi)?),
            };
            let si = plan
                .switches
                .iter()
                .position(|s| s.domain == domain)
                .expect("domain_console found it");
            let opts = switchd::capture::CaptureOptions {
                port,
                count,
                names: plan.port_names(si),
                ..Default::default()
            };
            crate::cmd::link::capture_to(&mgmt, opts, write.as_deref(), pcap)
        }
        LabCmd::Connect {
            dir,
            machine,
            domain,
            opts,
        } => {
            let (plan, _) = load_plan(&dir, &opts, false)?;
            let name = runner::connect(&backend(&plan)?, &plan, &machine, &domain)?;
            outln!(
                "{}: {name} plugged into {}",
                shown(&machine),
                shown(&domain)
            );
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Disconnect {
            dir,
            machine,
            domain,
            opts,
        } => {
            let (plan, _) = load_plan(&dir, &opts, false)?;
            let name = runner::disconnect(&backend(&plan)?, &plan, &machine, &domain)?;
            outln!(
                "{}: {name} unplugged from {}",
                shown(&machine),
                shown(&domain)
            );
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Graph {
            dir,
            svg,
            dot,
            opts,
        } => {
            let (plan, _) = load_plan(&dir, &opts, false)?;
            let d = lab::graph::dot(&plan);
            // laid out first: a missing Graphviz writes no file at all
            let picture = svg.as_ref().map(|_| lab::graph::svg(&plan)).transpose()?;
            match dot {
                Some(p) => std::fs::write(&p, d)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None if svg.is_none() => out!("{d}"),
                None => {}
            }
            if let (Some(p), Some(picture)) = (svg, picture) {
                std::fs::write(&p, picture)
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Test {
            dir,
            write_signatures,
            opts,
        } => lab_test(&dir, write_signatures, &opts),
        LabCmd::Convert {
            dir,
            output,
            force,
            opts,
        } => {
            let loaded = lab::load::load_lab(&dir, opts.dialect)?;
            if loaded.source != lab::load::Source::LabConf {
                bail!(
                    "{}: no lab.conf to convert (lab.toml is already the description)",
                    loaded.dir.display()
                );
            }
            for n in &loaded.notes {
                errln!("note: {}", shown(n));
            }
            let mut text = format!(
                "# lab.toml written by `umlkit lab convert` from lab.conf ({})\n",
                loaded.dialect_reason
            );
            text.push_str(&loaded.lab.to_toml());
            match output.as_deref() {
                Some(p) if p == Path::new("-") => out!("{text}"),
                Some(p) => {
                    if p.exists() && !force {
                        bail!("{} exists (use --force to replace it)", p.display());
                    }
                    std::fs::write(p, text)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                    errln!("wrote {}", p.display());
                }
                None => {
                    // Inside the (untrusted) lab folder: never through a symlink.
                    let rel = Path::new("lab.toml");
                    if loaded.dir.join(rel).symlink_metadata().is_ok() && !force {
                        bail!(
                            "{} exists (use --force to replace it)",
                            loaded.dir.join(rel).display()
                        );
                    }
                    let p = lab::confine::write_inside(&loaded.dir, rel, text.as_bytes())?;
                    errln!("wrote {}", p.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Info { dir, json, opts } => {
            let (plan, loaded) = load_plan(&dir, &opts, false)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&plan)?);
                return Ok(ExitCode::SUCCESS);
            }
            outln!("lab {} at {}", shown(&plan.name), plan.lab_dir.display());
            let meta = &loaded.lab.lab;
            for (k, v) in [
                ("description", &meta.description),
                ("version", &meta.version),
                ("author", &meta.author),
                ("email", &meta.email),
                ("web", &meta.web),
            ] {
                if let Some(v) = v {
                    outln!("{k}: {}", shown(v));
                }
            }
            outln!("dialect: {}", loaded.dialect_reason);
            for n in loaded.notes.iter().chain(plan.notes.iter()) {
                outln!("note: {}", shown(n));
            }
            if !loaded.ignored_keys.is_empty() {
                outln!("ignored keys: {}", shown(&loaded.ignored_keys.join("; ")));
            }
            outln!("state: {}", plan.state_dir.display());
            for s in &plan.switches {
                outln!(
                    "domain {} ({})",
                    shown(&s.domain),
                    if s.hub { "hub" } else { "switch" }
                );
            }
            for m in &plan.machines {
                let ifs: Vec<String> = m
                    .interfaces
                    .iter()
                    .map(|i| format!("{}={} {}", i.name, shown(&i.domain), i.mac))
                    .collect();
                outln!(
                    "machine {} mem {} MiB image {}: {}",
                    shown(&m.name),
                    m.mem_mb,
                    image_shown(m),
                    ifs.join(", ")
                );
            }
            for (i, w) in plan.waves.iter().enumerate() {
                outln!("wave {i}: {}", shown(&w.join(" ")));
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Bench {
            sizes,
            runs,
            parallel,
            opts,
        } => bench(&sizes, runs, parallel, &opts),
    }
}

/// The image line of `lab info`: the image and its state, then the name
/// the lab gave and how it became that image when not directly
/// (`kathara (built) for kathara/pox via "kathara/pox" = "kathara/sdn" (FILE [images])`).
fn image_shown(m: &lab::plan::MachinePlan) -> String {
    let state = image_state(m.image.as_deref());
    match (&m.image_name, &m.image_via) {
        (Some(n), Some(via)) => format!("{state} for {} via {}", shown(n), shown(via)),
        _ => state,
    }
}

/// `default`, or `kathara (built)` / `kathara (not built: built on first lab start)`.
fn image_state(recipe: Option<&str>) -> String {
    let Some(r) = recipe else {
        return "default".into();
    };
    match image::debian::resolve(r, &Default::default()) {
        Ok(Some(i)) if i.is_built() => format!("{r} (built)"),
        Ok(_) => format!("{r} (not built: built on first lab start)"),
        Err(e) => format!("{r} (cannot build here: {})", crate::cmd::chain_of(&e)),
    }
}

fn state_root(opts: &LabOpts) -> PathBuf {
    lab::open::state_root(opts.state_root.as_deref())
}

/// The console of the `umlkit switch` serving `domain`.
fn domain_console(plan: &Plan, domain: &str) -> anyhow::Result<PathBuf> {
    let sw = plan
        .switches
        .iter()
        .find(|s| s.domain == domain)
        .with_context(|| {
            format!(
                "lab {}: no collision domain {}",
                shown(&plan.name),
                shown(domain)
            )
        })?;
    sw.mgmt.clone().with_context(|| {
        format!(
            "domain {}: its switch has no console (a lab started before umlkit had one): restart the lab",
            shown(domain)
        )
    })
}

/// The switch port of MACHINE:IF on `domain`: the port whose MAC table
/// entry is the interface's planned MAC, else (no frame sent yet) its
/// planned port, which the machine asked for.
/// `lab link --json TARGET`: `link show --json`'s objects for the domain's
/// ports (or the one port of MACHINE:IF), each with `domain`, and
/// `machine`/`interface` where a machine's interface owns the port.
fn lab_link_json(plan: &Plan, target: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let (domain, only) = match target.split_once(':') {
        Some((m, ifname)) => {
            let domain = plan
                .machine(m)
                .and_then(|mp| mp.interfaces.iter().find(|i| i.name == ifname))
                .map(|i| i.domain.clone())
                .with_context(|| format!("no interface {} in the lab", shown(target)))?;
            (domain, Some(target))
        }
        None => (target.to_string(), None),
    };
    let mgmt = domain_console(plan, &domain)?;
    let port_of = |mi: &str| machine_port(plan, &mgmt, &domain, mi).ok();
    let owners: Vec<(u32, String, String)> = plan
        .machines
        .iter()
        .flat_map(|m| m.interfaces.iter().map(move |i| (m, i)))
        .filter(|(_, i)| i.domain == domain)
        .filter_map(|(m, i)| {
            let mi = format!("{}:{}", m.name, i.name);
            Some((port_of(&mi)?, m.name.clone(), i.name.clone()))
        })
        .collect();
    let want = match only {
        Some(mi) => Some(machine_port(plan, &mgmt, &domain, mi)?),
        None => None,
    };
    let text = switchd::client::command(&mgmt, "link/show")?;
    Ok(crate::cmd::link::show_json(&text)?
        .into_iter()
        .filter(|o| match want {
            Some(p) => o["port"].as_u64() == Some(u64::from(p)),
            None => true,
        })
        .map(|mut o| {
            o.insert("domain".into(), domain.clone().into());
            let port = o["port"].as_u64();
            if let Some((_, m, i)) = owners.iter().find(|(p, _, _)| Some(u64::from(*p)) == port) {
                o.insert("machine".into(), m.clone().into());
                o.insert("interface".into(), i.clone().into());
            }
            serde_json::Value::Object(o)
        })
        .collect())
}

fn machine_port(plan: &Plan, mgmt: &Path, domain: &str, mi: &str) -> anyhow::Result<u32> {
    let (m, ifname) = mi
        .split_once(':')
        .with_context(|| format!("'{}': expected MACHINE:IF, e.g. pc1:eth0", shown(mi)))?;
    let machine = plan
        .machine(m)
        .with_context(|| format!("no machine {} in the lab", shown(m)))?;
    let iface = machine
        .interfaces
        .iter()
        .find(|i| i.name == ifname && i.domain == domain)
        .with_context(|| {
            format!(
                "{}: no interface {} on domain {}",
                shown(m),
                shown(ifname),
                shown(domain)
            )
        })?;
    // where the switch learned the MAC, if it did (the truth when the lab
    // file changed since the machine started), else the planned port
    let table = switchd::client::command(mgmt, "hash/print")?;
    let mac = iface.mac.to_ascii_lowercase();
    table
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains(&format!("addr: {mac} ")))
        .find_map(|l| l.split("to port:").nth(1)?.split_whitespace().next()?.parse().ok())
        .or((iface.port > 0).then_some(iface.port))
        .with_context(|| {
            format!(
                "{}: the switch has not seen {mac} yet (no frame sent): capture the whole domain instead",
                shown(mi)
            )
        })
}

/// The plan to stop or clean a lab with: from the lab folder, or, when its
/// description no longer loads, the plan saved in its state folder at
/// start (so a broken lab.conf cannot keep a lab running).
fn load_plan_or_saved(dir: &Path, opts: &LabOpts) -> anyhow::Result<Plan> {
    let err = match load_plan(dir, opts, false) {
        Ok((plan, _)) => return Ok(plan),
        Err(e) => e,
    };
    let Some((plan, saved)) = lab::open::saved_plan(dir, &state_root(opts))? else {
        return Err(err);
    };
    errln!(
        "note: the lab does not load ({}); using the plan saved at start ({})",
        crate::cmd::error_chain(&err),
        saved.display()
    );
    Ok(plan)
}

/// Read the lab folder and plan it. Notes go to stderr when `verbose`.
fn load_plan(
    dir: &Path,
    opts: &LabOpts,
    verbose: bool,
) -> anyhow::Result<(Plan, lab::load::Loaded)> {
    let (plan, loaded) = lab::open::load(dir, opts.dialect, opts.min_mem, &state_root(opts))?;
    if verbose {
        errln!("dialect: {}", loaded.dialect_reason);
        for n in loaded.notes.iter().chain(plan.notes.iter()) {
            errln!("note: {}", shown(n));
        }
    }
    Ok((plan, loaded))
}

/// A lab folder is untrusted: refuse kernel arguments that open host
/// resources unless the user vouches for the lab (`--host-access`).
fn trust(plan: &mut Plan, loaded: &lab::load::Loaded, host_access: bool) -> anyhow::Result<()> {
    if host_access {
        plan.host_access = true;
        errln!(
            "note: --host-access: machines share {} live through hostfs and may write to it",
            plan.lab_dir.display()
        );
    } else {
        lab::confine::check_kernel_args(loaded)?;
    }
    Ok(())
}

/// An [`runner::Interrupt`] triggered by the first SIGINT/SIGTERM (Ctrl-C):
/// the start launches no further machine and names what it started. A
/// second signal ends the process at once, as without this. (Processes we
/// spawn get a clear signal mask from `std::process::Command`.)
fn interrupt_on_signal() -> runner::Interrupt {
    use umlkit_sys::process::{SIGINT, SIGTERM};
    let interrupt = runner::Interrupt::new();
    let Ok(sigs) = umlkit_sys::net::SignalFd::new(&[SIGINT, SIGTERM]) else {
        return interrupt; // signals keep their default action
    };
    let i = interrupt.clone();
    std::thread::spawn(move || {
        let mut seen = false;
        while sigs.wait().is_ok() {
            let Some(sig) = sigs.read() else { continue };
            if seen {
                umlkit_sys::net::reraise(sig);
            }
            seen = true;
            errln!("  interrupted: starting no further machine (again to quit at once)");
            i.trigger();
        }
    });
    interrupt
}

/// The backend for this lab (guest-crate guests).
fn backend(plan: &Plan) -> anyhow::Result<GuestBackend> {
    let exe = std::env::current_exe().ok();
    Ok(runner::backend_for(plan, exe.as_deref())?)
}

fn running_machine<'a>(plan: &'a Plan, name: &str) -> anyhow::Result<&'a lab::plan::MachinePlan> {
    let m = plan
        .machine(name)
        .with_context(|| format!("no machine {name} in lab {}", plan.name))?;
    let state = runner::State::load(plan)?;
    if !runner::machine_alive(&state, name) {
        bail!("{name} is not running (umlkit lab start)");
    }
    Ok(m)
}

fn default_parallel(plan: &Plan) -> usize {
    lab::sizing::default_parallel(plan)
}

fn lab_test(dir: &Path, write_signatures: bool, opts: &LabOpts) -> anyhow::Result<ExitCode> {
    use lab::test_run::TestEvent;
    let (plan, _) = load_plan(dir, opts, false)?;
    let b = backend(&plan)?;
    // a lab that is not running cannot be tested (exit 125, not failed checks)
    // (a folder with nothing to test is told so first, by the test runner)
    let has_tests =
        plan.lab_dir.join("lab.test.toml").is_file() || plan.lab_dir.join("_test").is_dir();
    let state = runner::State::load(&plan)?;
    if has_tests
        && !plan
            .machines
            .iter()
            .any(|m| runner::machine_alive(&state, &m.name))
    {
        bail!("lab {} is not running (umlkit lab start)", plan.name);
    }
    let live = lab::test_run::Live::new(&plan, &b)?;
    let sum = lab::test_run::run(&plan, &live, write_signatures, &mut |e| match e {
        TestEvent::Machine(m) => outln!("{}:", shown(&m)),
        TestEvent::Check { title, verdict } => match verdict {
            Ok(()) => outln!("  PASS {}", shown(&title)),
            Err(why) => outln!("  FAIL {}: {}", shown(&title), shown_lines(&why)),
        },
        TestEvent::NotRunning(m) => outln!("{m}: FAIL _test: machine not running"),
        TestEvent::Wrote { machine, path } => {
            outln!("{machine}: wrote signature {}", path.display())
        }
        TestEvent::Signature {
            machine,
            kind,
            verdict,
        } => match verdict {
            Ok(()) => outln!("{machine}: PASS _test {kind}"),
            Err(why) => outln!("{machine}: FAIL _test {kind}: {}", shown_lines(&why)),
        },
    })?;
    outln!("{} passed, {} failed", sum.passed, sum.failed);
    Ok(if sum.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn bench(
    sizes: &[usize],
    runs: usize,
    parallel: Option<usize>,
    opts: &LabOpts,
) -> anyhow::Result<ExitCode> {
    let b = bench::lab::LabBench {
        sizes: sizes.to_vec(),
        runs,
        parallel,
        state_root: opts.state_root.clone(),
        min_mem: opts.min_mem,
        umlkit: std::env::current_exe().context("cannot find the umlkit executable")?,
    };
    bench::lab::run(
        &b,
        &mut |l: &str| errln!("{l}"),
        &mut crate::cmd::out::Stdout,
    )?;
    Ok(ExitCode::SUCCESS)
}

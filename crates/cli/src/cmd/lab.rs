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
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Record a running lab's collision domain (see `umlkit capture`)
    Capture {
        #[arg(short = 'd', long, default_value = ".")]
        dir: PathBuf,
        domain: String,
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
        /// Write an SVG picture here
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Write DOT here instead of stdout
        #[arg(long)]
        dot: Option<PathBuf>,
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
            eprintln!(
                "lab {}: {} switches, {n} machines, {} waves, {p} in parallel",
                plan.name,
                plan.switches.len(),
                waves.len()
            );
            for (prog, pkg) in image::hosttools::missing_on_host() {
                eprintln!(
                    "  note: the default image has busybox's {prog}, not the full one \
                     (install the host package {pkg} for it)"
                );
            }
            runner::start(
                &backend,
                &plan,
                &waves,
                p,
                Duration::from_secs(timeout),
                &mut |s: &str| eprintln!("  {}", shown(s)),
            )
            .context("lab start failed (`umlkit lab clean` removes what was started)")?;
            eprintln!(
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
                &mut |s: &str| eprintln!("  {}", shown(s)),
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
                &mut |s: &str| eprintln!("  {}", shown(s)),
            )?;
            let waves = lab::plan::select(&plan, &machines)?;
            let p = parallel.unwrap_or_else(|| default_parallel(&plan));
            runner::start(
                &b,
                &plan,
                &waves,
                p,
                Duration::from_secs(120),
                &mut |s: &str| eprintln!("  {}", shown(s)),
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
            let st = runner::status(&backend(&plan)?, &plan)?;
            let sw = runner::switch_status(&plan)?;
            // link emulation as the running switches apply it now
            let links: Vec<Option<String>> = plan
                .switches
                .iter()
                .map(|s| {
                    let running = sw
                        .iter()
                        .any(|x| x.domain == s.domain && x.state == "running");
                    s.mgmt.as_deref().filter(|_| running).and_then(live_links)
                })
                .collect();
            if json {
                let v = serde_json::json!({
                    "lab": plan.name, "dir": plan.lab_dir, "dialect": plan.dialect.to_string(),
                    "state_dir": plan.state_dir,
                    "domains": plan.switches.iter().zip(&links).map(|(s, link)| {
                        let live = sw.iter().find(|x| x.domain == s.domain);
                        serde_json::json!({"name": s.domain, "hub": s.hub, "ctl": s.ctl(),
                            "state": live.map(|x| x.state.as_str()).unwrap_or("stopped"),
                            "pid": live.and_then(|x| x.pid), "link": link})
                    }).collect::<Vec<_>>(),
                    "machines": st,
                });
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!(
                    "lab {} ({}, {})",
                    shown(&plan.name),
                    plan.dialect,
                    plan.lab_dir.display()
                );
                for m in &st {
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
                    }
                }
                for (s, link) in plan.switches.iter().zip(&links) {
                    let state = sw
                        .iter()
                        .find(|x| x.domain == s.domain)
                        .map(|x| x.state.as_str())
                        .unwrap_or("stopped");
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
            }
            // Anything that does not work as started makes the exit code 1.
            let mut problems = Vec::new();
            for s in sw.iter().filter(|s| s.state == "dead") {
                problems.push(format!("the switch of domain {} is dead", shown(&s.domain)));
            }
            for m in &st {
                match m.state.as_str() {
                    "dead" => problems.push(format!("{} is dead", shown(&m.name))),
                    "interrupted" => problems.push(format!(
                        "{}: its boot steps never finished (the lab start was killed)",
                        shown(&m.name)
                    )),
                    "failed" => problems.push(format!("{}: its boot steps failed", shown(&m.name))),
                    _ => {}
                }
                if !m.lost_links.is_empty() {
                    problems.push(format!(
                        "{} lost its link to domain {}",
                        shown(&m.name),
                        m.lost_links
                            .iter()
                            .map(|d| shown(d))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            if problems.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            for p in &problems {
                eprintln!("umlkit: {p}");
            }
            eprintln!(
                "umlkit: fix with `umlkit lab restart {}` (or name the machines to restart)",
                plan.lab_dir.display()
            );
            Ok(ExitCode::from(1))
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
            eprint!("{}", out.stderr);
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
            eprintln!("{machine}: each line runs in the guest (/bin/sh); Ctrl-D ends");
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                eprint!("{machine}# ");
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
                        eprint!("{}", o.stderr);
                    }
                    Err(e) => eprintln!("{e}"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Link {
            dir,
            target,
            spec,
            opts,
        } => {
            let plan = load_plan_or_saved(&dir, &opts)?;
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
                    None => out!("{}", c.command(&format!("link/show {port}"))?),
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
            machine,
            write,
            count,
            pcap,
            opts,
        } => {
            let plan = load_plan_or_saved(&dir, &opts)?;
            let mgmt = domain_console(&plan, &domain)?;
            let port = match machine {
                None => None,
                Some(mi) => Some(machine_port(&plan, &mgmt, &domain, &mi)?),
            };
            crate::cmd::link::capture_to(&mgmt, port, None, count, write.as_deref(), pcap)
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
            match dot {
                Some(p) => std::fs::write(&p, d)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None if svg.is_none() => out!("{d}"),
                None => {}
            }
            if let Some(p) = svg {
                std::fs::write(&p, lab::graph::svg(&plan))
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
                eprintln!("note: {}", shown(n));
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
                    eprintln!("wrote {}", p.display());
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
                    eprintln!("wrote {}", p.display());
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
        Err(e) => format!("{r} (cannot build here: {e})"),
    }
}

/// The state root, absolute (fixed once, so a relative `UMLKIT_LAB_STATE`
/// means the same folder to every step, and to `lab clean` later).
fn state_root(opts: &LabOpts) -> PathBuf {
    let root = opts
        .state_root
        .clone()
        .or_else(|| std::env::var_os("UMLKIT_LAB_STATE").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(default_state_root);
    std::path::absolute(&root).unwrap_or(root)
}

/// `$XDG_RUNTIME_DIR/umlkit-lab`, else `/tmp/umlkit-lab-UID` (per user, so
/// no other user's folder is ever taken for ours; it is checked anyway).
fn default_state_root() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("umlkit-lab"),
        None => PathBuf::from(format!("/tmp/umlkit-lab-{}", umlkit_sys::private::euid())),
    }
}

/// The plan to stop or clean a lab with: from the lab folder, or, when its
/// description no longer loads, the plan saved in its state folder at
/// start (so a broken lab.conf cannot keep a lab running).
/// The impairments a running switch applies, summarised: `out
/// delay=15ms on 32 ports`; None when it has none (or no console answers).
fn live_links(mgmt: &Path) -> Option<String> {
    let text = switchd::client::command(mgmt, "link/show").ok()?;
    // (direction, settings) -> ports
    let mut groups: Vec<((String, String), u32)> = Vec::new();
    for l in text.lines().filter(|l| l.starts_with("Port ")) {
        let mut f = l.split_whitespace().skip(2);
        let (Some(dir), Some(spec)) = (f.next(), f.next()) else {
            continue;
        };
        if spec == "none" {
            continue;
        }
        let key = (dir.to_string(), spec.to_string());
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1 += 1,
            None => groups.push((key, 1)),
        }
    }
    if groups.is_empty() {
        return None;
    }
    Some(
        groups
            .iter()
            .map(|((d, s), n)| format!("{d} {s} on {n} port{}", if *n == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join("; "),
    )
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
/// entry is the interface's planned MAC (the machine must have sent a frame).
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
    let table = switchd::client::command(mgmt, "hash/print")?;
    let mac = iface.mac.to_ascii_lowercase();
    table
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains(&format!("addr: {mac} ")))
        .find_map(|l| l.split("to port:").nth(1)?.split_whitespace().next()?.parse().ok())
        .with_context(|| {
            format!(
                "{}: the switch has not seen {mac} yet (no frame sent): capture the whole domain instead",
                shown(mi)
            )
        })
}

fn load_plan_or_saved(dir: &Path, opts: &LabOpts) -> anyhow::Result<Plan> {
    let err = match load_plan(dir, opts, false) {
        Ok((plan, _)) => return Ok(plan),
        Err(e) => e,
    };
    let Ok(lab_dir) = dir.canonicalize() else {
        return Err(err);
    };
    let state_dir = state_root(opts).join(lab::plan::lab_id(&lab_dir));
    let saved = state_dir.join("plan.json");
    if saved.symlink_metadata().is_err() {
        return Err(err);
    }
    umlkit_sys::private::private_dir(&state_dir, false)?;
    let bytes = umlkit_sys::private::read_nofollow(&saved)
        .with_context(|| format!("cannot read {}", saved.display()))?;
    let plan: Plan = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: unreadable saved plan", saved.display()))?;
    if plan.state_dir != state_dir {
        bail!(
            "{}: names state folder {}, not its own",
            saved.display(),
            plan.state_dir.display()
        );
    }
    eprintln!(
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
    let mut loaded = lab::load::load_lab(dir, opts.dialect)?;
    if let Some(n) = opts.min_mem {
        loaded.lab.lab.min_mem = Some(n);
    }
    let state_dir = state_root(opts).join(lab::plan::lab_id(&loaded.dir));
    let user_images = lab::images::load_user_map()?;
    let plan = lab::plan::plan_with(&loaded.lab, &loaded.dir, &state_dir, user_images.as_ref())?;
    if verbose {
        eprintln!("dialect: {}", loaded.dialect_reason);
        for n in loaded.notes.iter().chain(plan.notes.iter()) {
            eprintln!("note: {}", shown(n));
        }
    }
    Ok((plan, loaded))
}

/// A lab folder is untrusted: refuse kernel arguments that open host
/// resources unless the user vouches for the lab (`--host-access`).
fn trust(plan: &mut Plan, loaded: &lab::load::Loaded, host_access: bool) -> anyhow::Result<()> {
    if host_access {
        plan.host_access = true;
        eprintln!(
            "note: --host-access: machines share {} live through hostfs and may write to it",
            plan.lab_dir.display()
        );
    } else {
        lab::confine::check_kernel_args(loaded)?;
    }
    Ok(())
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
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let avail_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(4096);
    let per = plan
        .machines
        .iter()
        .map(|m| m.mem_mb as u64)
        .max()
        .unwrap_or(64)
        + 32;
    // Booting all machines of a lab at once beats batches (measured: 10
    // machines 4.8 s at -p 10 vs 6.6 s at -p 8; 40 machines 18.4 s at -p 16
    // or 40 vs 21 s at -p 8, on 2 cores): boots wait on I/O and the switch.
    (cores * 8)
        .max(16)
        .min((avail_mb / per).max(1) as usize)
        .max(1)
}

fn lab_test(dir: &Path, write_signatures: bool, opts: &LabOpts) -> anyhow::Result<ExitCode> {
    let (plan, _) = load_plan(dir, opts, false)?;
    let b = backend(&plan)?;
    let state = runner::State::load(&plan)?;
    let mut failed = 0usize;
    let mut passed = 0usize;
    let check_file = plan.lab_dir.join("lab.test.toml");
    let test_dir = plan.lab_dir.join("_test");
    if !check_file.is_file() && !test_dir.is_dir() {
        bail!(
            "{}: no lab.test.toml and no _test/ folder: nothing to test",
            plan.lab_dir.display()
        );
    }
    if check_file.is_file() {
        let real = lab::confine::resolve_inside(&plan.lab_dir, Path::new("lab.test.toml"))?;
        let text = std::fs::read_to_string(&real)
            .with_context(|| format!("cannot read {}", check_file.display()))?;
        let cf = lab::check::CheckFile::from_toml(&text, &check_file)?;
        let checks = cf.checks();
        let mut by_machine: std::collections::BTreeMap<&str, Vec<&lab::check::Check>> =
            Default::default();
        for c in &checks {
            by_machine.entry(c.machine.as_str()).or_default().push(c);
        }
        for (mname, cs) in by_machine {
            outln!("{}:", shown(mname));
            let m = plan.machine(mname);
            for c in cs {
                let verdict = match m {
                    None => Err(format!("no machine {mname} in the lab")),
                    Some(_) if !runner::machine_alive(&state, mname) => {
                        Err("machine not running".into())
                    }
                    Some(m) => match b.exec(m, &c.command, Duration::from_secs(30)) {
                        Ok(o) => c.judge(o.code, &o.stdout),
                        Err(e) => Err(e.to_string()),
                    },
                };
                match verdict {
                    Ok(()) => {
                        passed += 1;
                        outln!("  PASS {}", shown(&c.title));
                    }
                    Err(why) => {
                        failed += 1;
                        outln!("  FAIL {}: {}", shown(&c.title), shown_lines(&why));
                    }
                }
            }
        }
    }
    if test_dir.is_dir() {
        let results = plan.state_dir.join("test-results");
        std::fs::create_dir_all(&results)?;
        // _test/ is part of the untrusted lab folder: every path is resolved
        // inside it, signatures are written with O_NOFOLLOW.
        let sigs = Path::new("_test/signatures");
        for m in &plan.machines {
            if !runner::machine_alive(&state, &m.name) {
                outln!("{}: FAIL _test: machine not running", m.name);
                failed += 1;
                continue;
            }
            let mut kinds = vec![("default", lab::check::NETKIT_DEFAULT_TEST.to_string())];
            // The user test is read now (resolved inside the lab folder) and
            // its text run in the guest (with bash when the image has it, as
            // `lab exec`): /hostlab is a copy made at start.
            let user = Path::new("_test").join(format!("{}.test", m.name));
            if plan.lab_dir.join(&user).symlink_metadata().is_ok() {
                let p = lab::confine::resolve_inside(&plan.lab_dir, &user)?;
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                kinds.push(("user", text));
            }
            for (kind, cmd) in kinds {
                let out = b.exec(m, &cmd, Duration::from_secs(60))?;
                let res = results.join(format!("{}.{kind}", m.name));
                std::fs::write(&res, &out.stdout)?;
                let sig = sigs.join(format!("{}.{kind}", m.name));
                if write_signatures {
                    let p = lab::confine::write_inside(&plan.lab_dir, &sig, out.stdout.as_bytes())?;
                    outln!("{}: wrote signature {}", m.name, p.display());
                } else if plan.lab_dir.join(&sig).symlink_metadata().is_ok() {
                    // A signature leading out of the lab folder is a failure,
                    // never read.
                    let read = lab::confine::resolve_inside(&plan.lab_dir, &sig)
                        .map_err(|e| e.to_string())
                        .and_then(|p| std::fs::read_to_string(p).map_err(|e| e.to_string()))
                        .and_then(|s| lab::check::compare_signature(&out.stdout, &s));
                    match read {
                        Ok(()) => {
                            passed += 1;
                            outln!("{}: PASS _test {kind}", m.name);
                        }
                        Err(why) => {
                            failed += 1;
                            outln!("{}: FAIL _test {kind}: {}", m.name, shown_lines(&why));
                        }
                    }
                }
            }
        }
    }
    outln!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    v[v.len() / 2]
}

/// Host memory (PSS, kB: shared guest RAM counted once, each address space
/// once) of all processes whose cmdline names `needle`.
fn pss_kb_matching(needle: &str) -> u64 {
    let pids: Vec<u32> = umlkit_sys::process::all_pids()
        .into_iter()
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmd.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect();
    guest::host_memory(&pids).pss_kb
}

/// Shmem + AnonPages of /proc/meminfo (KiB): guest RAM (the kernels'
/// /dev/shm files) and private memory of every process on the host.
fn meminfo_used_kb() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("Shmem:") || l.starts_with("AnonPages:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

fn bench(
    sizes: &[usize],
    runs: usize,
    parallel: Option<usize>,
    opts: &LabOpts,
) -> anyhow::Result<ExitCode> {
    let tmp = std::env::temp_dir().join(format!("umlkit-labbench-{}", std::process::id()));
    let root = opts.state_root.clone().unwrap_or_else(|| tmp.join("state"));
    let mut report = Vec::new();
    for &n in sizes {
        // n machines on one collision domain, one /16.
        let dir = tmp.join(format!("lab{n}"));
        std::fs::create_dir_all(&dir)?;
        let mut conf = String::from("LAB_DESCRIPTION=\"umlkit bench\"\n");
        let mut startup = Vec::new();
        for i in 0..n {
            conf.push_str(&format!("m{i}[0]=d0\n"));
            startup.push((
                format!("m{i}.startup"),
                format!(
                    "ip addr add 10.1.{}.{}/16 dev eth0\nip link set eth0 up\n",
                    i / 250,
                    i % 250 + 1
                ),
            ));
        }
        std::fs::write(dir.join("lab.conf"), conf)?;
        for (f, t) in startup {
            std::fs::write(dir.join(f), t)?;
        }
        let lopts = LabOpts {
            dialect: None,
            state_root: Some(root.clone()),
            min_mem: opts.min_mem,
        };
        let (plan, _) = load_plan(&dir, &lopts, false)?;
        let b = backend(&plan)?;
        let b = &b;
        let p = parallel.unwrap_or_else(|| default_parallel(&plan));
        let mut times = Vec::new();
        let mut rss = 0;
        let mut freed = 0;
        for _ in 0..runs {
            runner::clean(&plan)?;
            let t0 = Instant::now();
            let r = runner::start(
                b,
                &plan,
                &plan.waves,
                p,
                Duration::from_secs(600),
                &mut |_: &str| {},
            );
            if let Err(e) = r {
                runner::clean(&plan)?;
                return Err(e.into());
            }
            // Reachable: the first machine pings every other one (all pings
            // at once, in one exec round trip).
            let first = &plan.machines[0];
            let mut script = String::new();
            for m in &plan.machines[1..] {
                let i = m.name[1..].parse::<usize>()?;
                let addr = format!("10.1.{}.{}", i / 250, i % 250 + 1);
                script.push_str(&format!(
                    "(ping -c 1 -W 2 {addr} >/dev/null 2>&1 || echo unreachable {addr}) &\n"
                ));
            }
            script.push_str("wait\n");
            let o = b.exec(first, &script, Duration::from_secs(60))?;
            if o.code != 0 || o.stdout.contains("unreachable") {
                runner::clean(&plan)?;
                bail!(
                    "{} cannot reach every machine: {}{}",
                    first.name,
                    o.stdout.trim(),
                    o.stderr.trim()
                );
            }
            times.push(t0.elapsed().as_secs_f64());
            rss = pss_kb_matching(&plan.state_dir.to_string_lossy());
            // Second method: what the host gets back when the lab goes.
            let before = meminfo_used_kb();
            runner::clean(&plan)?;
            freed = before.saturating_sub(meminfo_used_kb());
        }
        let med = median(times.clone());
        report.push(format!(
            "lab of {n} machines (-p {p}): start -> all reachable median {med:.2} s over {runs} runs {:?}; host memory (PSS) {:.1} MiB/machine (lab clean freed {:.1} MiB/machine of Shmem+AnonPages)",
            times.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>(),
            rss as f64 / 1024.0 / n as f64,
            freed as f64 / 1024.0 / n as f64
        ));
        eprintln!("{}", report.last().expect("pushed"));
    }
    // Bare kernel: 10 guests booting to poweroff in parallel on the same image.
    let kdir = tmp.join("kernel");
    std::fs::create_dir_all(&kdir)?;
    let lopts = LabOpts {
        dialect: None,
        state_root: Some(root.clone()),
        min_mem: opts.min_mem,
    };
    let kl = tmp.join("lab1");
    std::fs::create_dir_all(&kl)?;
    std::fs::write(kl.join("lab.conf"), "a[0]=d0\n")?;
    let (kplan, _) = load_plan(&kl, &lopts, false)?;
    // The same kernel and default image the lab machines boot.
    let kernel = guest::find_kernel(None)?;
    let kimage = image::default_image(&image::DefaultImageOpts::default())?;
    let mut ktimes = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut kids = Vec::new();
        for i in 0..10 {
            let cow = kdir.join(format!("k{i}.cow"));
            let _ = std::fs::remove_file(&cow);
            let mut c = std::process::Command::new(&kernel);
            c.arg(format!("umid=kb{i}"))
                .arg(format!("uml_dir={}", kdir.display()))
                .arg("mem=64M")
                .arg(format!("ubd0={},{}", cow.display(), kimage.display()))
                .args([
                    "root=/dev/ubda",
                    "rw",
                    "con=null",
                    "con0=fd:0,fd:1",
                    "quiet",
                    "init=/sbin/poweroff",
                    "-f",
                ])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            use std::os::unix::process::CommandExt;
            c.process_group(0);
            kids.push(c.spawn()?);
        }
        for mut k in kids {
            k.wait()?;
        }
        ktimes.push(t0.elapsed().as_secs_f64());
    }
    let kmed = median(ktimes);
    report.push(format!(
        "bare kernel: 10 guests boot+poweroff in parallel, median {kmed:.2} s"
    ));
    runner::clean(&kplan)?;
    let _ = std::fs::remove_dir_all(&tmp);
    for r in &report {
        outln!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}

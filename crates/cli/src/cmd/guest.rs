//! `umlkit` subcommands of the guest area: images, guests (run, ps, exec,
//! console, logs, halt, reboot, kill, rm, disk), mconsole, and the
//! `uml_mconsole` multi-call entry point.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use guest::{ConsoleMode, DiskSpec, GuestConfig, NetSpec, Store};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Disk images: sparse ext4 without root, the default busybox image, Debian lab images
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Boot a guest (foreground on this terminal, or --detach under a supervisor)
    Run(RunArgs),
    /// List guests (state dir: $UMLKIT_STATE_DIR, $XDG_RUNTIME_DIR/umlkit or ~/.umlkit/run)
    Ps {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a guest through its exec agent; exits with its status
    Exec {
        name: String,
        /// Run on a pty (interactive programs; stdout and stderr merged)
        #[arg(short, long)]
        tty: bool,
        /// Forward stdin (implied by --tty)
        #[arg(short, long)]
        interactive: bool,
        /// Give up after this many seconds (0 = never)
        #[arg(long, default_value_t = 0)]
        timeout: u64,
        /// Command and arguments
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Attach to a detached guest's console (detach with Ctrl-])
    Console { name: String },
    /// Print a guest's console log
    Logs {
        name: String,
        /// Keep printing new output while the guest runs
        #[arg(short, long)]
        follow: bool,
    },
    /// Stop a guest cleanly: mconsole cad (init powers off), then halt, SIGTERM, SIGKILL
    Halt {
        name: String,
        /// Seconds to wait after each step
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Reboot a guest (mconsole reboot) and wait until its agent is back
    Reboot {
        name: String,
        /// Seconds to wait for the agent
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Kill a guest's processes at once (SIGKILL to its process group)
    Kill { name: String },
    /// Remove a stopped guest's state (COW files, logs)
    Rm {
        name: String,
        /// Kill it first if it runs
        #[arg(short, long)]
        force: bool,
    },
    /// Remove all stopped guests and stale kernel instance dirs (~/.uml/UMID whose kernel is gone)
    Prune {
        /// uml_dir to scan for stale instance dirs (default ~/.uml)
        #[arg(long)]
        uml_dir: Option<PathBuf>,
        /// Only list what would be removed
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Hot-plug disks
    Disk {
        #[command(subcommand)]
        cmd: DiskCmd,
    },
    /// Talk to a guest's management console (interactive without COMMAND)
    Mconsole {
        /// Guest name, umid (~/.uml/UMID/mconsole) or socket path
        target: String,
        /// Command words, e.g. `config ubd0`
        command: Vec<String>,
    },
    /// Per-guest supervisor (started by `run --detach`)
    #[command(hide = true)]
    Supervise { dir: PathBuf },
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Guest name (also umid and host name)
    #[arg(long)]
    name: Option<String>,
    /// Memory, e.g. 64M
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    mem: u64,
    /// IMAGE[:cow=PATH|:ro|:nocow]; repeatable; default: the default image with an automatic COW
    #[arg(long)]
    disk: Vec<String>,
    /// Boot a named lab image (e.g. kathara/frr; see `umlkit image ls`), built on first use
    #[arg(long, conflicts_with = "disk")]
    image: Option<String>,
    /// SWITCH[,mac=..][,vde][,port=N] or DIR,vector[,mtu=N]: a switch dir (daemon transport on
    /// DIR/ctl, `vde` for vde_plug, `vector` for the kernel's batched vector driver on DIR/vec)
    /// or a control socket; repeatable
    #[arg(long)]
    net: Vec<String>,
    /// Share this host directory (mounted at /hostlab by the default image)
    #[arg(long)]
    hostfs: Option<PathBuf>,
    /// Console: stdio (foreground default), pty (detached default), none
    #[arg(long, value_parser = parse_console)]
    console: Option<ConsoleMode>,
    /// Run under a supervisor in the background
    #[arg(short, long)]
    detach: bool,
    /// With --detach: wait until the exec agent is up
    #[arg(long)]
    wait: bool,
    /// UML kernel (default: $UMLKIT_KERNEL, linux.uml, linux)
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Print the kernel command line and exit
    #[arg(long)]
    dry_run: bool,
    /// Extra kernel arguments, e.g. umlkit.ip.eth0=10.0.0.1/24
    #[arg(last = true)]
    kernel_args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum DiskCmd {
    /// Add IMAGE to a running guest on the first free ubd slot
    Add {
        name: String,
        image: PathBuf,
        /// Read-only
        #[arg(long)]
        ro: bool,
        /// Explicit COW file (default: automatic, in the guest's state dir)
        #[arg(long)]
        cow: Option<PathBuf>,
    },
    /// Remove ubdN from a running guest
    Remove { name: String, dev: String },
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Create a sparse ext4 image (mkfs.ext4 -d; no root, loop device or mount)
    Create {
        /// Image file to create (must not exist)
        out: PathBuf,
        /// Size, e.g. 512M, 2G
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Fill the filesystem with this directory tree
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Build (or reuse from the cache) the default busybox guest image; print its path
    Default {
        /// Write the image here instead of the cache
        out: Option<PathBuf>,
        /// Image size (sparse)
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// Static exec agent (default: $UMLKIT_AGENT, next to umlkit, or target/x86_64-unknown-linux-gnu/release)
        #[arg(long)]
        agent: Option<PathBuf>,
    },
    /// Build a lab image from Debian packages (mmdebstrap), or reuse the cached one; print its path
    Build {
        /// Image name, e.g. kathara/frr, kathara/base:latest, kathara
        name: String,
        /// Rebuild even if the cache holds it
        #[arg(long)]
        force: bool,
    },
    /// List the image recipes and the built images in the cache
    Ls {
        /// Machine-readable output (docs/json.md)
        #[arg(long)]
        json: bool,
    },
    /// Remove the cached builds of an image
    Rm { name: String },
    /// Show an image: recipe, build date, kernel, sizes, package versions
    Inspect {
        name: String,
        /// Also list every installed package with its version
        #[arg(long)]
        packages: bool,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    image::parse_size(s).ok_or_else(|| format!("invalid size '{s}' (examples: 64M, 512M, 2G)"))
}

fn parse_console(s: &str) -> Result<ConsoleMode, String> {
    match s {
        "stdio" => Ok(ConsoleMode::Stdio),
        "pty" => Ok(ConsoleMode::Pty),
        "none" => Ok(ConsoleMode::None),
        _ => Err(format!("invalid console '{s}' (stdio, pty or none)")),
    }
}

fn store() -> anyhow::Result<Store> {
    Ok(Store::open(None)?)
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Image { cmd } => image_cmd(cmd),
        Command::Run(a) => run_guest(a),
        Command::Ps { json } => ps(json),
        Command::Exec {
            name,
            tty,
            interactive,
            timeout,
            cmd,
        } => exec(&name, tty, interactive || tty, timeout, &cmd),
        Command::Console { name } => console(&name),
        Command::Logs { name, follow } => logs(&name, follow),
        Command::Halt { name, timeout } => {
            let e = store()?.halt(&name, Duration::from_secs(timeout))?;
            outln!("{name}: {e}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Reboot { name, timeout } => {
            store()?.reboot(&name, Duration::from_secs(timeout))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Kill { name } => {
            store()?.kill(&name)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rm { name, force } => {
            let s = store()?;
            if force {
                s.kill(&name)?;
            }
            s.cleanup(&name)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune { uml_dir, dry_run } => prune(uml_dir, dry_run),
        Command::Disk { cmd } => match cmd {
            DiskCmd::Add {
                name,
                image,
                ro,
                cow,
            } => {
                let d = DiskSpec {
                    image,
                    cow,
                    readonly: ro,
                    no_cow: false,
                };
                outln!("{}", store()?.disk_add(&name, &d)?);
                Ok(ExitCode::SUCCESS)
            }
            DiskCmd::Remove { name, dev } => {
                store()?.disk_remove(&name, &dev)?;
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Mconsole { target, command } => {
            let path = resolve_target(&target);
            Ok(ExitCode::from(mconsole_session(path, &target, &command)))
        }
        Command::Supervise { dir } => {
            let code = guest::supervisor::run(&dir, false)?;
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
    }
}

fn image_cmd(cmd: ImageCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCmd::Create { out, size, from } => {
            image::create(&out, size, from.as_deref())
                .with_context(|| format!("cannot create image {}", out.display()))?;
            outln!("{}", out.display());
        }
        ImageCmd::Default { out, size, agent } => {
            let opts = image::DefaultImageOpts {
                out,
                size_bytes: size,
                agent,
                ..Default::default()
            };
            let p = image::default_image(&opts).context("cannot build the default image")?;
            for (prog, pkg) in image::hosttools::missing_on_host() {
                errln!(
                    "note: the image has busybox's {prog}, not the full one \
                     (install the host package {pkg} for it)"
                );
            }
            outln!("{}", p.display());
        }
        ImageCmd::Build { name, force } => {
            let opts = image::debian::BuildOpts {
                force,
                ..Default::default()
            };
            let p = build_named_image(&name, &opts)?;
            outln!("{}", p.display());
        }
        ImageCmd::Ls { json } => image_ls(json)?,
        ImageCmd::Rm { name } => {
            let gone = image::debian::remove(&name, &Default::default())?;
            if gone.is_empty() {
                outln!("{name}: not built");
            }
            for p in gone {
                outln!("removed {}", p.display());
            }
        }
        ImageCmd::Inspect { name, packages } => image_inspect(&name, packages)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Build (or reuse) a named lab image, showing mmdebstrap's steps on stderr.
pub fn build_named_image(name: &str, opts: &image::debian::BuildOpts) -> anyhow::Result<PathBuf> {
    let (img, built) = image::debian::build(name, opts, &mut |line| errln!("{line}"))
        .with_context(|| format!("cannot build image {name}"))?;
    if !built {
        errln!("{name}: cached ({})", img.path.display());
    }
    Ok(img.path)
}

fn fmt_mib(b: u64) -> String {
    format!("{:.0}M", b as f64 / f64::from(1 << 20))
}

fn fmt_date(unix: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%d %H:%M:%S UTC"])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => format!("@{unix}"),
    }
}

fn image_ls(json: bool) -> anyhow::Result<()> {
    let opts = image::debian::BuildOpts::default();
    if json {
        let recipes: Vec<serde_json::Value> = image::recipe::builtin()
            .into_iter()
            .map(|(r, _)| {
                let built = match image::debian::resolve(&r.name, &opts) {
                    Ok(Some(i)) => Some(i.is_built()),
                    Ok(None) => Some(false),
                    Err(_) => None,
                };
                serde_json::json!({"name": r.name, "aliases": r.aliases, "built": built})
            })
            .collect();
        let built: Vec<serde_json::Value> = image::debian::list(&opts)?
            .into_iter()
            .map(|m| {
                let (alloc, size) = image::debian::disk_usage(&m.image).unwrap_or((0, 0));
                let current = matches!(image::debian::resolve(&m.recipe, &opts),
                    Ok(Some(i)) if i.key == m.key);
                serde_json::json!({
                    "recipe": m.recipe, "key": m.key, "current": current,
                    "alloc_bytes": alloc, "size_bytes": size,
                    "built_unix": m.built_unix, "image": m.image,
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"recipes": recipes, "built": built}))?
        );
        return Ok(());
    }
    outln!("{:<10} {:<8} ALIASES", "RECIPE", "STATE");
    for (r, _) in image::recipe::builtin() {
        let state = match image::debian::resolve(&r.name, &opts) {
            Ok(Some(i)) if i.is_built() => "built",
            Ok(_) => "-",
            Err(_) => "?",
        };
        outln!("{:<10} {:<8} {}", r.name, state, r.aliases.join(" "));
    }
    let built = image::debian::list(&opts)?;
    if !built.is_empty() {
        outln!();
        outln!(
            "{:<10} {:<17} {:<7} {:>9} {:>9} {:<24} IMAGE",
            "RECIPE",
            "KEY",
            "",
            "ALLOC",
            "SIZE",
            "BUILT"
        );
    }
    for m in built {
        let (alloc, size) = image::debian::disk_usage(&m.image).unwrap_or((0, 0));
        // stale: built from another recipe, agent, kernel or builder version
        let current = matches!(image::debian::resolve(&m.recipe, &opts),
            Ok(Some(i)) if i.key == m.key);
        outln!(
            "{:<10} {:<17} {:<7} {:>9} {:>9} {:<24} {}",
            m.recipe,
            m.key,
            if current { "current" } else { "stale" },
            fmt_mib(alloc),
            fmt_mib(size),
            fmt_date(m.built_unix),
            m.image.display()
        );
    }
    Ok(())
}

fn image_inspect(name: &str, packages: bool) -> anyhow::Result<()> {
    let opts = image::debian::BuildOpts::default();
    let img = image::debian::resolve(name, &opts)?
        .ok_or_else(|| image::Error::UnknownImage(name.into()))?;
    outln!("name:      {name}");
    outln!(
        "recipe:    {} ({})",
        img.recipe.name,
        img.recipe.description
    );
    outln!("aliases:   {}", img.recipe.aliases.join(" "));
    outln!(
        "debian:    {} --variant={}, {} packages requested",
        img.recipe.suite,
        img.recipe.variant,
        img.recipe.packages.len()
    );
    outln!("kernel:    {}", img.kernel);
    outln!("key:       {}", img.key);
    outln!("image:     {}", img.path.display());
    if !img.is_built() {
        outln!("state:     not built (umlkit image build {name})");
        return Ok(());
    }
    let m = img.meta()?;
    let (alloc, size) = image::debian::disk_usage(&img.path).unwrap_or((0, 0));
    outln!(
        "state:     built {} in {:.1}s (mmdebstrap --mode={}, {})",
        fmt_date(m.built_unix),
        m.build_secs,
        m.mode,
        m.builder
    );
    outln!(
        "size:      {} allocated, {} apparent",
        fmt_mib(alloc),
        fmt_mib(size)
    );
    let pk = img.packages()?;
    outln!("packages:  {} installed", pk.lines().count());
    let wanted: std::collections::HashSet<&str> =
        img.recipe.packages.iter().map(String::as_str).collect();
    for l in pk.lines() {
        let pkg = l.split('\t').next().unwrap_or("");
        if packages || wanted.contains(pkg) {
            outln!("  {}", l.replace('\t', " "));
        }
    }
    outln!("--- recipe ---\n{}", m.recipe_text.trim_end());
    Ok(())
}

fn run_guest(a: RunArgs) -> anyhow::Result<ExitCode> {
    let name = a
        .name
        .unwrap_or_else(|| format!("uml-{:04x}", std::process::id() & 0xffff));
    let mut cfg = GuestConfig::new(&name);
    cfg.mem_mb = u32::try_from(a.mem >> 20).unwrap_or(u32::MAX);
    for d in &a.disk {
        cfg.disks
            .push(DiskSpec::parse(d).map_err(|e| anyhow::anyhow!("--disk {d}: {e}"))?);
    }
    if let Some(n) = &a.image {
        let img = build_named_image(n, &Default::default())?;
        cfg.disks.push(DiskSpec::new(img));
    }
    if cfg.disks.is_empty() {
        let img =
            image::default_image(&Default::default()).context("cannot build the default image")?;
        cfg.disks.push(DiskSpec::new(img));
    }
    for n in &a.net {
        cfg.nets
            .push(NetSpec::parse(n).map_err(|e| anyhow::anyhow!("--net {n}: {e}"))?);
    }
    cfg.hostfs = a.hostfs;
    cfg.kernel = a.kernel;
    cfg.extra_args = a.kernel_args;
    cfg.console = a.console.unwrap_or(if a.detach {
        ConsoleMode::Pty
    } else {
        ConsoleMode::Stdio
    });
    if a.detach && cfg.console == ConsoleMode::Stdio {
        bail!("--console stdio needs the foreground: drop --detach or use --console pty");
    }
    let store = store()?;
    if a.dry_run {
        let kernel = guest::find_kernel(cfg.kernel.as_deref())?;
        let p = store.paths(&name);
        let layout = guest::Layout {
            dir: p.dir.clone(),
            uml_dir: p.uml_dir(),
            agent_fd: Some(guest::supervisor::AGENT_FD),
        };
        let args = guest::kernel_args(&cfg, &layout);
        outln!("{} {}", kernel.display(), args.join(" "));
        return Ok(ExitCode::SUCCESS);
    }
    if a.detach {
        let info = if a.wait {
            store.start_ready(&cfg, Duration::from_secs(120), &mut |n| {
                errln!("umlkit: {n}")
            })?
        } else {
            store.start(&cfg)?
        };
        outln!(
            "{} pid {} (console: umlkit console {name}; exec: umlkit exec {name} -- CMD)",
            info.name,
            info.pid
        );
        Ok(ExitCode::SUCCESS)
    } else {
        let code = store.run_foreground(&cfg)?;
        Ok(ExitCode::from(code.clamp(0, 255) as u8))
    }
}

fn prune(uml_dir: Option<PathBuf>, dry_run: bool) -> anyhow::Result<ExitCode> {
    let store = store()?;
    if dry_run {
        for g in store.list()?.into_iter().filter(|g| !g.alive()) {
            outln!("guest {}", g.name);
        }
    } else {
        for n in store.prune()? {
            outln!("removed guest {n}");
        }
    }
    let dir = uml_dir.unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".uml")
    });
    for d in guest::stale_uml_dirs(&dir) {
        if dry_run {
            outln!("stale {}", d.display());
        } else {
            std::fs::remove_dir_all(&d)
                .with_context(|| format!("cannot remove {}", d.display()))?;
            outln!("removed stale {}", d.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt_dur(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.1}s"),
        Some(s) if s < 7200.0 => format!("{:.0}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
    }
}

fn ps(json: bool) -> anyhow::Result<ExitCode> {
    let list = store()?.list()?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<16} {:<22} {:>7} {:>7} {:>8} {:>8} {:>8} {:<5} {:<5} CONSOLE",
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "RSS",
        "PSS",
        "PHYSMEM",
        "DISKS",
        "NETS"
    );
    for g in list {
        let state = match (&g.ending, g.phase) {
            (Some(e), _) => e.to_string(),
            (None, p) => p.to_string(),
        };
        outln!(
            "{:<16} {:<22} {:>7} {:>7} {:>7}M {:>7}M {:>7}M {:<5} {:<5} {}",
            g.name,
            state,
            g.pid.map(|p| p.to_string()).unwrap_or("-".into()),
            fmt_dur(g.uptime_s),
            g.rss_kb / 1024,
            g.pss_kb / 1024,
            g.physmem_kb / 1024,
            g.disks.len(),
            g.interfaces.len(),
            g.console
                .map(|c| c.display().to_string())
                .unwrap_or("-".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn exec(
    name: &str,
    tty: bool,
    stdin: bool,
    timeout: u64,
    cmd: &[String],
) -> anyhow::Result<ExitCode> {
    let mut env = Vec::new();
    if tty {
        if let Ok(t) = std::env::var("TERM") {
            env.push(format!("TERM={t}").into_bytes());
        }
    }
    let req = guest::ExecRequest {
        argv: cmd.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env,
        tty,
    };
    let input: Option<Box<dyn Read + Send>> = stdin.then(|| Box::new(std::io::stdin()) as _);
    let timeout = (timeout > 0).then(|| Duration::from_secs(timeout));
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let c = guest::attach::exec(&store()?, name, &req, input, &mut out, &mut err, timeout)?;
    Ok(ExitCode::from(c.clamp(0, 255) as u8))
}

fn console(name: &str) -> anyhow::Result<ExitCode> {
    let (mut input, mut out, mut err) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    guest::attach::console(&store()?, name, &mut input, &mut out, &mut err, true)?;
    Ok(ExitCode::SUCCESS)
}

fn logs(name: &str, follow: bool) -> anyhow::Result<ExitCode> {
    guest::attach::logs(&store()?, name, follow, &mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}

// ----- mconsole -----

/// A mconsole target for `umlkit mconsole`: an existing socket path, a guest
/// of our store, else uml_mconsole's resolution.
fn resolve_target(target: &str) -> PathBuf {
    let p = Path::new(target);
    if p.exists() && !p.is_dir() {
        return p.to_path_buf();
    }
    if let Ok(s) = Store::open(None) {
        let g = s.paths(target);
        if guest_name_ok(target) && g.mconsole().exists() {
            return g.mconsole();
        }
    }
    mconsole::dropin::resolve(target, None).unwrap_or_default()
}

fn guest_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

fn mconsole_session(path: PathBuf, name: &str, words: &[String]) -> u8 {
    let (mut out, mut err) = (crate::cmd::out::Stdout, std::io::stderr());
    let io = mconsole::dropin::Io {
        out: &mut out,
        err: &mut err,
    };
    mconsole::dropin::Session::new(path, name, io).run(words, &mut std::io::stdin().lock())
}

/// `uml_mconsole socket-name [command...]` (argv without argv[0]).
pub fn multicall_mconsole(args: &[OsString]) -> ExitCode {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (mut out, mut err) = (crate::cmd::out::Stdout, std::io::stderr());
    let io = mconsole::dropin::Io {
        out: &mut out,
        err: &mut err,
    };
    ExitCode::from(mconsole::dropin::main(
        &args,
        &mut std::io::stdin().lock(),
        io,
    ))
}

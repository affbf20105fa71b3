//! `umlkit`: the User-Mode Linux toolkit.
//!
//! A thin binary: parse arguments (clap), call one library function, print
//! the error chain once and map it to an exit code. Also a multi-call binary:
//! invoked as `uml_mkcow`, `uml_moo`, `uml_switch`, `uml_mconsole` or `vde_plug` it
//! behaves as that C tool does.

/// `outln!` for command output: when stdout is a closed pipe
/// (`umlkit ps | head -1`) the program ends quietly, as C tools do on
/// SIGPIPE, instead of panicking with a backtrace. See [`cmd::out`].
macro_rules! outln {
    () => {
        $crate::cmd::out::write_stdout(format_args!("\n"))
    };
    ($($t:tt)*) => {
        $crate::cmd::out::write_stdout(format_args!("{}\n", format_args!($($t)*)))
    };
}

/// `print!` with the closed-pipe handling of [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {
        $crate::cmd::out::write_stdout(format_args!($($t)*))
    };
}

mod cmd;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "umlkit",
    version,
    about = "User-Mode Linux, the whole toolkit: disks, switches, guests and network labs",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Cow(cmd::cow::Command),
    #[command(flatten)]
    Switch(cmd::switch::Command),
    #[command(flatten)]
    Link(cmd::link::Command),
    #[command(flatten)]
    Guest(cmd::guest::Command),
    #[command(flatten)]
    Lab(cmd::lab::Command),
    #[command(flatten)]
    Plug(cmd::plug::Command),
    /// Benchmarks against the C tools, measured side by side in one run
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Create the multi-call links (uml_mkcow, uml_moo, uml_switch, uml_mconsole, vde_plug) in DIR
    InstallLinks {
        /// Directory to create the links in
        dir: std::path::PathBuf,
        /// Replace existing files of the same names
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    #[command(flatten)]
    Cow(cmd::cow::Bench),
    #[command(flatten)]
    Switch(cmd::switch::Bench),
}

/// Names under which `umlkit` acts as a C tool of uml-utilities or vdeplug4.
const MULTICALL_NAMES: &[&str] = &[
    "uml_mkcow",
    "uml_moo",
    "uml_switch",
    "uml_mconsole",
    "vde_plug",
];

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match argv0.as_str() {
        "uml_mkcow" => return cmd::cow::multicall_mkcow(&args[1..]),
        "uml_moo" => return cmd::cow::multicall_moo(&args[1..]),
        "uml_switch" => return cmd::switch::multicall_uml_switch(&args[1..]),
        "uml_mconsole" => return cmd::guest::multicall_mconsole(&args[1..]),
        "vde_plug" => return cmd::plug::multicall_vde_plug(&args[1..]),
        _ => {}
    }
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Cow(c) => cmd::cow::run(c),
        Command::Switch(c) => cmd::switch::run(c),
        Command::Link(c) => cmd::link::run(c),
        Command::Guest(c) => cmd::guest::run(c),
        Command::Lab(c) => cmd::lab::run(c),
        Command::Plug(c) => cmd::plug::run(c),
        Command::Bench { which } => match which {
            BenchCommand::Cow(b) => cmd::cow::bench(b),
            BenchCommand::Switch(b) => cmd::switch::bench(b),
        },
        Command::InstallLinks { dir, force } => install_links(&dir, force),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("umlkit: {}", cmd::shown_lines(&cmd::error_chain(&err)));
            ExitCode::from(cmd::exit_code_for(&err))
        }
    }
}

fn install_links(dir: &std::path::Path, force: bool) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("cannot find the umlkit executable")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for name in MULTICALL_NAMES {
        let link = dir.join(name);
        if link.symlink_metadata().is_ok() {
            if !force {
                anyhow::bail!(
                    "{} already exists (use --force to replace it)",
                    link.display()
                );
            }
            std::fs::remove_file(&link)
                .with_context(|| format!("cannot remove {}", link.display()))?;
        }
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("cannot create link {}", link.display()))?;
        outln!("{} -> {}", link.display(), exe.display());
    }
    Ok(ExitCode::SUCCESS)
}

//! `umlkit`: the User-Mode Linux toolkit.
//!
//! A thin binary: parse arguments (clap), call one library function, print
//! the error chain once and map it to an exit code. Also a multi-call binary:
//! invoked as `uml_mkcow`, `uml_moo`, `uml_switch`, `uml_mconsole` or
//! `vde_plug` it behaves as that C tool does; invoked as a Netkit or Kathará
//! command (`lstart`, `vstart`, `kathara lstart`, ... see [`compat_names`])
//! it runs the umlkit commands they stand for.

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
/// Print a diagnostic line to stderr. Unlike `eprintln!`, a stderr that
/// is a closed pipe (`umlkit ... 2>&1 | head -1`) is not a panic: the
/// message is dropped, the command goes on and exits as it would.
macro_rules! errln {
    ($($t:tt)*) => {
        $crate::cmd::out::write_stderr(format_args!("{}\n", format_args!($($t)*)))
    };
}

/// `errln!` without the line break.
macro_rules! err {
    ($($t:tt)*) => {
        $crate::cmd::out::write_stderr(format_args!($($t)*))
    };
}

macro_rules! out {
    ($($t:tt)*) => {
        $crate::cmd::out::write_stdout(format_args!($($t)*))
    };
}

mod cmd;
mod compat_names;
mod generated;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
    #[command(flatten)]
    Web(cmd::web::Command),
    /// Benchmarks against the C tools, measured side by side in one run
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Create the multi-call links in DIR: uml_mkcow, uml_moo, uml_switch,
    /// uml_mconsole, vde_plug, Netkit's lstart, lhalt, lcrash, lclean, linfo, ltest,
    /// vstart, vlist, vhalt, vcrash and Kathará's kathara
    InstallLinks {
        /// Directory to create the links in [default: ~/.local/bin]
        dir: Option<std::path::PathBuf>,
        /// Replace existing symlinks of the same names (files are never replaced)
        #[arg(short, long)]
        force: bool,
    },
    /// Print a shell completion script: `source <(umlkit completions bash)`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (umlkit.1, umlkit-lab-start.1, ...) into DIR
    Man {
        #[arg(long)]
        dir: std::path::PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    #[command(flatten)]
    Cow(cmd::cow::Bench),
    #[command(flatten)]
    Switch(cmd::switch::Bench),
}

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
    if compat_names::is_name(&argv0) {
        let Ok(rest) = args[1..]
            .iter()
            .map(|a| a.clone().into_string())
            .collect::<Result<Vec<String>, _>>()
        else {
            errln!("{argv0}: arguments must be UTF-8 text");
            return ExitCode::from(2);
        };
        let t = compat_names::translate(&argv0, &rest).expect("a compat name translates");
        return match t {
            Ok(t) => compat_names::run(t, &mut |argv| {
                run(Cli::parse_from(
                    std::iter::once("umlkit".to_string()).chain(argv),
                ))
            }),
            Err(refused) => {
                errln!("{refused}");
                ExitCode::from(2)
            }
        };
    }
    run(Cli::parse_from(args))
}

/// Run one parsed command line; errors are printed once, as a chain.
fn run(cli: Cli) -> ExitCode {
    // commands whose exit status is someone else's result (the command's,
    // the checks') report umlkit's own failure apart (docs/exit-codes.md)
    let relays = matches!(
        &cli.command,
        Command::Guest(cmd::guest::Command::Exec { .. })
            | Command::Lab(cmd::lab::Command::Lab {
                cmd: cmd::lab::LabCmd::Exec { .. } | cmd::lab::LabCmd::Test { .. }
            })
    );
    let result = match cli.command {
        Command::Cow(c) => cmd::cow::run(c),
        Command::Switch(c) => cmd::switch::run(c),
        Command::Link(c) => cmd::link::run(c),
        Command::Guest(c) => cmd::guest::run(c),
        Command::Lab(c) => cmd::lab::run(c),
        Command::Plug(c) => cmd::plug::run(c),
        Command::Web(c) => cmd::web::run(c),
        Command::Bench { which } => match which {
            BenchCommand::Cow(b) => cmd::cow::bench(b),
            BenchCommand::Switch(b) => cmd::switch::bench(b),
        },
        Command::InstallLinks { dir, force } => compat_names::install_links(dir, force),
        Command::Completions { shell } => generated::completions(shell, Cli::command()),
        Command::Man { dir } => generated::man(&dir, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            errln!("umlkit: {}", cmd::shown_lines(&cmd::error_chain(&err)));
            ExitCode::from(if relays {
                cmd::OWN_FAILURE
            } else {
                cmd::exit_code_for(&err)
            })
        }
    }
}

//! `umlkit plug`: a switch port on stdin/stdout (vde_plug's stream mode),
//! and the `vde_plug` multi-call name.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use switchd::plug::{relay_stream, Plug, PlugOptions, StreamEnd};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Join a switch and carry its frames on stdin/stdout in vde_plug's stream
    /// framing: `dpipe umlkit plug /tmp/a = umlkit plug /tmp/b` cables two switches
    Plug(PlugArgs),
}

#[derive(Args, Debug)]
pub struct PlugArgs {
    /// The switch: DIR, DIR[PORT], DIR[GROUP] or vde://DIR[PORT]
    pub url: String,
    /// Ask for this port (as DIR[PORT]; 0 = the management port)
    #[arg(long)]
    pub port: Option<u32>,
    /// Description shown in the switch's port/print
    #[arg(short = 'D', long, default_value = "vdeplug:")]
    pub descr: String,
    /// Mode of the plug's data socket (octal)
    #[arg(short = 'm', long = "mod", default_value = "0700", value_parser = parse_mode)]
    pub mode: u32,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("'{s}' is not an octal mode (e.g. 0700)"))
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Plug(a) => plug(&a),
    }
}

fn plug(a: &PlugArgs) -> anyhow::Result<ExitCode> {
    let opts = PlugOptions {
        descr: a.descr.clone(),
        mode: a.mode,
        port: a.port,
    };
    let p = Plug::open(&a.url, &opts)?;
    let (end, stats) = relay_stream(p, std::io::stdin(), std::io::stdout());
    if stats.bad_lengths > 0 {
        errln!(
            "umlkit plug: {} stream frame length(s) over 9234 bytes: bytes discarded",
            stats.bad_lengths
        );
    }
    match end {
        StreamEnd::InputClosed | StreamEnd::OutputClosed => Ok(ExitCode::SUCCESS),
        StreamEnd::SwitchGone => bail!("{}: the switch closed the port", a.url),
    }
}

/// vde_plug's command line, the forms umlkit serves.
#[derive(Parser, Debug)]
#[command(name = "vde_plug", disable_version_flag = true)]
struct VdePlugCli {
    /// Description (vde_plug -D/--descr)
    #[arg(short = 'D', long, default_value = "vdeplug:")]
    descr: String,
    /// Mode of the data socket (vde_plug -m/--mod)
    #[arg(short = 'm', long = "mod", default_value = "0700", value_parser = parse_mode)]
    mode: u32,
    /// Port (obsolete vde_plug --port)
    #[arg(long)]
    port: Option<u32>,
    /// Port on the second URL (UML's vde transport passes --port2)
    #[arg(long)]
    port2: Option<u32>,
    /// Mode of the second URL's data socket (-M/--mod2)
    #[arg(short = 'M', long = "mod2", value_parser = parse_mode)]
    mode2: Option<u32>,
    /// Group of the data socket (-g/--group, -G/--group2): not supported
    #[arg(short = 'g', long = "group")]
    group: Option<String>,
    #[arg(short = 'G', long = "group2")]
    group2: Option<String>,
    /// URL [URL2 | = CMD ARGS...]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

/// UML's vde transport: frames on the inherited SOCK_SEQPACKET `fd`, relayed
/// to the switch at `url` as an ordinary port.
fn seqpacket(fd: i32, url: &str, cli: &VdePlugCli) -> anyhow::Result<ExitCode> {
    let sock = umlkit_sys::net::inherited_seqpacket(fd)
        .map_err(|e| anyhow::anyhow!("vde_open seqpacket://{fd}: {e}"))?;
    let opts = PlugOptions {
        descr: cli.descr.clone(),
        mode: cli.mode2.unwrap_or(0o700),
        port: cli.port2,
    };
    let p = Plug::open(url, &opts)?;
    let (end, _) = switchd::plug::relay_packets(p, std::os::unix::net::UnixDatagram::from(sock));
    match end {
        StreamEnd::InputClosed | StreamEnd::OutputClosed => Ok(ExitCode::SUCCESS),
        StreamEnd::SwitchGone => bail!("{url}: the switch closed the port"),
    }
}

/// `vde_plug [OPTIONS] URL`: stream mode on stdin/stdout, and
/// `vde_plug [OPTIONS] seqpacket://FD URL` as UML's vde transport runs it.
/// The other forms of vdeplug4's vde_plug are refused by name.
pub fn multicall_vde_plug(args: &[OsString]) -> ExitCode {
    let argv0 = std::iter::once(OsString::from("vde_plug"));
    let cli = match VdePlugCli::try_parse_from(argv0.chain(args.iter().cloned())) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let r = (|| -> anyhow::Result<ExitCode> {
        let url = match cli.rest.as_slice() {
            [] => bail!(
                "no switch given (the default switch /var/run/vde.ctl is not supported: name it)"
            ),
            [u] => u.clone(),
            [_, eq, ..] if eq == "=" => {
                bail!("`vde_plug URL = CMD` is not supported: use `dpipe umlkit plug URL = CMD`")
            }
            [first, second] => {
                if cli.group.is_some() || cli.group2.is_some() {
                    bail!("--group/--group2 are not supported: set the switch directory's group instead");
                }
                let Some(fd) = switchd::plug::seqpacket_fd(first) else {
                    bail!("plug-to-plug mode is supported for `seqpacket://FD URL` only (UML's vde transport), not '{first}'");
                };
                return seqpacket(fd, second, &cli);
            }
            _ => bail!("unexpected arguments: {}", cli.rest.join(" ")),
        };
        plug(&PlugArgs {
            url,
            port: cli.port,
            descr: cli.descr.clone(),
            mode: cli.mode,
        })
    })();
    match r {
        Ok(c) => c,
        Err(e) => {
            errln!("{}", super::shown_lines(&super::error_chain(&e)));
            ExitCode::from(1)
        }
    }
}

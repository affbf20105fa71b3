//! `umlkit link ...`: change and show a running switch's link emulation
//! through its management socket, and `umlkit capture`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use net_proto::link::{LinkDir, LinkSpec};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Shape a running switch's ports: delay, jitter, loss, rate, ...
    #[command(subcommand)]
    Link(LinkCommand),
    /// Record the frames crossing a running switch (pcapng, pcap or text)
    ///
    /// Without --port, every frame as it enters the switch; with --port N,
    /// the frames port N sends and receives. Ctrl-C ends the capture; the
    /// file stays valid and records the frames the switch had to drop
    /// because the capture did not keep up.
    Capture(CaptureArgs),
}

#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// The switch's management socket (umlkit switch -M)
    switch: PathBuf,
    /// Only this port (both directions)
    #[arg(long)]
    port: Option<u32>,
    /// Only frames of this VLAN
    #[arg(long)]
    vlan: Option<u16>,
    /// Write the frames to FILE (pcapng; `-` = standard output) instead of
    /// one line of text per frame
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    /// Stop after COUNT frames
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    count: Option<u64>,
    /// Classic pcap instead of pcapng (with -w)
    #[arg(long, requires = "write")]
    pcap: bool,
    /// Name port N's pcapng interface NAME instead of `portN` (repeatable)
    #[arg(long = "name", value_name = "N=NAME", value_parser = parse_port_name)]
    names: Vec<(u32, String)>,
    /// Print `ready` on standard output once the switch streams to this
    /// capture (for `lab start`, which waits for it)
    #[arg(long, hide = true, requires = "write")]
    notify_ready: bool,
}

fn print_ready() {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(b"ready\n").and_then(|()| o.flush());
}

fn parse_port_name(s: &str) -> Result<(u32, String), String> {
    let (n, name) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected PORT=NAME"))?;
    let n = n
        .parse()
        .map_err(|_| format!("{s:?}: {n:?} is not a port number"))?;
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(format!("{s:?}: a name is 1-128 printable characters"));
    }
    Ok((n, name.to_string()))
}

#[derive(Subcommand, Debug)]
pub enum LinkCommand {
    /// Set the impairments of a port (replaces its previous settings)
    Set(Box<SetArgs>),
    /// Show the settings and counters of one or every shaped port
    Show {
        /// The switch's management socket (umlkit switch -M)
        switch: PathBuf,
        port: Option<u32>,
        /// Machine-readable output (docs/json.md)
        #[arg(long)]
        json: bool,
    },
    /// Back to a neutral link
    Clear {
        /// The switch's management socket (umlkit switch -M)
        switch: PathBuf,
        port: u32,
        /// Only this direction: in (from the port's machine) or out (to it)
        #[arg(long, value_parser = parse_dir)]
        dir: Option<LinkDir>,
    },
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// The switch's management socket (umlkit switch -M)
    switch: PathBuf,
    port: u32,
    /// Settings as one string (`delay=20ms,loss=1%`); the flags below add to it
    spec: Option<String>,
    /// Only this direction: in (from the port's machine) or out (to it)
    #[arg(long, value_parser = parse_dir)]
    dir: Option<LinkDir>,
    /// Added delay, e.g. 20ms
    #[arg(long)]
    delay: Option<String>,
    /// Delay variation, e.g. 5ms
    #[arg(long)]
    jitter: Option<String>,
    /// Jitter distribution: uniform or normal
    #[arg(long)]
    dist: Option<String>,
    /// Loss percentage, e.g. 1%
    #[arg(long)]
    loss: Option<String>,
    /// Mean loss burst in frames
    #[arg(long)]
    burst: Option<String>,
    /// Gilbert-Elliott model P[:R[:1-H[:1-K]]]
    #[arg(long)]
    gemodel: Option<String>,
    /// Duplicated frames, percentage
    #[arg(long)]
    dup: Option<String>,
    /// Frames with one flipped bit, percentage
    #[arg(long)]
    corrupt: Option<String>,
    /// Jitter may reorder frames
    #[arg(long)]
    reorder: bool,
    /// Bottleneck: 10mbit, 512kbit, 128K (bytes/s)
    #[arg(long)]
    rate: Option<String>,
    /// Bytes the link holds at most: 64k, 1m
    #[arg(long)]
    queue: Option<String>,
    /// Largest Ethernet payload passed
    #[arg(long)]
    mtu: Option<String>,
}

fn parse_dir(s: &str) -> Result<LinkDir, String> {
    LinkDir::parse(s).ok_or_else(|| format!("'{s}': expected in, out or both"))
}

impl SetArgs {
    /// The settings of the string and flags together.
    fn spec(&self) -> anyhow::Result<LinkSpec> {
        let mut spec = match &self.spec {
            Some(s) => LinkSpec::parse(s)?,
            None => LinkSpec::none(),
        };
        let flags = [
            ("delay", &self.delay),
            ("jitter", &self.jitter),
            ("dist", &self.dist),
            ("loss", &self.loss),
            ("burst", &self.burst),
            ("gemodel", &self.gemodel),
            ("dup", &self.dup),
            ("corrupt", &self.corrupt),
            ("rate", &self.rate),
            ("queue", &self.queue),
            ("mtu", &self.mtu),
        ];
        for (key, v) in flags {
            if let Some(v) = v {
                spec.set(key, Some(v))?;
            }
        }
        if self.reorder {
            spec.set("reorder", None)?;
        }
        spec.validate()?;
        Ok(spec)
    }
}

fn dir_word(dir: Option<LinkDir>) -> String {
    match dir {
        None | Some(LinkDir::Both) => String::new(),
        Some(d) => format!("{d} "),
    }
}

fn run_capture(a: CaptureArgs) -> anyhow::Result<ExitCode> {
    capture_to(
        &a.switch,
        switchd::capture::CaptureOptions {
            port: a.port,
            vlan: a.vlan,
            count: a.count,
            names: a.names.into_iter().collect(),
            on_ready: a.notify_ready.then_some(print_ready as fn()),
            until: None,
        },
        a.write.as_deref(),
        a.pcap,
    )
}

/// `umlkit capture` (also behind `umlkit lab capture`).
pub fn capture_to(
    mgmt: &std::path::Path,
    opts: switchd::capture::CaptureOptions,
    write: Option<&std::path::Path>,
    pcap: bool,
) -> anyhow::Result<ExitCode> {
    use switchd::capture::{capture, Ended, Format};
    let format = match (write, pcap) {
        (None, _) => Format::Text,
        (Some(_), true) => Format::Pcap,
        (Some(_), false) => Format::Pcapng,
    };
    let summary = match write {
        Some(p) if p.as_os_str() != "-" => {
            let mut f = umlkit_sys::file::create_nofollow(p, 0o600)
                .with_context(|| format!("cannot create capture file {}", p.display()))?;
            capture(mgmt, &opts, format, &mut f)?
        }
        _ => {
            let mut o = std::io::stdout().lock();
            capture(mgmt, &opts, format, &mut o)?
        }
    };
    let why = match summary.ended_by {
        Ended::Count => "",
        Ended::Signal => " (interrupted)",
        Ended::SwitchGone => " (the switch closed the stream)",
        Ended::Deadline => " (time is up)",
    };
    errln!(
        "umlkit capture: {} frames captured, {} dropped by the switch (capture too slow){why}",
        summary.frames,
        summary.dropped
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let cmd = match cmd {
        Command::Link(c) => c,
        Command::Capture(a) => return run_capture(a),
    };
    match cmd {
        LinkCommand::Set(a) => {
            let spec = a.spec()?;
            let line = format!("link/set {} {}{}", a.port, dir_word(a.dir), spec);
            switchd::client::command(&a.switch, &line)
                .with_context(|| format!("cannot set port {} to {spec}", a.port))?;
        }
        LinkCommand::Show { switch, port, json } => {
            let line = match port {
                Some(p) => format!("link/show {p}"),
                None => "link/show".into(),
            };
            let text = switchd::client::command(&switch, &line).with_context(|| match port {
                Some(p) => format!("port {p} has no link settings"),
                None => "cannot show the link settings".into(),
            })?;
            if json {
                let v = show_json(&text)?;
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                out!("{text}");
            }
        }
        LinkCommand::Clear { switch, port, dir } => {
            let line = format!("link/clear {} {}", port, dir_word(dir));
            switchd::client::command(&switch, line.trim_end())
                .with_context(|| format!("cannot clear port {port}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The switch console's `link/show` text as the `link show --json` array
/// (docs/json.md): one object per port and direction.
pub fn show_json(text: &str) -> anyhow::Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    Ok(net_proto::link::parse_show(text)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .map(|l| {
            let mut o = serde_json::Map::new();
            o.insert("port".into(), l.port.into());
            o.insert("dir".into(), l.dir.into());
            o.insert("spec".into(), l.spec.into());
            for (k, n) in l.counters {
                o.insert(k.replace('-', "_"), n.into());
            }
            o
        })
        .collect())
}

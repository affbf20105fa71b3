//! The capture client: asks a running switch for a capture stream
//! (`capture/start` on its console) and writes it as pcapng, classic pcap
//! or one line of text per frame.
//!
//! Output is written and flushed as frames arrive, so a file can be read
//! while the capture runs. SIGINT/SIGTERM/SIGHUP end it cleanly: pcapng
//! files then get one statistics block per interface with the frames the
//! switch dropped because this client did not read fast enough.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use net_proto::capture::{self as cap, CapDir, CapMsg};
use net_proto::pcap::{self, Direction, Interface, Packet, PcapngWriter, Stats};
use umlkit_sys::net::{Epoll, Event, Interest, SignalFd, SIGHUP, SIGINT, SIGTERM};

use crate::client::Console;
use crate::Error;

/// How frames are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// pcapng: one interface per port, directions, drop statistics.
    Pcapng,
    /// Classic pcap (no interfaces, no directions).
    Pcap,
    /// One line per frame.
    Text,
}

/// What to capture.
#[derive(Debug, Clone, Default)]
pub struct CaptureOptions {
    /// Only this port (frames in both directions); None = every frame as
    /// it enters the switch.
    pub port: Option<u32>,
    pub vlan: Option<u16>,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// pcapng interface names by port (e.g. `pc1:eth0` for a lab); ports
    /// not named are `portN`.
    pub names: std::collections::BTreeMap<u32, String>,
    /// Called once the switch streams to this capture and the file header
    /// is written (a supervisor waiting for the capture to be in place).
    pub on_ready: Option<fn()>,
    /// Stop at this time (the web view's timed captures).
    pub until: Option<std::time::Instant>,
}

/// What a capture saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Frames written.
    pub frames: u64,
    /// Frames the switch dropped for this client (it read too slowly).
    pub dropped: u64,
    /// Why it ended.
    pub ended_by: Ended,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ended {
    #[default]
    Count,
    Signal,
    /// The switch closed the stream (it stopped).
    SwitchGone,
    /// [`CaptureOptions::until`] passed.
    Deadline,
}

struct PortIf {
    port: u32,
    id: u32,
    frames: u64,
    dropped: u64,
}

struct Writer {
    format: Format,
    names: std::collections::BTreeMap<u32, String>,
    ng: PcapngWriter,
    ports: Vec<PortIf>,
    buf: Vec<u8>,
}

impl Writer {
    fn interface(&mut self, port: u32, descr: &str) -> Result<usize, pcap::PcapError> {
        if let Some(i) = self.ports.iter().position(|p| p.port == port) {
            return Ok(i);
        }
        let id = if self.format == Format::Pcapng {
            let name = self
                .names
                .get(&port)
                .cloned()
                .unwrap_or_else(|| format!("port{port}"));
            let description = if descr.is_empty() {
                format!("switch port {port}")
            } else {
                format!("switch port {port}: {descr}")
            };
            self.ng
                .add_interface(&mut self.buf, &Interface::ethernet(&name, &description))?
        } else {
            0
        };
        self.ports.push(PortIf {
            port,
            id,
            frames: 0,
            dropped: 0,
        });
        Ok(self.ports.len() - 1)
    }

    fn packet(
        &mut self,
        port: u32,
        dir: CapDir,
        ts: Duration,
        frame: &[u8],
    ) -> Result<(), pcap::PcapError> {
        let i = self.interface(port, "")?;
        self.ports[i].frames += 1;
        match self.format {
            Format::Pcapng => {
                let id = self.ports[i].id;
                self.ng.packet(
                    &mut self.buf,
                    &Packet {
                        interface: id,
                        ts,
                        data: frame,
                        direction: Some(match dir {
                            CapDir::In => Direction::Inbound,
                            CapDir::Out => Direction::Outbound,
                        }),
                        comment: None,
                    },
                )?;
            }
            Format::Pcap => pcap::pcap_record(&mut self.buf, ts, frame, pcap::SNAPLEN),
            Format::Text => {
                let line = text_line(port, dir, ts, frame);
                self.buf.extend_from_slice(line.as_bytes());
            }
        }
        Ok(())
    }
}

/// `12:00:01.123456 port 1 in  98 bytes 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff type 0x0806`
fn text_line(port: u32, dir: CapDir, ts: Duration, frame: &[u8]) -> String {
    let secs = ts.as_secs() % 86400;
    let clock = format!(
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ts.subsec_micros()
    );
    let d = match dir {
        CapDir::In => "in ",
        CapDir::Out => "out",
    };
    match net_proto::eth::Frame::new_checked(frame) {
        Ok(f) => {
            let vlan = f.vlan().map(|v| format!(" vlan {v}")).unwrap_or_default();
            format!(
                "{clock} port {port} {d} {} bytes {} > {}{vlan} type 0x{:04x}\n",
                frame.len(),
                f.src(),
                f.dst(),
                f.ethertype()
            )
        }
        Err(_) => format!("{clock} port {port} {d} {} bytes (runt)\n", frame.len()),
    }
}

fn stream_err(path: &Path, source: io::Error) -> Error {
    Error::Console {
        path: path.to_path_buf(),
        source,
    }
}

/// Capture from the switch whose console is `mgmt` into `out` until the
/// count is reached, a signal arrives or the switch goes away. `out` is
/// flushed after each read from the switch.
pub fn capture(
    mgmt: &Path,
    opts: &CaptureOptions,
    format: Format,
    out: &mut dyn Write,
) -> Result<Summary, Error> {
    let mut line = String::from("capture/start");
    if let Some(p) = opts.port {
        line.push_str(&format!(" port={p}"));
    }
    if let Some(v) = opts.vlan {
        line.push_str(&format!(" vlan={v}"));
    }
    let mut console = Console::connect(mgmt)?;
    // signals first: a Ctrl-C right after the switch starts streaming
    // still ends the file cleanly
    let signals = SignalFd::new(&[SIGINT, SIGTERM, SIGHUP]).map_err(|e| stream_err(mgmt, e))?;
    console.command(&line)?;
    let (mut stream, early) = console.into_stream();
    stream
        .set_read_timeout(None)
        .and_then(|()| stream.set_nonblocking(true))
        .map_err(|e| stream_err(mgmt, e))?;
    let mut epoll = Epoll::new().map_err(|e| stream_err(mgmt, e))?;
    epoll
        .add(stream.as_fd(), 1, Interest::READ)
        .and_then(|()| epoll.add(signals.fd(), 2, Interest::READ))
        .map_err(|e| stream_err(mgmt, e))?;

    let mut w = Writer {
        format,
        names: opts.names.clone(),
        ng: PcapngWriter::new(),
        ports: Vec::new(),
        buf: Vec::new(),
    };
    let app = concat!("umlkit ", env!("CARGO_PKG_VERSION"));
    match format {
        Format::Pcapng => {
            w.ng.section_header(&mut w.buf, app)
                .map_err(|e| bad(mgmt, e.to_string()))?
        }
        Format::Pcap => pcap::pcap_header(&mut w.buf, pcap::SNAPLEN, pcap::LINKTYPE_ETHERNET),
        Format::Text => {}
    }
    let write_out = |out: &mut dyn Write, buf: &mut Vec<u8>| -> Result<(), Error> {
        out.write_all(buf)
            .and_then(|()| out.flush())
            .map_err(|source| Error::Output { source })?;
        buf.clear();
        Ok(())
    };
    write_out(out, &mut w.buf)?;
    if let Some(f) = opts.on_ready {
        f();
    }

    let mut summary = Summary::default();
    let mut inbuf: Vec<u8> = Vec::with_capacity(1 << 16);
    inbuf.extend_from_slice(&early);
    let mut chunk = vec![0u8; 1 << 16];
    let mut events: Vec<Event> = Vec::new();
    'outer: loop {
        if opts.count.is_some_and(|c| summary.frames >= c) {
            summary.ended_by = Ended::Count;
            break;
        }
        let mut off = 0;
        while let Some((msg, used)) =
            cap::decode(&inbuf[off..]).map_err(|e| bad(mgmt, e.to_string()))?
        {
            off += used;
            match msg {
                CapMsg::Interface { port, descr } => {
                    w.interface(port, descr)
                        .map_err(|e| bad(mgmt, e.to_string()))?;
                }
                CapMsg::Packet {
                    port,
                    dir,
                    ts,
                    frame,
                } => {
                    if opts.count.is_some_and(|c| summary.frames >= c) {
                        break;
                    }
                    w.packet(port, dir, ts, frame)
                        .map_err(|e| bad(mgmt, e.to_string()))?;
                    summary.frames += 1;
                }
                CapMsg::Drops { port, total } => {
                    let i = w
                        .interface(port, "")
                        .map_err(|e| bad(mgmt, e.to_string()))?;
                    w.ports[i].dropped = total;
                }
            }
        }
        inbuf.drain(..off);
        write_out(out, &mut w.buf)?;
        if opts.count.is_some_and(|c| summary.frames >= c) {
            continue; // ends at the top
        }
        let timeout_ms = match opts.until {
            None => -1,
            Some(t) => {
                let left = t.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    summary.ended_by = Ended::Deadline;
                    break;
                }
                left.as_millis().clamp(1, i32::MAX as u128) as i32
            }
        };
        epoll
            .wait(&mut events, timeout_ms)
            .map_err(|e| stream_err(mgmt, e))?;
        if events.iter().any(|e| e.token == 2) && signals.read().is_some() {
            summary.ended_by = Ended::Signal;
            break;
        }
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    summary.ended_by = Ended::SwitchGone;
                    break 'outer;
                }
                Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(stream_err(mgmt, e)),
            }
            if inbuf.len() >= 1 << 20 {
                break;
            }
        }
    }
    summary.dropped = w.ports.iter().map(|p| p.dropped).sum();
    if format == Format::Pcapng {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        for i in 0..w.ports.len() {
            let p = &w.ports[i];
            let stats = Stats {
                received: Some(p.frames + p.dropped),
                if_drop: None,
                capture_drop: Some(p.dropped),
                delivered: Some(p.frames),
            };
            let id = p.id;
            w.ng.stats(&mut w.buf, id, now, &stats)
                .map_err(|e| bad(mgmt, e.to_string()))?;
        }
    }
    write_out(out, &mut w.buf)?;
    Ok(summary)
}

fn bad(path: &Path, reply: String) -> Error {
    Error::BadReply {
        path: path.to_path_buf(),
        reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines() {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.resize(60, 0);
        let l = text_line(3, CapDir::In, Duration::new(3600 + 61, 5_000), &f);
        assert_eq!(
            l,
            "01:01:01.000005 port 3 in  60 bytes 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff type 0x0806\n"
        );
        assert!(text_line(1, CapDir::Out, Duration::ZERO, &[1, 2]).contains("(runt)"));
    }
}

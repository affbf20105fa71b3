//! Management connections: the vde_switch console protocol (one command's
//! output held at a time) and capture streams, fed by the data path's
//! single tap ([`Consoles::tap`]).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use net_proto::capture as cap;
use net_proto::eth;
use switch_core::{EndpointId, Switch};
use umlkit_sys::net::{Event, Interest};

use super::token::Token;
use super::{ExitReason, Server};
use crate::mgmt;

/// Console connections, those of them that are capture streams, and the
/// capture clock.
pub(super) struct Consoles {
    pub conns: Vec<Option<MgmtConn>>,
    /// Console connections that are capture streams.
    pub captures: Vec<u32>,
    /// Some capture got data since the last flush.
    pub dirty: bool,
    /// Wall-clock time at the server's start (capture timestamps).
    pub epoch: Duration,
}

impl Consoles {
    pub fn new() -> Consoles {
        Consoles {
            conns: Vec::new(),
            captures: Vec::new(),
            dirty: false,
            epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    /// The one capture tap: `frame` crosses endpoint `ep`'s port in `dir`
    /// at `now` (time since the server's start); every capture client
    /// that wants it gets a copy queued.
    pub fn tap(
        &mut self,
        switch: &Switch,
        now: Duration,
        ep: EndpointId,
        dir: cap::CapDir,
        frame: &[u8],
    ) {
        if self.captures.is_empty() {
            return;
        }
        let Some(port) = switch.endpoint(ep).map(|e| e.port) else {
            return;
        };
        tap_port(
            &mut self.conns,
            &self.captures,
            switch,
            self.epoch + now,
            port,
            dir,
            frame,
        );
        self.dirty = true;
    }

    /// Some capture is of one port (it also sees frames sent to the port).
    pub fn port_captures(&self) -> bool {
        self.captures.iter().any(|&fd| {
            self.conns
                .get(fd as usize)
                .and_then(Option::as_ref)
                .and_then(|c| c.capture.as_ref())
                .is_some_and(|c| c.port.is_some())
        })
    }
}

pub(super) struct MgmtConn {
    pub stream: UnixStream,
    pub out: Vec<u8>,
    /// Set once the connection is a capture stream.
    pub capture: Option<Box<Capture>>,
}

/// Bytes queued for one capture client at most; frames that do not fit
/// are dropped (counted per port, reported in the stream).
const CAPTURE_QUEUE: usize = 4 << 20;

/// A capture client: what it wants and what it missed.
pub(super) struct Capture {
    port: Option<u32>,
    vlan: Option<u16>,
    /// Bytes queued at most.
    limit: usize,
    /// Ports whose Interface message was sent.
    announced: Vec<u32>,
    /// Per port: frames dropped (cumulative) and the count last reported.
    drops: Vec<(u32, u64, u64)>,
    unreported: bool,
}

impl Capture {
    /// Queue the Drops messages not sent yet (if they fit).
    fn report_drops(&mut self, out: &mut Vec<u8>) {
        if !self.unreported {
            return;
        }
        let need = self.drops.len() * 17;
        if out.len() + need > self.limit {
            return;
        }
        for d in &mut self.drops {
            if d.1 != d.2 {
                cap::encode(
                    out,
                    &cap::CapMsg::Drops {
                        port: d.0,
                        total: d.1,
                    },
                );
                d.2 = d.1;
            }
        }
        self.unreported = false;
    }

    fn drop_one(&mut self, port: u32) {
        match self.drops.iter_mut().find(|d| d.0 == port) {
            Some(d) => d.1 += 1,
            None => self.drops.push((port, 1, 0)),
        }
        self.unreported = true;
    }
}

impl Server {
    /// Write what the capture clients have queued (never blocking).
    pub(super) fn flush_captures(&mut self) {
        self.console.dirty = false;
        // a flush may close a connection (reader gone): work on a copy
        let mut fds = std::mem::take(&mut self.console.captures);
        for &fd in &fds {
            self.mgmt_flush(fd);
        }
        let mgmts = &self.console.conns;
        fds.retain(|&fd| {
            mgmts
                .get(fd as usize)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.capture.is_some())
        });
        self.console.captures = fds;
    }

    /// Turn console connection `fd` into a capture stream.
    pub(super) fn start_capture(&mut self, fd: u32, port: Option<u32>, vlan: Option<u16>) {
        if port.is_some_and(|p| p >= self.switch.numports()) {
            self.mgmt_write(
                fd,
                net_proto::mgmt::reply(None, net_proto::mgmt::EINVAL).as_bytes(),
            );
            return;
        }
        self.mgmt_write(fd, net_proto::mgmt::reply(None, 0).as_bytes());
        let Some(c) = self
            .console
            .conns
            .get_mut(fd as usize)
            .and_then(Option::as_mut)
        else {
            return;
        };
        c.capture = Some(Box::new(Capture {
            port,
            vlan,
            limit: CAPTURE_QUEUE,
            announced: Vec::new(),
            drops: Vec::new(),
            unreported: false,
        }));
        self.console.captures.push(fd);
        self.log.peer(&format!(
            "capture started on console connection {fd} (port {}, vlan {})",
            port.map_or("any".into(), |p| p.to_string()),
            vlan.map_or("any".into(), |v| v.to_string())
        ));
    }

    pub(super) fn accept_mgmt(&mut self) {
        loop {
            let Some(l) = self.listen.mgmt.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(true);
                    let fd = stream.as_raw_fd() as u32;
                    if self
                        .epoll
                        .add(stream.as_fd(), Token::Mgmt(fd).encode(), Interest::READ)
                        .is_err()
                    {
                        continue;
                    }
                    let idx = fd as usize;
                    if self.console.conns.len() <= idx {
                        self.console.conns.resize_with(idx + 1, || None);
                    }
                    self.console.conns[idx] = Some(MgmtConn {
                        stream,
                        out: Vec::new(),
                        capture: None,
                    });
                    let banner = format!("{}{}", net_proto::mgmt::BANNER, net_proto::mgmt::PROMPT);
                    self.mgmt_write(fd, banner.as_bytes());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    pub(super) fn close_mgmt(&mut self, fd: u32) {
        if let Some(c) = self
            .console
            .conns
            .get_mut(fd as usize)
            .and_then(Option::take)
        {
            let _ = self.epoll.delete(c.stream.as_fd());
            if c.capture.is_some() {
                self.console.captures.retain(|&x| x != fd);
                self.log
                    .peer(&format!("capture on console connection {fd} ended"));
            }
        }
    }

    /// Queue `bytes` for a console client and write what the socket takes.
    pub(super) fn mgmt_write(&mut self, fd: u32, bytes: &[u8]) {
        let Some(c) = self
            .console
            .conns
            .get_mut(fd as usize)
            .and_then(Option::as_mut)
        else {
            return;
        };
        c.out.extend_from_slice(bytes);
        self.mgmt_flush(fd);
    }

    pub(super) fn mgmt_flush(&mut self, fd: u32) {
        let Some(c) = self
            .console
            .conns
            .get_mut(fd as usize)
            .and_then(Option::as_mut)
        else {
            return;
        };
        if let Some(capture) = c.capture.as_mut() {
            capture.report_drops(&mut c.out);
        }
        while !c.out.is_empty() {
            match c.stream.write(&c.out) {
                Ok(0) => break,
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.close_mgmt(fd);
                    return;
                }
            }
        }
        // Flow control: no new command is read while the output of the
        // last one waits, so a console holds at most one command's output
        // (a full `hash/print` is streamed whole, never cut).
        let interest = if c.out.is_empty() {
            Interest::READ
        } else {
            Interest {
                // a capture stream is watched for its reader leaving
                read: c.capture.is_some(),
                write: true,
            }
        };
        let _ = self
            .epoll
            .modify(c.stream.as_fd(), Token::Mgmt(fd).encode(), interest);
    }

    pub(super) fn on_mgmt(&mut self, fd: u32, ev: Event) {
        if ev.writable {
            self.mgmt_flush(fd);
        }
        if !ev.readable && !ev.hangup {
            return;
        }
        let mut buf = [0u8; net_proto::mgmt::MAX_LINE];
        let res = {
            let Some(c) = self
                .console
                .conns
                .get_mut(fd as usize)
                .and_then(Option::as_mut)
            else {
                return;
            };
            if c.capture.is_some() {
                // input of a capture client is ignored; EOF ends it
                match c.stream.read(&mut buf) {
                    Ok(0) => self.close_mgmt(fd),
                    Err(e)
                        if e.kind() != io::ErrorKind::WouldBlock
                            && e.kind() != io::ErrorKind::Interrupted =>
                    {
                        self.close_mgmt(fd)
                    }
                    _ => {}
                }
                return;
            }
            if !c.out.is_empty() {
                if ev.hangup && !ev.writable {
                    self.close_mgmt(fd); // the reader is gone
                }
                return; // the next command waits until this output is read
            }
            c.stream.read(&mut buf)
        };
        match res {
            Ok(0) => self.close_mgmt(fd),
            Ok(n) => {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Ok(net_proto::mgmt::MgmtCommand::CaptureStart { port, vlan }) =
                    net_proto::mgmt::parse(&line)
                {
                    self.start_capture(fd, port, vlan);
                    return;
                }
                let (text, close, exit) = mgmt::execute(self, &line);
                self.mgmt_write(fd, text.as_bytes());
                if close {
                    self.close_mgmt(fd);
                }
                if exit {
                    self.log.info("Shutdown from mgmt command");
                    self.exit = Some(ExitReason::Shutdown);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.close_mgmt(fd),
        }
    }
}

/// Queue a copy of `frame` (crossing `port` in `dir`) for every capture
/// client that wants it; a client whose queue is full loses it (counted).
fn tap_port(
    conns: &mut [Option<MgmtConn>],
    captures: &[u32],
    switch: &Switch,
    ts: Duration,
    port: u32,
    dir: cap::CapDir,
    frame: &[u8],
) {
    let mut vlan = None;
    for &fd in captures {
        let Some(c) = conns.get_mut(fd as usize).and_then(Option::as_mut) else {
            continue;
        };
        let Some(k) = c.capture.as_mut() else {
            continue;
        };
        match k.port {
            Some(p) if p != port => continue,
            None if dir == cap::CapDir::Out => continue, // seen coming in
            _ => {}
        }
        if let Some(want) = k.vlan {
            let v = *vlan.get_or_insert_with(|| {
                eth::Frame::new_checked(frame)
                    .ok()
                    .and_then(|f| f.vlan())
                    .or_else(|| switch.port(port).map(|p| p.vlan))
                    .unwrap_or(0)
            });
            if v != want {
                continue;
            }
        }
        let msg = cap::CapMsg::Packet {
            port,
            dir,
            ts,
            frame,
        };
        let mut need = cap::encoded_len(&msg);
        let descr = if k.announced.contains(&port) {
            None
        } else {
            let d = switch
                .port(port)
                .and_then(|p| p.endpoints.first().copied())
                .and_then(|ep| switch.endpoint(ep))
                .map(|e| e.descr.as_str())
                .unwrap_or("");
            need += cap::HEADER_LEN + 4 + d.len();
            Some(d)
        };
        if c.out.len() + need > k.limit {
            k.drop_one(port);
            continue;
        }
        k.report_drops(&mut c.out);
        if let Some(descr) = descr {
            cap::encode(&mut c.out, &cap::CapMsg::Interface { port, descr });
            k.announced.push(port);
        }
        cap::encode(&mut c.out, &msg);
    }
}

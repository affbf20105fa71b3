//! Control handshake: connections on the listeners until they send their
//! request (bounded and timed out), then VDE and uml_switch port requests:
//! checks of the client's socket, port assignment, the reply.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use net_proto::ctl::{self, Dialect, Request, RequestKind, SockAddrUn};
use switch_core::PortRequest;
use umlkit_sys::net::{self as sys, Interest, SockKind};

use super::datapath::{EpIo, Sink};
use super::listen::set_perm;
use super::token::Token;
use super::Server;
use crate::{reach, Flavor};

/// Pending connections (no request yet) kept at most (fewer if the open
/// file limit is low); when full, the oldest is closed to make room, so
/// idle connections never lock real clients out.
const MAX_PENDING: usize = 4096;
/// A control connection must send its request within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A control connection.
pub(super) struct CtlConn {
    pub stream: UnixStream,
    pub dialect: Dialect,
    /// Endpoint created for it (its id is the fd number).
    pub port: Option<u32>,
    /// When it was accepted (pending connections time out).
    pub since: Duration,
    /// Accept sequence number (tells a reused fd number apart).
    pub serial: u64,
    /// Who is at the other end (SO_PEERCRED at accept), for messages.
    pub peer: Peer,
}

/// The process at the other end of a connection, as SO_PEERCRED tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer(pub Option<(i32, u32)>);

impl Peer {
    pub fn of(s: &UnixStream) -> Peer {
        Peer(
            sys::peer_cred(s.as_fd())
                .ok()
                .map(|(pid, uid, _)| (pid, uid)),
        )
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some((pid, uid)) => write!(f, "pid {pid} uid {uid}"),
            None => f.write_str("unknown peer"),
        }
    }
}

/// Control connections and the bookkeeping of those still pending.
pub(super) struct Handshakes {
    pub conns: Vec<Option<CtlConn>>,
    pub pending: usize,
    /// Pending connections in accept order: (fd, serial); entries of
    /// connections closed or established meanwhile are skipped.
    pub pending_order: VecDeque<(u32, u64)>,
    pub max_pending: usize,
    pub accepted: u64,
    /// Vector (bess) endpoints: their socket is the data path and its
    /// hangup ends the port; the client who connected.
    pub vectors: std::collections::HashMap<u32, Peer>,
}

impl Handshakes {
    pub fn new() -> Handshakes {
        Handshakes {
            conns: Vec::new(),
            pending: 0,
            pending_order: VecDeque::new(),
            // idle connections cost one fd each: raise the soft limit to the
            // hard one and keep half of it for them at most
            max_pending: umlkit_sys::process::raise_nofile_limit()
                .map(|n| (n / 2) as usize)
                .unwrap_or(512)
                .clamp(16, MAX_PENDING),
            accepted: 0,
            vectors: Default::default(),
        }
    }

    /// Who is at the other end of control connection (endpoint) `fd`.
    pub fn peer(&self, fd: u32) -> Peer {
        if let Some(p) = self.vectors.get(&fd) {
            return *p;
        }
        self.conns
            .get(fd as usize)
            .and_then(Option::as_ref)
            .map_or(Peer(None), |c| c.peer)
    }
}

impl Server {
    pub(super) fn accept_ctl(&mut self, dialect: Dialect) {
        loop {
            let l = match dialect {
                Dialect::Vde => self.listen.vde.as_ref(),
                Dialect::UmlSwitch => self.listen.uml.as_ref(),
            };
            let Some(l) = l else { return };
            match l.accept() {
                Ok((stream, _)) => {
                    if self.ctl.pending >= self.ctl.max_pending {
                        self.log.peer(
                            "too many control connections without a request: closed the oldest",
                        );
                        self.close_oldest_pending();
                    }
                    let _ = stream.set_nonblocking(true);
                    let peer = Peer::of(&stream);
                    let fd = stream.as_raw_fd() as u32;
                    if self
                        .epoll
                        .add(stream.as_fd(), Token::Ctl(fd).encode(), Interest::READ)
                        .is_err()
                    {
                        continue;
                    }
                    let idx = fd as usize;
                    if self.ctl.conns.len() <= idx {
                        self.ctl.conns.resize_with(idx + 1, || None);
                    }
                    self.ctl.conns[idx] = Some(CtlConn {
                        stream,
                        dialect,
                        port: None,
                        since: self.start.elapsed(),
                        serial: self.ctl.accepted,
                        peer,
                    });
                    self.ctl.pending_order.push_back((fd, self.ctl.accepted));
                    self.ctl.accepted += 1;
                    self.ctl.pending += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: make room by closing the oldest
                    // idle connection and try again; else retry on the
                    // next event.
                    self.log.peer(&format!("accept failed: {e}"));
                    if !self.close_oldest_pending() {
                        return;
                    }
                }
            }
        }
    }

    /// The oldest pending connection of `pending_order` still waiting for
    /// its request (dropping entries of connections gone or established).
    pub(super) fn oldest_pending(&mut self) -> Option<(u32, Duration)> {
        while let Some(&(fd, serial)) = self.ctl.pending_order.front() {
            match self.ctl.conns.get(fd as usize).and_then(Option::as_ref) {
                Some(c) if c.serial == serial && c.port.is_none() => return Some((fd, c.since)),
                _ => {
                    self.ctl.pending_order.pop_front();
                }
            }
        }
        None
    }

    /// Close the oldest connection that sent no request yet; false if there
    /// is none.
    pub(super) fn close_oldest_pending(&mut self) -> bool {
        match self.oldest_pending() {
            Some((fd, _)) => {
                self.ctl.pending_order.pop_front();
                self.close_ctl(fd);
                true
            }
            None => false,
        }
    }

    /// Close control connections that sent no request in time.
    pub(super) fn expire_handshakes(&mut self, now: Duration) {
        let mut stale = Vec::new();
        while let Some((fd, since)) = self.oldest_pending() {
            if now.saturating_sub(since) <= HANDSHAKE_TIMEOUT {
                break;
            }
            self.ctl.pending_order.pop_front();
            stale.push(fd);
        }
        if stale.is_empty() {
            return;
        }
        // logged before closing: a client seeing EOF finds the line there
        let mut who: Vec<String> = stale
            .iter()
            .take(4)
            .map(|&fd| self.ctl.peer(fd).to_string())
            .collect();
        if stale.len() > who.len() {
            who.push("...".into());
        }
        self.log.peer(&format!(
            "{} control connection(s) sent no request in time, closed ({})",
            stale.len(),
            who.join(", ")
        ));
        for fd in stale {
            self.close_ctl(fd);
        }
    }

    /// Vector (bess) clients: each accepted SOCK_SEQPACKET connection is a
    /// port at once (the transport has no handshake); its socket number is
    /// the endpoint id, its peer credentials name the client.
    pub(super) fn accept_vec(&mut self) {
        loop {
            let Some(l) = self.listen.vec.as_ref() else {
                return;
            };
            let sock = match sys::accept(l.as_fd()) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.log.peer(&format!("vector accept failed: {e}"));
                    return;
                }
            };
            let cred = sys::peer_cred(sock.as_fd()).ok();
            let peer = Peer(cred.map(|(pid, uid, _)| (pid, uid)));
            let ep = sock.as_raw_fd() as u32;
            let descr = match cred {
                Some((pid, uid, _)) => format!(
                    "UML vector user={} pid={pid}",
                    sys::user_name(uid).unwrap_or_else(|| uid.to_string())
                ),
                None => "UML vector".to_string(),
            };
            let port = match self
                .switch
                .connect(ep, PortRequest::Any, cred.map(|c| c.1), &descr)
            {
                Ok(p) => p,
                Err(e) => {
                    self.log
                        .peer(&format!("vector port refused: {e} (client {peer})"));
                    continue;
                }
            };
            sys::set_buffer_sizes(sock.as_fd(), self.opts.sock_buf, self.opts.sock_buf);
            if let Err(e) = self
                .epoll
                .add(sock.as_fd(), Token::Data(ep).encode(), Interest::READ)
            {
                let _ = self.switch.disconnect(ep);
                self.log.peer(&format!("epoll: {e} (client {peer})"));
                continue;
            }
            self.ctl.vectors.insert(ep, peer);
            self.set_ep(
                ep,
                EpIo {
                    sink: Sink::Own {
                        sock,
                        path: std::path::PathBuf::new(),
                    },
                    module: "vector",
                },
            );
            let _ = port;
        }
    }

    /// A vector endpoint's client hung up (or the port is closed).
    pub(super) fn close_vector(&mut self, ep: u32) {
        if let Some(peer) = self.ctl.vectors.remove(&ep) {
            self.remove_endpoint(ep, peer);
        }
    }

    pub(super) fn close_ctl(&mut self, fd: u32) {
        let Some(conn) = self.ctl.conns.get_mut(fd as usize).and_then(Option::take) else {
            return;
        };
        let _ = self.epoll.delete(conn.stream.as_fd());
        match conn.port {
            None => self.ctl.pending = self.ctl.pending.saturating_sub(1),
            Some(_) => self.remove_endpoint(fd, conn.peer),
        }
        drop(conn);
    }

    pub(super) fn on_ctl(&mut self, fd: u32) {
        let mut buf = [0u8; ctl::MAX_REQUEST];
        let (res, established, dialect) = {
            let Some(conn) = self.ctl.conns.get_mut(fd as usize).and_then(Option::as_mut) else {
                return;
            };
            (
                conn.stream.read(&mut buf),
                conn.port.is_some(),
                conn.dialect,
            )
        };
        match res {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => {
                if !established && self.opts.flavor == Flavor::UmlSwitch {
                    println!("EOF from new port");
                }
                self.close_ctl(fd);
            }
            Ok(n) if established => {
                // uml_switch: any data on an established control connection
                // ends the port; VDE clients never write here either.
                let _ = n;
                if self.opts.flavor == Flavor::UmlSwitch {
                    println!("Bad request");
                }
                self.close_ctl(fd);
            }
            Ok(n) => {
                let req = ctl::parse_request(&buf[..n], dialect);
                self.ctl.pending = self.ctl.pending.saturating_sub(1);
                match req {
                    Ok(req) => {
                        let r = match dialect {
                            Dialect::Vde => self.new_vde_port(fd, &req),
                            Dialect::UmlSwitch => self.new_uml_port(fd, &req),
                        };
                        if let Err(msg) = r {
                            let peer = self.ctl.peer(fd);
                            self.log.peer(&format!("{msg} (client {peer})"));
                            self.ctl.pending += 1; // close_ctl decrements
                            self.close_ctl(fd);
                        }
                    }
                    Err(e) => {
                        let peer = self.ctl.peer(fd);
                        self.log
                            .peer(&format!("control request refused: {e} (client {peer})"));
                        self.ctl.pending += 1;
                        self.close_ctl(fd);
                    }
                }
            }
        }
    }

    pub(super) fn port_request(req: &Request) -> PortRequest {
        match req {
            Request::V3 {
                kind: RequestKind::NewPort0,
                ..
            } => PortRequest::Port0,
            Request::V3 { port, .. } if *port > 0 => PortRequest::Number(*port),
            _ => PortRequest::Any,
        }
    }

    pub(super) fn write_reply(&mut self, fd: u32, bytes: &[u8]) -> Result<(), String> {
        let conn = self.ctl.conns[fd as usize].as_mut().ok_or("gone")?;
        match conn.stream.write(bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) => Err("short write of the reply".into()),
            Err(e) => Err(format!("writing the reply: {e}")),
        }
    }

    /// A client naming a socket path: unless it is root or the switch's own
    /// user, check that it could connect there itself (see [`reach`]).
    /// Returns the checked place to connect to (None: use the path as is).
    pub(super) fn check_client_socket(
        &mut self,
        fd: u32,
        path: &Path,
    ) -> Result<Option<reach::Checked>, String> {
        let conn = self.ctl.conns[fd as usize].as_ref().ok_or("gone")?;
        let checked = match sys::peer_cred(conn.stream.as_fd()) {
            Ok((_, uid, _)) if uid == 0 || uid == sys::euid() => return Ok(None),
            Ok((pid, uid, gid)) => {
                let cred = reach::Cred {
                    uid,
                    gid,
                    groups: umlkit_sys::process::supplementary_groups(pid as u32),
                };
                reach::check(path, &cred)
            }
            Err(e) => Err(format!("cannot get the credentials of the client: {e}")),
        };
        match checked {
            Ok(c) => Ok(Some(c)),
            Err(msg) => {
                self.stats.refused_sockets += 1;
                Err(format!(
                    "port request refused ({} so far): {msg}",
                    self.stats.refused_sockets
                ))
            }
        }
    }

    pub(super) fn new_vde_port(&mut self, fd: u32, req: &Request) -> Result<(), String> {
        let mut addr = *req.addr();
        let mut user = None;
        // keeps the checked directory open until connected
        let mut _checked = None;
        if let Some(named) = req.addr().path() {
            if let Some(c) = self.check_client_socket(fd, named)? {
                addr = c.addr().ok_or("client socket path too long")?;
                _checked = Some(c);
            }
            let path = addr.path().unwrap_or(named);
            if !sys::access_rw(path) {
                return Err(format!(
                    "client socket {} not accessible, request refused",
                    path.display()
                ));
            }
            user = std::fs::metadata(path).ok().map(|m| m.uid());
        }
        let sock = sys::unix_socket(SockKind::Dgram, true).map_err(|e| format!("socket: {e}"))?;
        sys::connect_raw(sock.as_fd(), addr.as_bytes())
            .map_err(|e| format!("cannot connect to client socket {addr:?}: {e}"))?;
        sys::set_buffer_sizes(sock.as_fd(), self.opts.sock_buf, self.opts.sock_buf);
        let port = self
            .switch
            .connect(fd, Self::port_request(req), user, req.descr())
            .map_err(|e| format!("port request refused: {e}"))?;
        let dir = self.opts.vde_dir.clone().unwrap_or_default();
        let path = dir.join(format!("{:03}.{}", port, sock.as_raw_fd()));
        let undo = |s: &mut Server| {
            let _ = s.switch.disconnect(fd);
        };
        let Some(paddr) = SockAddrUn::from_path(&path) else {
            undo(self);
            return Err(format!("socket path too long: {}", path.display()));
        };
        let _ = std::fs::remove_file(&path);
        if let Err(e) = sys::bind_raw(sock.as_fd(), paddr.as_bytes()) {
            undo(self);
            return Err(format!("bind {}: {e}", path.display()));
        }
        let root = sys::euid() == 0;
        let mode = if user.is_some() && root {
            self.opts.mode & 0o700
        } else {
            self.opts.mode
        };
        let _ = set_perm(&path, mode, if root { user } else { None }, self.opts.group);
        if let Err(e) = self
            .epoll
            .add(sock.as_fd(), Token::Data(fd).encode(), Interest::READ)
        {
            undo(self);
            let _ = std::fs::remove_file(&path);
            return Err(format!("epoll: {e}"));
        }
        let module = if addr.is_abstract() {
            "daemon"
        } else {
            "unix prog"
        };
        self.set_ep(
            fd,
            EpIo {
                sink: Sink::Own {
                    sock,
                    path: path.clone(),
                },
                module,
            },
        );
        if let Some(c) = self.ctl.conns[fd as usize].as_mut() {
            c.port = Some(port);
        }
        if let Err(e) = self.write_reply(fd, paddr.as_bytes()) {
            return Err(format!("port {port}: {e}"));
        }
        Ok(())
    }

    pub(super) fn new_uml_port(&mut self, fd: u32, req: &Request) -> Result<(), String> {
        let addr = *req.addr();
        if let Some(path) = addr.path() {
            // frames go by sendto(path): checked at the request only
            self.check_client_socket(fd, path)?;
        }
        if self.dp.by_addr.contains_key(&addr) {
            return Err("a port with this data socket address exists already".into());
        }
        let port = self
            .switch
            .connect(fd, PortRequest::Any, None, req.descr())
            .map_err(|e| format!("port request refused: {e}"))?;
        let via = match req {
            Request::V0 { .. } if self.listen.shared.len() > 1 => 1,
            _ => 0,
        };
        self.dp.by_addr.insert(addr, fd);
        self.set_ep(
            fd,
            EpIo {
                sink: Sink::Shared { addr, via },
                module: "uml_switch",
            },
        );
        if let Some(c) = self.ctl.conns[fd as usize].as_mut() {
            c.port = Some(port);
        }
        if self.opts.flavor == Flavor::UmlSwitch {
            println!("New connection");
        }
        if !matches!(req, Request::V0 { .. }) {
            let reply = self.listen.shared_addr;
            if let Err(e) = self.write_reply(fd, reply.as_bytes()) {
                if self.opts.flavor == Flavor::UmlSwitch {
                    println!("Sending data socket name");
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

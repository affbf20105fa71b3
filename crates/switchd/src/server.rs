//! The event loop: epoll with a typed token per source, signalfd for clean
//! shutdown, batched `recvmmsg`/`sendmmsg` on the data path.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use net_proto::capture as cap;
use net_proto::ctl::{self, Dialect, Request, RequestKind, SockAddrUn};
use net_proto::eth;
use switch_core::emu::{LinkTable, Released, Side, Verdict};
use switch_core::{Action, Config, Egress, EndpointId, Outcome, PortRequest, Switch};
use umlkit_sys::net::{
    self as sys, Epoll, Event, Interest, RecvBatch, SignalFd, SockKind, TimerFd,
};

use crate::{mgmt, reach};
use crate::{Error, Flavor, Logger, Options};

/// Receive slot size: a tagged maximum frame fits; anything longer is
/// flagged truncated and dropped.
const SLOT: usize = 2048;
/// Frames per recvmmsg.
const BATCH: usize = 64;
/// Batches read from one socket before returning to epoll (fairness).
const BUDGET: usize = 8;
/// Pending connections (no request yet) kept at most (fewer if the open
/// file limit is low); when full, the oldest is closed to make room, so
/// idle connections never lock real clients out.
const MAX_PENDING: usize = 4096;
/// Frames queued for a destination whose socket buffer is full; the
/// sources feeding it are paused meanwhile (flow control).
const PEND_MAX_FRAMES: usize = 1024;
/// Bytes queued for all destinations together, at most.
const PEND_MAX_TOTAL: usize = 32 << 20;
/// A destination that stays full this long is in "drop mode": its queue is
/// dropped (counted) and sources resume; frames for it are dropped until
/// its socket drains.
const PEND_TIMEOUT: Duration = Duration::from_millis(200);
/// A control connection must send its request within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Typed epoll tokens: kind in the high 32 bits, an fd/endpoint number low.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Signal,
    VdeListener,
    UmlListener,
    MgmtListener,
    /// A control connection (fd = endpoint id).
    Ctl(u32),
    /// A VDE per-port data socket of endpoint N.
    Data(u32),
    /// The shared uml_switch data socket (0) or the v0 named one (1).
    Shared(u32),
    Mgmt(u32),
    /// The link emulation timer.
    Timer,
}

impl Token {
    fn encode(self) -> u64 {
        let (k, v) = match self {
            Token::Signal => (1u64, 0u32),
            Token::VdeListener => (2, 0),
            Token::UmlListener => (3, 0),
            Token::MgmtListener => (4, 0),
            Token::Ctl(n) => (5, n),
            Token::Data(n) => (6, n),
            Token::Shared(n) => (7, n),
            Token::Mgmt(n) => (8, n),
            Token::Timer => (9, 0),
        };
        (k << 32) | v as u64
    }

    fn decode(t: u64) -> Option<Token> {
        let v = t as u32;
        Some(match t >> 32 {
            1 => Token::Signal,
            2 => Token::VdeListener,
            3 => Token::UmlListener,
            4 => Token::MgmtListener,
            5 => Token::Ctl(v),
            6 => Token::Data(v),
            7 => Token::Shared(v),
            8 => Token::Mgmt(v),
            9 => Token::Timer,
            _ => return None,
        })
    }
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// `shutdown` from the management console.
    Shutdown,
    /// SIGINT/SIGTERM/SIGHUP.
    Signal(i32),
}

/// A control connection.
struct CtlConn {
    stream: UnixStream,
    dialect: Dialect,
    /// Endpoint created for it (its id is the fd number).
    port: Option<u32>,
    /// When it was accepted (pending connections time out).
    since: Duration,
    /// Accept sequence number (tells a reused fd number apart).
    serial: u64,
}

/// Where frames for an endpoint go.
enum Sink {
    /// VDE: own datagram socket connected to the client, bound to `path`.
    Own { sock: OwnedFd, path: PathBuf },
    /// uml_switch: the shared socket `via` (0 abstract, 1 v0 named), to `addr`.
    Shared { addr: SockAddrUn, via: u32 },
}

struct EpIo {
    sink: Sink,
    module: &'static str,
}

/// Frames waiting for a full destination socket (per endpoint).
#[derive(Default)]
struct PendQ {
    buf: Vec<u8>,
    frames: Vec<(u32, u32)>,
    head: usize,
    since: Duration,
    drop_mode: bool,
    want_write: bool,
}

impl PendQ {
    fn active(&self) -> bool {
        self.head < self.frames.len()
    }

    fn reset(&mut self) {
        if self.buf.capacity() > 1 << 16 {
            // give back the memory of a big backlog
            self.buf = Vec::new();
            self.frames = Vec::new();
        }
        self.buf.clear();
        self.frames.clear();
        self.head = 0;
    }
}

struct MgmtConn {
    stream: UnixStream,
    out: Vec<u8>,
    /// Set once the connection is a capture stream.
    capture: Option<Box<Capture>>,
}

/// Bytes queued for one capture client at most; frames that do not fit
/// are dropped (counted per port, reported in the stream).
pub(crate) const CAPTURE_QUEUE: usize = 4 << 20;

/// A capture client: what it wants and what it missed.
struct Capture {
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

/// One pending output frame: destination and where its bytes are.
#[derive(Clone, Copy)]
struct Out {
    to: EndpointId,
    /// Index of the frame in the receive batch.
    frame: u32,
    egress: Egress,
}

/// The running switch.
pub struct Server {
    opts: Options,
    pub(crate) log: Logger,
    epoll: Epoll,
    /// Created in [`Server::run`] (a signalfd does not survive daemonizing).
    signals: Option<SignalFd>,
    vde_listener: Option<UnixListener>,
    uml_listener: Option<UnixListener>,
    mgmt_listener: Option<UnixListener>,
    shared: Vec<OwnedFd>,
    shared_addr: SockAddrUn,
    pub(crate) switch: Switch,
    conns: Vec<Option<CtlConn>>,
    pending: usize,
    /// Pending connections in accept order: (fd, serial); entries of
    /// connections closed or established meanwhile are skipped.
    pending_order: VecDeque<(u32, u64)>,
    max_pending: usize,
    accepted: u64,
    eps: Vec<Option<EpIo>>,
    by_addr: HashMap<SockAddrUn, EndpointId>,
    mgmts: Vec<Option<MgmtConn>>,
    /// Files to remove at exit.
    cleanup: Vec<PathBuf>,
    pub(crate) start: Instant,
    pub(crate) mac: [u8; 6],
    // data path scratch, allocated once
    rb: RecvBatch,
    actions: Vec<Action>,
    outs: Vec<Out>,
    scratch: Vec<[u8; SLOT]>,
    scratch_len: Vec<usize>,
    src_eps: Vec<EndpointId>,
    exit: Option<ExitReason>,
    // flow control
    pend: Vec<PendQ>,
    pend_active: Vec<EndpointId>,
    /// (paused source, full destination)
    paused: Vec<(EndpointId, EndpointId)>,
    newly_full: Vec<EndpointId>,
    /// Bytes in all pending queues.
    pend_total: usize,
    /// Frames moved since the last wait (for busy polling).
    busy: bool,
    spin: Duration,
    pub(crate) stats: LoopStats,
    // link emulation
    pub(crate) links: LinkTable,
    released: Vec<(u32, Side, Released)>,
    timer: Option<TimerFd>,
    /// The deadline the timer is armed for.
    timer_armed: Option<Duration>,
    link_actions: Vec<Action>,
    link_scratch: Vec<u8>,
    // capture
    /// Console connections that are capture streams.
    captures: Vec<u32>,
    /// Some capture got data since the last flush.
    capture_dirty: bool,
    /// Wall-clock time at `start` (capture timestamps).
    epoch: Duration,
}

/// Event loop counters (shown by `port/stats`): how well batching works.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LoopStats {
    pub waits: u64,
    pub recv_calls: u64,
    pub frames_in: u64,
    pub send_calls: u64,
    pub frames_out: u64,
    /// Port requests refused because the client named a socket it could
    /// not reach itself.
    pub refused_sockets: u64,
    /// Frames released by an emulated link after their endpoint left.
    pub link_orphans: u64,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Bind {
        path: path.to_path_buf(),
        source,
    }
}

/// Bind a listening stream socket at `path`, replacing a stale socket file
/// (probe connect refused) and refusing a live one.
fn bind_listener(path: &Path) -> Result<UnixListener, Error> {
    let addr = SockAddrUn::from_path(path).ok_or_else(|| Error::PathTooLong(path.into()))?;
    let sock = sys::unix_socket(SockKind::Stream, true).map_err(Error::Socket)?;
    let _ = sys::set_reuseaddr(sock.as_fd());
    if let Err(e) = sys::bind_raw(sock.as_fd(), addr.as_bytes()) {
        if e.kind() != io::ErrorKind::AddrInUse {
            return Err(io_at(path)(e));
        }
        let probe = sys::unix_socket(SockKind::Stream, false).map_err(Error::Socket)?;
        match sys::connect_raw(probe.as_fd(), addr.as_bytes()) {
            Ok(()) => return Err(Error::InUse(path.into())),
            Err(ce) if ce.kind() == io::ErrorKind::ConnectionRefused => {
                // only ever replace a stale *socket*, never another file
                use std::os::unix::fs::FileTypeExt;
                let is_socket = std::fs::symlink_metadata(path)
                    .map(|m| m.file_type().is_socket())
                    .unwrap_or(false);
                if !is_socket {
                    return Err(io_at(path)(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a file that is not a socket is in the way",
                    )));
                }
                std::fs::remove_file(path).map_err(io_at(path))?;
                sys::bind_raw(sock.as_fd(), addr.as_bytes()).map_err(io_at(path))?;
            }
            Err(_) => return Err(io_at(path)(e)),
        }
    }
    sys::listen(sock.as_fd(), 128).map_err(io_at(path))?;
    Ok(UnixListener::from(sock))
}

fn set_perm(path: &Path, mode: u32, uid: Option<u32>, gid: Option<u32>) -> Result<(), Error> {
    let perr = |source| Error::Perm {
        path: path.to_path_buf(),
        source,
    };
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(path, uid, gid).map_err(perr)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(perr)?;
    Ok(())
}

/// Create the switch directory, or take an existing one only if it is a
/// real directory (not a symlink) owned by the user running the switch;
/// then set its mode and group through the opened handle, so the checked
/// directory is the one changed.
fn prepare_switch_dir(dir: &Path, mode: u32, group: Option<u32>) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(Error::Mkdir {
                path: dir.to_path_buf(),
                source,
            })
        }
    }
    let lmeta = std::fs::symlink_metadata(dir).map_err(|source| Error::Mkdir {
        path: dir.to_path_buf(),
        source,
    })?;
    if lmeta.file_type().is_symlink() {
        return Err(Error::SymlinkDir(dir.to_path_buf()));
    }
    if !lmeta.is_dir() {
        return Err(Error::NotADir(dir.to_path_buf()));
    }
    // swapped for a symlink or a file since the check above: same errors
    let f =
        umlkit_sys::file::open_dir_nofollow(dir).map_err(|e| {
            match std::fs::symlink_metadata(dir) {
                Ok(m) if m.file_type().is_symlink() => Error::SymlinkDir(dir.to_path_buf()),
                Ok(m) if !m.is_dir() => Error::NotADir(dir.to_path_buf()),
                _ => Error::Mkdir {
                    path: dir.to_path_buf(),
                    source: e,
                },
            }
        })?;
    let perr = |source| Error::Perm {
        path: dir.to_path_buf(),
        source,
    };
    let meta = f.metadata().map_err(perr)?;
    let me = sys::euid();
    if meta.uid() != me {
        return Err(Error::ForeignDir {
            path: dir.to_path_buf(),
            owner: sys::user_name(meta.uid()).unwrap_or_else(|| meta.uid().to_string()),
            uid: meta.uid(),
            me,
        });
    }
    if group.is_some() {
        std::os::unix::fs::fchown(&f, None, group).map_err(perr)?;
    }
    // sticky when others may write in it: they may then add files but not
    // rename or remove the switch's sockets (`ctl`) to put their own there
    let mode = if mode & 0o022 != 0 {
        mode | 0o1000
    } else {
        mode
    };
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(perr)?;
    Ok(())
}

impl Server {
    /// Create every socket and directory; nothing is served until [`Server::run`].
    pub fn bind(opts: Options, log: Logger) -> Result<Server, Error> {
        if opts.vde_dir.is_none() && opts.uml_ctl.is_none() {
            return Err(Error::NothingToServe);
        }
        let epoll = Epoll::new().map_err(Error::Poll)?;
        let mut cleanup = Vec::new();
        let mut vde_listener = None;
        if let Some(dir) = &opts.vde_dir {
            prepare_switch_dir(dir, opts.dirmode, opts.group)?;
            let ctl = dir.join("ctl");
            let l = bind_listener(&ctl)?;
            set_perm(&ctl, opts.mode, None, opts.group)?;
            cleanup.push(ctl);
            vde_listener = Some(l);
        }
        let mut shared = Vec::new();
        let pid = std::process::id();
        let shared_addr = SockAddrUn::uml_abstract(pid, sys::time_usecs());
        let mut uml_listener = None;
        if let Some(path) = &opts.uml_ctl {
            let l = bind_listener(path)?;
            if let Some(m) = opts.uml_mode {
                set_perm(path, m, None, opts.group)?;
            }
            cleanup.push(path.clone());
            uml_listener = Some(l);
            let d = sys::unix_socket(SockKind::Dgram, true).map_err(Error::Socket)?;
            sys::bind_raw(d.as_fd(), shared_addr.as_bytes()).map_err(io_at(path))?;
            sys::set_buffer_sizes(d.as_fd(), opts.sock_buf, opts.sock_buf);
            shared.push(d);
            if let Some(v0) = &opts.v0_data {
                let a = SockAddrUn::from_path(v0).ok_or_else(|| Error::PathTooLong(v0.clone()))?;
                let _ = std::fs::remove_file(v0);
                let d = sys::unix_socket(SockKind::Dgram, true).map_err(Error::Socket)?;
                sys::bind_raw(d.as_fd(), a.as_bytes()).map_err(io_at(v0))?;
                sys::set_buffer_sizes(d.as_fd(), opts.sock_buf, opts.sock_buf);
                cleanup.push(v0.clone());
                shared.push(d);
            }
        }
        let mut mgmt_listener = None;
        if let Some(path) = &opts.mgmt {
            let l = bind_listener(path)?;
            set_perm(path, opts.mgmt_mode, None, None)?;
            cleanup.push(path.clone());
            mgmt_listener = Some(l);
        }
        for (l, t) in [
            (&vde_listener, Token::VdeListener),
            (&uml_listener, Token::UmlListener),
            (&mgmt_listener, Token::MgmtListener),
        ] {
            if let Some(l) = l {
                epoll
                    .add(l.as_fd(), t.encode(), Interest::READ)
                    .map_err(Error::Poll)?;
            }
        }
        for (i, d) in shared.iter().enumerate() {
            epoll
                .add(d.as_fd(), Token::Shared(i as u32).encode(), Interest::READ)
                .map_err(Error::Poll)?;
        }
        let seed = (pid as u64) << 20 ^ sys::time_usecs() as u64;
        // without a timerfd, link deadlines fall back to epoll's milliseconds
        let timer = TimerFd::new().ok().filter(|t| {
            epoll
                .add(t.fd(), Token::Timer.encode(), Interest::READ)
                .is_ok()
        });
        let s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes();
        let mac = [0x00, 0xff, s[0], s[1], s[2], s[3]];
        Ok(Server {
            switch: Switch::new(Config {
                numports: opts.numports,
                hub: opts.hub,
            }),
            opts,
            log,
            epoll,
            signals: None,
            vde_listener,
            uml_listener,
            mgmt_listener,
            shared,
            shared_addr,
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
            eps: Vec::new(),
            by_addr: HashMap::new(),
            mgmts: Vec::new(),
            cleanup,
            start: Instant::now(),
            mac,
            rb: RecvBatch::new(BATCH, SLOT),
            actions: Vec::with_capacity(BATCH * 8),
            outs: Vec::with_capacity(BATCH * 8),
            scratch: vec![[0u8; SLOT]; 2 * BATCH],
            scratch_len: vec![0; 2 * BATCH],
            src_eps: Vec::with_capacity(BATCH),
            exit: None,
            pend: Vec::new(),
            pend_active: Vec::new(),
            paused: Vec::new(),
            newly_full: Vec::new(),
            pend_total: 0,
            busy: false,
            stats: LoopStats::default(),
            links: LinkTable::new(seed),
            released: Vec::new(),
            timer,
            timer_armed: None,
            link_actions: Vec::new(),
            link_scratch: vec![0; SLOT],
            captures: Vec::new(),
            capture_dirty: false,
            epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),

            spin: Duration::from_micros(
                std::env::var("UMLKIT_SWITCH_SPIN_US")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
        })
    }

    /// Run one management command as the console would; returns its
    /// reply (data block, status line, prompt).
    pub fn command(&mut self, line: &str) -> String {
        mgmt::execute(self, line).0
    }

    /// Run a vde_switch rc file (`-f`): one management command per line,
    /// `#` comments and blank lines skipped. Stops at the first command
    /// the switch refuses.
    pub fn run_rc_file(&mut self, path: &Path) -> Result<(), Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::RcRead {
            path: path.to_path_buf(),
            source,
        })?;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let reply = self.command(line);
            let status = crate::client::status_of(&reply);
            if status.0 != 0 {
                return Err(Error::RcCommand {
                    path: path.to_path_buf(),
                    line: i + 1,
                    command: line.to_string(),
                    status: status.1,
                });
            }
        }
        Ok(())
    }

    /// Give up before [`Server::run`]: remove the sockets made by
    /// [`Server::bind`] (and the switch directory if empty).
    pub fn close(mut self) {
        self.shutdown();
    }

    /// Set the impairments of a port (as `link/set`).
    pub fn set_link(
        &mut self,
        port: u32,
        dir: net_proto::link::LinkDir,
        spec: net_proto::link::LinkSpec,
    ) -> Result<(), Error> {
        if port >= self.switch.numports() {
            return Err(Error::NoSuchPort {
                port,
                numports: self.switch.numports(),
            });
        }
        self.links.set(port, dir, spec);
        Ok(())
    }

    pub(crate) fn opts(&self) -> &Options {
        &self.opts
    }

    /// Give the logger to syslog (after daemonizing).
    pub fn logger_mut(&mut self) -> &mut Logger {
        &mut self.log
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Serve until shutdown or a signal, then remove the sockets (and the
    /// switch directory if it is empty).
    pub fn run(mut self) -> Result<ExitReason, Error> {
        let signals = SignalFd::new(&[SIGINT, SIGTERM, SIGHUP]).map_err(Error::Poll)?;
        self.epoll
            .add(signals.fd(), Token::Signal.encode(), Interest::READ)
            .map_err(Error::Poll)?;
        self.signals = Some(signals);
        let mut events = Vec::with_capacity(256);
        let reason = loop {
            let now = self.now();
            let deadline = self.switch.next_deadline();
            if now >= deadline {
                self.switch.gc(now);
                self.expire_handshakes(now);
            }
            self.expire_pending(now);
            self.release_links();
            let mut wait = self.switch.next_deadline().saturating_sub(self.now());
            for &d in &self.pend_active {
                let dl = self.pend[d as usize].since + PEND_TIMEOUT;
                wait = wait.min(dl.saturating_sub(now));
            }
            if let Some(dl) = self.links.next_deadline() {
                let left = dl.saturating_sub(self.now());
                match &self.timer {
                    Some(t) => {
                        if self.timer_armed != Some(dl) {
                            let _ = t.arm(Some(left));
                            self.timer_armed = Some(dl);
                        }
                    }
                    None => wait = wait.min(left),
                }
            }
            let timeout = (wait.as_millis() as i32).clamp(1, 2000);
            // Busy-poll briefly after traffic before sleeping: saves the
            // sleep/wake-up cost per small batch under load.
            events.clear();
            if self.busy && !self.spin.is_zero() {
                let t0 = Instant::now();
                while events.is_empty() && t0.elapsed() < self.spin {
                    self.epoll.wait(&mut events, 0).map_err(Error::Poll)?;
                }
            }
            if events.is_empty() {
                self.epoll.wait(&mut events, timeout).map_err(Error::Poll)?;
            }
            self.stats.waits += 1;
            self.busy = false;
            for ev in &events {
                self.dispatch(*ev);
            }
            if self.capture_dirty {
                self.flush_captures();
            }
            if let Some(r) = self.exit {
                break r;
            }
        };
        self.shutdown();
        Ok(reason)
    }

    fn dispatch(&mut self, ev: Event) {
        let Some(tok) = Token::decode(ev.token) else {
            return;
        };
        match tok {
            Token::Signal => {
                if let Some(sig) = self.signals.as_ref().and_then(SignalFd::read) {
                    self.exit = Some(ExitReason::Signal(sig));
                }
            }
            Token::VdeListener => self.accept_ctl(Dialect::Vde),
            Token::UmlListener => self.accept_ctl(Dialect::UmlSwitch),
            Token::MgmtListener => self.accept_mgmt(),
            Token::Ctl(fd) => self.on_ctl(fd),
            Token::Data(ep) => {
                if ev.writable {
                    self.flush_pending(ep);
                }
                if (ev.readable || ev.hangup) && !self.is_paused(ep) {
                    self.on_data(ep);
                }
            }
            Token::Shared(i) => self.on_shared(i),
            Token::Mgmt(fd) => self.on_mgmt(fd, ev),
            Token::Timer => {
                if let Some(t) = &self.timer {
                    t.clear();
                }
                self.timer_armed = None;
                self.release_links();
            }
        }
    }

    fn accept_ctl(&mut self, dialect: Dialect) {
        loop {
            let l = match dialect {
                Dialect::Vde => self.vde_listener.as_ref(),
                Dialect::UmlSwitch => self.uml_listener.as_ref(),
            };
            let Some(l) = l else { return };
            match l.accept() {
                Ok((stream, _)) => {
                    if self.pending >= self.max_pending {
                        self.log.peer(
                            "too many control connections without a request: closed the oldest",
                        );
                        self.close_oldest_pending();
                    }
                    let _ = stream.set_nonblocking(true);
                    let fd = stream.as_raw_fd() as u32;
                    if self
                        .epoll
                        .add(stream.as_fd(), Token::Ctl(fd).encode(), Interest::READ)
                        .is_err()
                    {
                        continue;
                    }
                    let idx = fd as usize;
                    if self.conns.len() <= idx {
                        self.conns.resize_with(idx + 1, || None);
                    }
                    self.conns[idx] = Some(CtlConn {
                        stream,
                        dialect,
                        port: None,
                        since: self.start.elapsed(),
                        serial: self.accepted,
                    });
                    self.pending_order.push_back((fd, self.accepted));
                    self.accepted += 1;
                    self.pending += 1;
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
    fn oldest_pending(&mut self) -> Option<(u32, Duration)> {
        while let Some(&(fd, serial)) = self.pending_order.front() {
            match self.conns.get(fd as usize).and_then(Option::as_ref) {
                Some(c) if c.serial == serial && c.port.is_none() => return Some((fd, c.since)),
                _ => {
                    self.pending_order.pop_front();
                }
            }
        }
        None
    }

    /// Close the oldest connection that sent no request yet; false if there
    /// is none.
    fn close_oldest_pending(&mut self) -> bool {
        match self.oldest_pending() {
            Some((fd, _)) => {
                self.pending_order.pop_front();
                self.close_ctl(fd);
                true
            }
            None => false,
        }
    }

    /// Close control connections that sent no request in time.
    fn expire_handshakes(&mut self, now: Duration) {
        let mut stale = Vec::new();
        while let Some((fd, since)) = self.oldest_pending() {
            if now.saturating_sub(since) <= HANDSHAKE_TIMEOUT {
                break;
            }
            self.pending_order.pop_front();
            stale.push(fd);
        }
        if stale.is_empty() {
            return;
        }
        // logged before closing: a client seeing EOF finds the line there
        self.log.peer(&format!(
            "{} control connection(s) sent no request in time, closed",
            stale.len()
        ));
        for fd in stale {
            self.close_ctl(fd);
        }
    }

    fn close_ctl(&mut self, fd: u32) {
        let Some(conn) = self.conns.get_mut(fd as usize).and_then(Option::take) else {
            return;
        };
        let _ = self.epoll.delete(conn.stream.as_fd());
        match conn.port {
            None => self.pending = self.pending.saturating_sub(1),
            Some(_) => self.remove_endpoint(fd),
        }
        drop(conn);
    }

    fn remove_endpoint(&mut self, ep: EndpointId) {
        if let Some(q) = self.pend.get_mut(ep as usize) {
            let dropped: Vec<u32> = q.frames[q.head..].iter().map(|f| f.1).collect();
            *q = PendQ::default();
            for len in dropped {
                self.pend_total -= len as usize;
                self.switch.record_tx(ep, len as usize, false);
            }
        }
        self.pend_active.retain(|&d| d != ep);
        self.paused.retain(|p| p.0 != ep);
        self.resume_paused_by(ep);
        let port = self.switch.disconnect(ep).ok();
        if let Some(io) = self.eps.get_mut(ep as usize).and_then(Option::take) {
            match io.sink {
                Sink::Own { sock, path } => {
                    let _ = self.epoll.delete(sock.as_fd());
                    let _ = std::fs::remove_file(&path);
                }
                Sink::Shared { addr, .. } => {
                    self.by_addr.remove(&addr);
                }
            }
        }
        if self.opts.flavor == Flavor::UmlSwitch {
            println!("Disconnect");
        } else if let Some(p) = port {
            self.log.peer(&format!("port {p}: endpoint {ep} closed"));
        }
    }

    fn on_ctl(&mut self, fd: u32) {
        let mut buf = [0u8; ctl::MAX_REQUEST];
        let (res, established, dialect) = {
            let Some(conn) = self.conns.get_mut(fd as usize).and_then(Option::as_mut) else {
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
                self.pending = self.pending.saturating_sub(1);
                match req {
                    Ok(req) => {
                        let r = match dialect {
                            Dialect::Vde => self.new_vde_port(fd, &req),
                            Dialect::UmlSwitch => self.new_uml_port(fd, &req),
                        };
                        if let Err(msg) = r {
                            self.log.peer(&msg);
                            self.pending += 1; // close_ctl decrements
                            self.close_ctl(fd);
                        }
                    }
                    Err(e) => {
                        self.log.peer(&format!("control request refused: {e}"));
                        self.pending += 1;
                        self.close_ctl(fd);
                    }
                }
            }
        }
    }

    fn port_request(req: &Request) -> PortRequest {
        match req {
            Request::V3 {
                kind: RequestKind::NewPort0,
                ..
            } => PortRequest::Port0,
            Request::V3 { port, .. } if *port > 0 => PortRequest::Number(*port),
            _ => PortRequest::Any,
        }
    }

    fn write_reply(&mut self, fd: u32, bytes: &[u8]) -> Result<(), String> {
        let conn = self.conns[fd as usize].as_mut().ok_or("gone")?;
        match conn.stream.write(bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) => Err("short write of the reply".into()),
            Err(e) => Err(format!("writing the reply: {e}")),
        }
    }

    fn set_ep(&mut self, ep: EndpointId, io: EpIo) {
        let idx = ep as usize;
        if self.eps.len() <= idx {
            self.eps.resize_with(idx + 1, || None);
        }
        self.eps[idx] = Some(io);
        if self.pend.len() <= idx {
            self.pend.resize_with(idx + 1, PendQ::default);
        }
        self.pend[idx] = PendQ::default();
    }

    /// A client naming a socket path: unless it is root or the switch's own
    /// user, check that it could connect there itself (see [`reach`]).
    /// Returns the checked place to connect to (None: use the path as is).
    fn check_client_socket(
        &mut self,
        fd: u32,
        path: &Path,
    ) -> Result<Option<reach::Checked>, String> {
        let conn = self.conns[fd as usize].as_ref().ok_or("gone")?;
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

    fn new_vde_port(&mut self, fd: u32, req: &Request) -> Result<(), String> {
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
        if let Some(c) = self.conns[fd as usize].as_mut() {
            c.port = Some(port);
        }
        if let Err(e) = self.write_reply(fd, paddr.as_bytes()) {
            return Err(format!("port {port}: {e}"));
        }
        Ok(())
    }

    fn new_uml_port(&mut self, fd: u32, req: &Request) -> Result<(), String> {
        let addr = *req.addr();
        if let Some(path) = addr.path() {
            // frames go by sendto(path): checked at the request only
            self.check_client_socket(fd, path)?;
        }
        if self.by_addr.contains_key(&addr) {
            return Err("a port with this data socket address exists already".into());
        }
        let port = self
            .switch
            .connect(fd, PortRequest::Any, None, req.descr())
            .map_err(|e| format!("port request refused: {e}"))?;
        let via = match req {
            Request::V0 { .. } if self.shared.len() > 1 => 1,
            _ => 0,
        };
        self.by_addr.insert(addr, fd);
        self.set_ep(
            fd,
            EpIo {
                sink: Sink::Shared { addr, via },
                module: "uml_switch",
            },
        );
        if let Some(c) = self.conns[fd as usize].as_mut() {
            c.port = Some(port);
        }
        if self.opts.flavor == Flavor::UmlSwitch {
            println!("New connection");
        }
        if !matches!(req, Request::V0 { .. }) {
            let reply = self.shared_addr;
            if let Err(e) = self.write_reply(fd, reply.as_bytes()) {
                if self.opts.flavor == Flavor::UmlSwitch {
                    println!("Sending data socket name");
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn on_data(&mut self, ep: EndpointId) {
        for _ in 0..BUDGET {
            let fd = match self.eps.get(ep as usize).and_then(Option::as_ref) {
                Some(EpIo {
                    sink: Sink::Own { sock, .. },
                    ..
                }) => sock.as_fd(),
                _ => return,
            };
            let n = match self.rb.recv(fd, false) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // ECONNREFUSED etc.: the client is gone; the control
                    // connection's EOF removes the endpoint.
                    return;
                }
            };
            self.src_eps.clear();
            self.src_eps.resize(n, ep);
            self.forward_batch(n);
            if n < BATCH || self.is_paused(ep) {
                return;
            }
        }
    }

    fn on_shared(&mut self, via: u32) {
        for _ in 0..BUDGET {
            let Some(fd) = self.shared.get(via as usize) else {
                return;
            };
            let n = match self.rb.recv(fd.as_fd(), true) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            self.src_eps.clear();
            for i in 0..n {
                let a = SockAddrUn::from_raw(self.rb.addr(i));
                let ep = match self.by_addr.get(&a) {
                    Some(&ep) => ep,
                    None => {
                        self.log.peer("Unknown connection for packet, dropped");
                        u32::MAX
                    }
                };
                self.src_eps.push(ep);
            }
            self.forward_batch(n);
            if n < BATCH {
                return;
            }
        }
    }

    /// Run the frames of the receive batch through the switch and send the
    /// results, one `sendmmsg` per destination socket.
    fn forward_batch(&mut self, n: usize) {
        // spin before sleeping only after small batches (latency-bound
        // traffic); big batches mean load, where spinning steals CPU
        self.busy = n < 4;
        self.stats.recv_calls += 1;
        self.stats.frames_in += n as u64;
        let now = self.now();
        self.outs.clear();
        for i in 0..n {
            let from = self.src_eps[i];
            if from == u32::MAX {
                continue;
            }
            if self.rb.truncated(i) {
                self.switch.record_rx_drop(from);
                continue;
            }
            if !self.links.is_empty() {
                let port = self.switch.endpoint(from).map(|e| e.port);
                if let Some(l) = port.and_then(|p| self.links.link_mut(p, Side::In)) {
                    if l.offer_tagged(now, from, self.rb.frame(i)) != Verdict::Pass {
                        continue; // held (comes back through release_links) or dropped
                    }
                }
            }
            if !self.captures.is_empty() {
                if let Some(port) = self.switch.endpoint(from).map(|e| e.port) {
                    let f = self.rb.frame(i);
                    tap(
                        &mut self.mgmts,
                        &self.captures,
                        &self.switch,
                        self.epoch + now,
                        port,
                        cap::CapDir::In,
                        f,
                    );
                    self.capture_dirty = true;
                }
            }
            self.actions.clear();
            let outcome = self
                .switch
                .handle_frame(now, from, self.rb.frame(i), &mut self.actions);
            if let Outcome::Forwarded { moved: Some(m), .. } = outcome {
                self.log.peer(&format!(
                    "MAC {} moved from port {} to port {}",
                    m.mac, m.from, m.to
                ));
            }
            for a in &self.actions {
                self.outs.push(Out {
                    to: a.to,
                    frame: i as u32,
                    egress: a.egress,
                });
            }
        }
        if self.outs.is_empty() {
            return;
        }
        // group by destination, keeping frame order within a destination
        self.outs
            .sort_unstable_by_key(|o| ((o.to as u64) << 32) | o.frame as u64);
        // prepare rewritten frames: at most one tagged and one untagged
        // copy per received frame (all tagged egress of a frame carries the
        // same VLAN), so the scratch space is fixed: 2 slots per frame
        for l in &mut self.scratch_len[..2 * n] {
            *l = 0;
        }
        for o in &self.outs {
            let i = o.frame as usize;
            let f = self.rb.frame(i);
            match o.egress {
                Egress::Tag(v)
                    if self.scratch_len[2 * i] == 0 && f.len() + eth::TAG_LEN <= SLOT =>
                {
                    self.scratch_len[2 * i] = eth::insert_tag(f, v, &mut self.scratch[2 * i]);
                }
                Egress::Untag
                    if self.scratch_len[2 * i + 1] == 0
                        && f.len() >= eth::HEADER_LEN + eth::TAG_LEN =>
                {
                    self.scratch_len[2 * i + 1] = eth::strip_tag(f, &mut self.scratch[2 * i + 1]);
                }
                _ => {}
            }
        }
        if !self.links.is_empty() {
            self.shape_outs(now);
        }
        if !self.captures.is_empty() {
            self.tap_outs(now);
        }
        let mut start = 0;
        let mut shared_pending = false;
        while start < self.outs.len() {
            let to = self.outs[start].to;
            let mut end = start + 1;
            while end < self.outs.len() && self.outs[end].to == to {
                end += 1;
            }
            match self
                .eps
                .get(to as usize)
                .and_then(Option::as_ref)
                .map(|e| &e.sink)
            {
                Some(Sink::Own { sock, .. }) => {
                    let fd = sock.as_fd();
                    let mut pos = start;
                    if !self.pend[to as usize].active() {
                        while pos < end {
                            let cnt = (end - pos).min(sys::MAX_BATCH);
                            let rb = &self.rb;
                            let outs = &self.outs;
                            let scratch = &self.scratch;
                            let slen = &self.scratch_len;
                            let sent = sys::send_batch(fd, cnt, |j| {
                                (frame_bytes(rb, outs, scratch, slen, pos + j), None)
                            })
                            .unwrap_or(0);
                            self.stats.send_calls += 1;
                            self.stats.frames_out += sent as u64;
                            for k in pos..pos + sent {
                                let len = frame_bytes(rb, outs, scratch, slen, k).len();
                                self.switch.record_tx(to, len, true);
                            }
                            pos += sent;
                            if sent < cnt {
                                break;
                            }
                        }
                    }
                    if pos < end {
                        self.hold_back(to, pos, end, now);
                    }
                }
                Some(Sink::Shared { .. }) => shared_pending = true,
                None => {}
            }
            start = end;
        }
        if shared_pending {
            self.send_shared();
        }
        if !self.newly_full.is_empty() {
            self.pause_sources();
        }
    }

    /// Offer each output to the outbound link of its destination port;
    /// keep only those to send now (held frames come back through
    /// [`Server::release_links`]).
    fn shape_outs(&mut self, now: Duration) {
        let mut w = 0;
        for k in 0..self.outs.len() {
            let to = self.outs[k].to;
            let port = self.switch.endpoint(to).map(|e| e.port);
            let keep = match port.and_then(|p| self.links.link_mut(p, Side::Out)) {
                None => true,
                Some(l) => {
                    let f = frame_bytes(&self.rb, &self.outs, &self.scratch, &self.scratch_len, k);
                    l.offer_tagged(now, to, f) == Verdict::Pass
                }
            };
            if keep {
                self.outs[w] = self.outs[k];
                w += 1;
            }
        }
        self.outs.truncate(w);
    }

    /// Captures of one port also see the frames sent to it.
    fn tap_outs(&mut self, now: Duration) {
        let wanted = |c: &Option<MgmtConn>| {
            c.as_ref()
                .and_then(|c| c.capture.as_ref())
                .is_some_and(|c| c.port.is_some())
        };
        if !self
            .captures
            .iter()
            .any(|&fd| self.mgmts.get(fd as usize).is_some_and(wanted))
        {
            return;
        }
        for k in 0..self.outs.len() {
            let Some(port) = self.switch.endpoint(self.outs[k].to).map(|e| e.port) else {
                continue;
            };
            let f = frame_bytes(&self.rb, &self.outs, &self.scratch, &self.scratch_len, k);
            tap(
                &mut self.mgmts,
                &self.captures,
                &self.switch,
                self.epoch + now,
                port,
                cap::CapDir::Out,
                f,
            );
        }
        self.capture_dirty = true;
    }

    /// Write what the capture clients have queued (never blocking).
    fn flush_captures(&mut self) {
        self.capture_dirty = false;
        // a flush may close a connection (reader gone): work on a copy
        let mut fds = std::mem::take(&mut self.captures);
        for &fd in &fds {
            self.mgmt_flush(fd);
        }
        let mgmts = &self.mgmts;
        fds.retain(|&fd| {
            mgmts
                .get(fd as usize)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.capture.is_some())
        });
        self.captures = fds;
    }

    /// Turn console connection `fd` into a capture stream.
    fn start_capture(&mut self, fd: u32, port: Option<u32>, vlan: Option<u16>) {
        if port.is_some_and(|p| p >= self.switch.numports()) {
            self.mgmt_write(
                fd,
                net_proto::mgmt::reply(None, net_proto::mgmt::EINVAL).as_bytes(),
            );
            return;
        }
        self.mgmt_write(fd, net_proto::mgmt::reply(None, 0).as_bytes());
        let Some(c) = self.mgmts.get_mut(fd as usize).and_then(Option::as_mut) else {
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
        self.captures.push(fd);
        self.log.peer(&format!(
            "capture started on console connection {fd} (port {}, vlan {})",
            port.map_or("any".into(), |p| p.to_string()),
            vlan.map_or("any".into(), |v| v.to_string())
        ));
    }

    /// Send the frames the emulated links release now: inbound ones enter
    /// the switch (from the endpoint that sent them), outbound ones go to
    /// their endpoint. Frames released meanwhile by a second link (in,
    /// then out) go too.
    fn release_links(&mut self) {
        for _ in 0..4 {
            let now = self.now();
            if self.links.next_deadline().is_none_or(|d| d > now) {
                return;
            }
            let mut rel = std::mem::take(&mut self.released);
            self.links.poll(now, &mut rel);
            for (port, side, r) in rel.drain(..) {
                if self.switch.endpoint(r.tag).map(|e| e.port) != Some(port) {
                    self.stats.link_orphans += 1;
                    continue;
                }
                match side {
                    Side::In => self.forward_released(now, r.tag, &r.frame),
                    Side::Out => {
                        if !self.captures.is_empty() {
                            tap(
                                &mut self.mgmts,
                                &self.captures,
                                &self.switch,
                                self.epoch + now,
                                port,
                                cap::CapDir::Out,
                                &r.frame,
                            );
                            self.capture_dirty = true;
                        }
                        self.send_owned(r.tag, &r.frame)
                    }
                }
            }
            self.released = rel;
        }
    }

    /// A frame released by the inbound link of `from`'s port: switch it,
    /// through the outbound links of its destinations.
    fn forward_released(&mut self, now: Duration, from: EndpointId, frame: &[u8]) {
        let mut actions = std::mem::take(&mut self.link_actions);
        let mut buf = std::mem::take(&mut self.link_scratch);
        actions.clear();
        if !self.captures.is_empty() {
            if let Some(port) = self.switch.endpoint(from).map(|e| e.port) {
                tap(
                    &mut self.mgmts,
                    &self.captures,
                    &self.switch,
                    self.epoch + now,
                    port,
                    cap::CapDir::In,
                    frame,
                );
                self.capture_dirty = true;
            }
        }
        self.switch.handle_frame(now, from, frame, &mut actions);
        for a in &actions {
            let bytes: &[u8] = match a.egress {
                Egress::AsIs => frame,
                Egress::Tag(v) if frame.len() + eth::TAG_LEN <= buf.len() => {
                    let n = eth::insert_tag(frame, v, &mut buf);
                    &buf[..n]
                }
                Egress::Untag if frame.len() >= eth::HEADER_LEN + eth::TAG_LEN => {
                    let n = eth::strip_tag(frame, &mut buf);
                    &buf[..n]
                }
                _ => frame,
            };
            let port = self.switch.endpoint(a.to).map(|e| e.port);
            if let Some(l) = port.and_then(|p| self.links.link_mut(p, Side::Out)) {
                if l.offer_tagged(now, a.to, bytes) != Verdict::Pass {
                    continue;
                }
            }
            if !self.captures.is_empty() {
                if let Some(p) = port {
                    tap(
                        &mut self.mgmts,
                        &self.captures,
                        &self.switch,
                        self.epoch + now,
                        p,
                        cap::CapDir::Out,
                        bytes,
                    );
                }
            }
            self.send_owned(a.to, bytes);
        }
        self.link_actions = actions;
        self.link_scratch = buf;
    }

    /// Send one frame outside the receive batch (released by a link). A
    /// full destination socket queues it (bounded, never pausing anyone).
    fn send_owned(&mut self, to: EndpointId, f: &[u8]) {
        let sent = match self
            .eps
            .get(to as usize)
            .and_then(Option::as_ref)
            .map(|e| &e.sink)
        {
            Some(Sink::Own { sock, .. }) => {
                if self.pend[to as usize].active() {
                    self.queue_owned(to, f);
                    return;
                }
                sys::send_batch(sock.as_fd(), 1, |_| (f, None)).unwrap_or(0)
            }
            Some(Sink::Shared { addr, via }) => match self.shared.get(*via as usize) {
                Some(fd) => sys::send_batch(fd.as_fd(), 1, |_| (f, Some(&addr.0[..]))).unwrap_or(0),
                None => 0,
            },
            None => return,
        };
        self.stats.send_calls += 1;
        if sent == 1 {
            self.stats.frames_out += 1;
            self.switch.record_tx(to, f.len(), true);
        } else if matches!(
            self.eps
                .get(to as usize)
                .and_then(Option::as_ref)
                .map(|e| &e.sink),
            Some(Sink::Own { .. })
        ) {
            self.queue_owned(to, f);
        } else {
            self.switch.record_tx(to, f.len(), false);
        }
    }

    fn queue_owned(&mut self, to: EndpointId, f: &[u8]) {
        let now = self.now();
        let q = &mut self.pend[to as usize];
        if q.drop_mode
            || q.frames.len() - q.head >= PEND_MAX_FRAMES
            || self.pend_total + f.len() > PEND_MAX_TOTAL
        {
            self.switch.record_tx(to, f.len(), false);
            return;
        }
        let was_active = q.active();
        self.pend_total += f.len();
        let off = q.buf.len() as u32;
        q.buf.extend_from_slice(f);
        q.frames.push((off, f.len() as u32));
        if !was_active {
            q.since = now;
            self.pend_active.push(to);
        }
        if !q.want_write {
            q.want_write = true;
            self.update_interest(to);
        }
    }

    /// Frames outs[pos..end] for `to` could not be sent now: queue them (the
    /// sources get paused) unless the destination is in drop mode or its
    /// queue is full; dropped frames are counted.
    fn hold_back(&mut self, to: EndpointId, pos: usize, end: usize, now: Duration) {
        let q = &mut self.pend[to as usize];
        let was_active = q.active();
        for k in pos..end {
            let f = frame_bytes(&self.rb, &self.outs, &self.scratch, &self.scratch_len, k);
            if q.drop_mode
                || q.frames.len() - q.head >= PEND_MAX_FRAMES
                || self.pend_total + f.len() > PEND_MAX_TOTAL
            {
                self.switch.record_tx(to, f.len(), false);
                continue;
            }
            self.pend_total += f.len();
            let off = q.buf.len() as u32;
            q.buf.extend_from_slice(f);
            q.frames.push((off, f.len() as u32));
        }
        if !q.want_write {
            q.want_write = true;
            self.update_interest(to);
        }
        let q = &mut self.pend[to as usize];
        if q.active() {
            if !was_active {
                q.since = now;
                self.pend_active.push(to);
            }
            self.newly_full.push(to);
        }
    }

    /// Pause the data-socket sources of the current batch: each waits for
    /// the destinations that filled up.
    fn pause_sources(&mut self) {
        let mut i = 0;
        while i < self.src_eps.len() {
            let src = self.src_eps[i];
            i += 1;
            if i > 1 && self.src_eps[i - 2] == src {
                continue;
            }
            let own = matches!(
                self.eps.get(src as usize).and_then(Option::as_ref),
                Some(EpIo {
                    sink: Sink::Own { .. },
                    ..
                })
            );
            if !own {
                continue; // shared-socket sources cannot be paused one by one
            }
            let was = self.is_paused(src);
            for k in 0..self.newly_full.len() {
                let d = self.newly_full[k];
                if !self.paused.contains(&(src, d)) {
                    self.paused.push((src, d));
                }
            }
            if !was {
                self.update_interest(src);
            }
        }
        self.newly_full.clear();
    }

    fn is_paused(&self, ep: EndpointId) -> bool {
        !self.paused.is_empty() && self.paused.iter().any(|p| p.0 == ep)
    }

    fn resume_paused_by(&mut self, dest: EndpointId) {
        let mut srcs: Vec<EndpointId> = Vec::new();
        self.paused.retain(|&(s, d)| {
            if d == dest {
                srcs.push(s);
                false
            } else {
                true
            }
        });
        for s in srcs {
            if !self.is_paused(s) {
                self.update_interest(s);
            }
        }
    }

    /// Epoll interest of a data socket: read unless paused, write while
    /// frames wait for it.
    fn update_interest(&mut self, ep: EndpointId) {
        let Some(Some(EpIo {
            sink: Sink::Own { sock, .. },
            ..
        })) = self.eps.get(ep as usize)
        else {
            return;
        };
        let write = self.pend.get(ep as usize).is_some_and(|q| q.want_write);
        let read = !self.is_paused(ep);
        let _ = self.epoll.modify(
            sock.as_fd(),
            Token::Data(ep).encode(),
            Interest { read, write },
        );
    }

    /// The destination's socket has room again: send what waits for it.
    fn flush_pending(&mut self, d: EndpointId) {
        let fd = match self.eps.get(d as usize).and_then(Option::as_ref) {
            Some(EpIo {
                sink: Sink::Own { sock, .. },
                ..
            }) => sock.as_fd(),
            _ => return,
        };
        let Some(q) = self.pend.get_mut(d as usize) else {
            return;
        };
        while q.active() {
            let cnt = (q.frames.len() - q.head).min(sys::MAX_BATCH);
            let (buf, frames, head) = (&q.buf, &q.frames, q.head);
            let sent = sys::send_batch(fd, cnt, |j| {
                let (off, len) = frames[head + j];
                (&buf[off as usize..(off + len) as usize], None)
            })
            .unwrap_or(0);
            for j in 0..sent {
                let len = q.frames[q.head + j].1 as usize;
                self.pend_total -= len;
                self.switch.record_tx(d, len, true);
            }
            q.head += sent;
            if sent < cnt {
                return; // still full: wait for the next EPOLLOUT
            }
        }
        q.reset();
        q.drop_mode = false;
        q.want_write = false;
        self.pend_active.retain(|&x| x != d);
        self.update_interest(d);
        self.resume_paused_by(d);
    }

    /// Destinations full for longer than PEND_TIMEOUT: drop their queue,
    /// enter drop mode, let the sources go on.
    fn expire_pending(&mut self, now: Duration) {
        let mut i = 0;
        while i < self.pend_active.len() {
            let d = self.pend_active[i];
            let q = &mut self.pend[d as usize];
            if now.saturating_sub(q.since) < PEND_TIMEOUT {
                i += 1;
                continue;
            }
            let dropped: Vec<u32> = q.frames[q.head..].iter().map(|f| f.1).collect();
            q.reset();
            q.drop_mode = true;
            for len in dropped {
                self.pend_total -= len as usize;
                self.switch.record_tx(d, len as usize, false);
            }
            self.pend_active.swap_remove(i);
            self.resume_paused_by(d);
            self.log.peer(&format!(
                "endpoint {d}: socket full for {} ms, dropping its frames until it drains",
                PEND_TIMEOUT.as_millis()
            ));
        }
    }

    /// Send every output for uml_switch endpoints through the shared socket(s).
    fn send_shared(&mut self) {
        for via in 0..self.shared.len() as u32 {
            // indices of outs going through this shared socket
            let mut idx: [u32; sys::MAX_BATCH] = [0; sys::MAX_BATCH];
            let mut k = 0;
            let mut cnt = 0;
            while k <= self.outs.len() {
                let flush = k == self.outs.len() || cnt == sys::MAX_BATCH;
                if flush && cnt > 0 {
                    let fd = self.shared[via as usize].as_fd();
                    let rb = &self.rb;
                    let outs = &self.outs;
                    let scratch = &self.scratch;
                    let slen = &self.scratch_len;
                    let eps = &self.eps;
                    let ids = &idx[..cnt];
                    let mut done = 0;
                    while done < cnt {
                        let res = sys::send_batch(fd, cnt - done, |j| {
                            let o = ids[done + j] as usize;
                            let addr = match eps[outs[o].to as usize].as_ref().map(|e| &e.sink) {
                                Some(Sink::Shared { addr, .. }) => Some(&addr.0[..]),
                                _ => None,
                            };
                            (frame_bytes(rb, outs, scratch, slen, o), addr)
                        });
                        match res {
                            Ok(s) if s > 0 => {
                                for &o in &ids[done..done + s] {
                                    let o = o as usize;
                                    let len = frame_bytes(rb, outs, scratch, slen, o).len();
                                    self.switch.record_tx(outs[o].to, len, true);
                                }
                                done += s;
                            }
                            _ => {
                                // this destination is full or gone: drop one, go on
                                let o = ids[done] as usize;
                                let len = frame_bytes(rb, outs, scratch, slen, o).len();
                                self.switch.record_tx(outs[o].to, len, false);
                                done += 1;
                            }
                        }
                    }
                    cnt = 0;
                }
                if k == self.outs.len() {
                    break;
                }
                let o = &self.outs[k];
                if let Some(Some(EpIo {
                    sink: Sink::Shared { via: v, .. },
                    ..
                })) = self.eps.get(o.to as usize)
                {
                    if *v == via {
                        idx[cnt] = k as u32;
                        cnt += 1;
                    }
                }
                k += 1;
            }
        }
    }

    fn accept_mgmt(&mut self) {
        loop {
            let Some(l) = self.mgmt_listener.as_ref() else {
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
                    if self.mgmts.len() <= idx {
                        self.mgmts.resize_with(idx + 1, || None);
                    }
                    self.mgmts[idx] = Some(MgmtConn {
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

    fn close_mgmt(&mut self, fd: u32) {
        if let Some(c) = self.mgmts.get_mut(fd as usize).and_then(Option::take) {
            let _ = self.epoll.delete(c.stream.as_fd());
            if c.capture.is_some() {
                self.captures.retain(|&x| x != fd);
                self.log
                    .peer(&format!("capture on console connection {fd} ended"));
            }
        }
    }

    /// Queue `bytes` for a console client and write what the socket takes.
    fn mgmt_write(&mut self, fd: u32, bytes: &[u8]) {
        let Some(c) = self.mgmts.get_mut(fd as usize).and_then(Option::as_mut) else {
            return;
        };
        c.out.extend_from_slice(bytes);
        self.mgmt_flush(fd);
    }

    fn mgmt_flush(&mut self, fd: u32) {
        let Some(c) = self.mgmts.get_mut(fd as usize).and_then(Option::as_mut) else {
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

    fn on_mgmt(&mut self, fd: u32, ev: Event) {
        if ev.writable {
            self.mgmt_flush(fd);
        }
        if !ev.readable && !ev.hangup {
            return;
        }
        let mut buf = [0u8; net_proto::mgmt::MAX_LINE];
        let res = {
            let Some(c) = self.mgmts.get_mut(fd as usize).and_then(Option::as_mut) else {
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

    /// Endpoint details for `port/print`: (id, module, description).
    pub(crate) fn endpoint_module(&self, ep: EndpointId) -> &'static str {
        self.eps
            .get(ep as usize)
            .and_then(Option::as_ref)
            .map(|e| e.module)
            .unwrap_or("unix prog")
    }

    /// Close one endpoint (port/epclose).
    pub(crate) fn close_endpoint(&mut self, ep: EndpointId) {
        self.close_ctl(ep);
    }

    fn shutdown(&mut self) {
        let fds: Vec<u32> = self
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| i as u32)
            .collect();
        for fd in fds {
            self.close_ctl(fd);
        }
        for p in &self.cleanup {
            let _ = std::fs::remove_file(p);
        }
        if let Some(dir) = &self.opts.vde_dir {
            // only removes an empty directory
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Queue a copy of `frame` (crossing `port` in `dir`) for every capture
/// client that wants it; a client whose queue is full loses it (counted).
fn tap(
    mgmts: &mut [Option<MgmtConn>],
    captures: &[u32],
    switch: &Switch,
    ts: Duration,
    port: u32,
    dir: cap::CapDir,
    frame: &[u8],
) {
    let mut vlan = None;
    for &fd in captures {
        let Some(c) = mgmts.get_mut(fd as usize).and_then(Option::as_mut) else {
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

fn frame_bytes<'a>(
    rb: &'a RecvBatch,
    outs: &[Out],
    scratch: &'a [[u8; SLOT]],
    slen: &[usize],
    k: usize,
) -> &'a [u8] {
    let i = outs[k].frame as usize;
    let slot = match outs[k].egress {
        Egress::AsIs => return rb.frame(i),
        Egress::Tag(_) => 2 * i,
        Egress::Untag => 2 * i + 1,
    };
    if slen[slot] > 0 {
        &scratch[slot][..slen[slot]]
    } else {
        rb.frame(i)
    }
}

use sys::{SIGHUP, SIGINT, SIGTERM};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_roundtrip() {
        for t in [
            Token::Signal,
            Token::VdeListener,
            Token::UmlListener,
            Token::MgmtListener,
            Token::Ctl(7),
            Token::Data(u32::MAX - 1),
            Token::Shared(1),
            Token::Mgmt(3),
            Token::Timer,
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(99 << 32), None);
    }
}

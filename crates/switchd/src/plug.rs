//! A VDE client port: `umlkit plug URL` (and the `vde_plug` drop-in) joins
//! a switch and carries its frames over a byte stream (stdin/stdout) in
//! vde_plug's framing, so `dpipe umlkit plug /a = ssh host umlkit plug /b`,
//! or a C `vde_plug` at either end, cables two switches.
//!
//! The handshake is vdeplug4's (see the VDE notes): a control stream to
//! `DIR/ctl` (or a port-group socket `DIR/NAME`), a datagram socket of ours
//! bound in the switch directory, a v3 request naming it, and the switch's
//! data socket address in reply. The port lives as long as the control
//! stream.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use net_proto::ctl::{Request, RequestKind, SockAddrUn, SOCKADDR_LEN};
use net_proto::stream::{self, PortRequest, VdeUrl};

use crate::Error;

/// How the plug presents itself and its socket.
#[derive(Debug, Clone)]
pub struct PlugOptions {
    /// Description shown in the switch's `port/print` (vde_plug: `vdeplug:`).
    pub descr: String,
    /// Mode of our data socket (vde_plug's `--mod`, default 0700).
    pub mode: u32,
    /// A port asked for on the command line (`--port N`), over the URL's.
    pub port: Option<u32>,
}

impl Default for PlugOptions {
    fn default() -> Self {
        PlugOptions {
            descr: "vdeplug:".into(),
            mode: 0o700,
            port: None,
        }
    }
}

/// A port on a VDE switch.
pub struct Plug {
    url: String,
    ctl: UnixStream,
    data: UnixDatagram,
}

fn plug_err(url: &str, what: &str, source: io::Error) -> Error {
    Error::Plug {
        url: url.to_string(),
        what: what.to_string(),
        source,
    }
}

impl Plug {
    /// Join the switch at `url` (`vde://DIR[N]`, `DIR[N]`, `DIR`).
    pub fn open(url: &str, opts: &PlugOptions) -> Result<Plug, Error> {
        let parsed = VdeUrl::parse(url).map_err(|e| Error::PlugUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let dir = std::fs::canonicalize(&parsed.dir)
            .map_err(|e| plug_err(url, "cannot open the switch directory", e))?;
        let ctl = connect_ctl(&dir, parsed.group.as_deref())
            .map_err(|e| plug_err(url, "cannot connect to the switch", e))?;
        let (data, ours) = bind_data(&dir, opts.mode)
            .map_err(|e| plug_err(url, "cannot create the data socket", e))?;
        let r = Self::handshake(url, &parsed, opts, &ctl, &data, &ours);
        // the switch has what it needs; ours is not needed on disk any more
        let _ = std::fs::remove_file(&ours);
        r?;
        Ok(Plug {
            url: url.to_string(),
            ctl,
            data,
        })
    }

    fn handshake(
        url: &str,
        parsed: &VdeUrl,
        opts: &PlugOptions,
        mut ctl: &UnixStream,
        data: &UnixDatagram,
        ours: &Path,
    ) -> Result<(), Error> {
        let addr = SockAddrUn::from_path(ours).ok_or_else(|| {
            plug_err(
                url,
                "data socket path too long",
                io::Error::from(io::ErrorKind::InvalidInput),
            )
        })?;
        let (kind, port) = match (opts.port, parsed.port) {
            (Some(0), _) | (None, PortRequest::Zero) => (RequestKind::NewPort0, 0),
            (Some(n), _) | (None, PortRequest::Port(n)) => (RequestKind::NewControl, n),
            (None, PortRequest::Any) => (RequestKind::NewControl, 0),
        };
        let user = umlkit_sys::net::user_name(umlkit_sys::net::euid()).unwrap_or_default();
        let mut descr = format!("{} user={user} pid={}", opts.descr, std::process::id());
        if let Some(ip) = std::env::var("SSH_CLIENT")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_string))
        {
            descr.push_str(&format!(" SSH={ip}"));
        }
        let req = Request::V3 {
            kind,
            port,
            addr,
            descr,
        };
        ctl.write_all(&req.to_bytes())
            .map_err(|e| plug_err(url, "cannot send the port request", e))?;
        let mut reply = [0u8; SOCKADDR_LEN];
        let mut got = 0;
        while got < reply.len() {
            match ctl.read(&mut reply[got..]) {
                Ok(0) => {
                    return Err(plug_err(
                        url,
                        "the switch refused the port request",
                        io::Error::from(io::ErrorKind::ConnectionRefused),
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(plug_err(url, "no reply to the port request", e)),
            }
        }
        let theirs = SockAddrUn::from_raw(&reply);
        let path = theirs.path().ok_or_else(|| {
            plug_err(
                url,
                "the switch answered an address that is not a socket path",
                io::Error::from(io::ErrorKind::InvalidData),
            )
        })?;
        data.connect(path)
            .map_err(|e| plug_err(url, "cannot reach the switch's data socket", e))
    }

    /// Send one frame to the switch.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.data.send(frame).map(|_| ())
    }

    /// Receive one frame from the switch.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.data.recv(buf)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The data socket (one frame per datagram), to wait on.
    pub fn data_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.data.as_fd()
    }

    /// The control stream: readable at EOF when the switch ends the port.
    pub fn ctl_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.ctl.as_fd()
    }

    /// Whether the switch ended the port: the control stream is at EOF or
    /// failed (call when [`Plug::ctl_fd`] is readable; the switch sends
    /// nothing else on it).
    pub fn ctl_closed(&self) -> bool {
        let mut b = [0u8; 256];
        !matches!((&self.ctl).read(&mut b), Ok(n) if n > 0)
    }

    /// Make [`Plug::send`] and [`Plug::recv`] return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.data.set_nonblocking(on)
    }
}

fn connect_ctl(dir: &Path, group: Option<&str>) -> io::Result<UnixStream> {
    if let Some(g) = group {
        if let Ok(s) = UnixStream::connect(dir.join(g)) {
            return Ok(s);
        }
    }
    UnixStream::connect(dir.join("ctl"))
}

/// Our data socket `DIR/.PID-SEQ`, chmod'ed to `mode` whatever the umask.
fn bind_data(dir: &Path, mode: u32) -> io::Result<(UnixDatagram, PathBuf)> {
    let pid = std::process::id();
    for seq in 0..1000 {
        let p = dir.join(format!(".{pid:05}-{seq:05}"));
        match UnixDatagram::bind(&p) {
            Ok(s) => {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o777))?;
                return Ok((s, p));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from(io::ErrorKind::AddrInUse))
}

/// Why a stream relay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The stream's input ended (EOF): the normal end of a cable.
    InputClosed,
    /// The stream's output is gone (EPIPE).
    OutputClosed,
    /// The switch closed the port (it stopped, or the port was removed).
    SwitchGone,
}

/// Counters of a relay, for the end message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    pub to_switch: u64,
    pub from_switch: u64,
    /// Stream lengths the switch cannot carry (over 9234 bytes).
    pub bad_lengths: u64,
}

/// Relay frames between the switch and a byte stream until one side ends.
pub fn relay_stream<R, W>(plug: Plug, mut input: R, mut output: W) -> (StreamEnd, StreamStats)
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    let plug = Arc::new(plug);
    // to switch, from switch, bad lengths
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let (tx, rx) = mpsc::channel();
    {
        let p = plug.clone();
        let tx = tx.clone();
        let c = counts.clone();
        std::thread::spawn(move || {
            let mut dec = stream::Decoder::new();
            let mut buf = vec![0u8; 64 * 1024];
            let end = loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break StreamEnd::InputClosed,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break StreamEnd::InputClosed,
                };
                dec.push(&buf[..n]);
                while let Some(f) = dec.next() {
                    match f {
                        // a full switch queue drops, as on any port
                        Ok(frame) => {
                            if p.send(&frame).is_ok() {
                                c[0].fetch_add(1, Relaxed);
                            }
                        }
                        Err(_) => {
                            c[2].fetch_add(1, Relaxed);
                        }
                    }
                }
            };
            let _ = tx.send(end);
        });
    }
    {
        let p = plug.clone();
        let tx = tx.clone();
        let c = counts.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; stream::MAX_FRAME + 64];
            let end = loop {
                let n = match p.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break StreamEnd::SwitchGone,
                };
                let Some(framed) = stream::encode(&buf[..n]) else {
                    continue;
                };
                if output
                    .write_all(&framed)
                    .and_then(|_| output.flush())
                    .is_err()
                {
                    break StreamEnd::OutputClosed;
                }
                c[1].fetch_add(1, Relaxed);
            };
            let _ = tx.send(end);
        });
    }
    watch_port(plug.clone(), tx);
    let end = rx.recv().unwrap_or(StreamEnd::SwitchGone);
    let stats = StreamStats {
        to_switch: counts[0].load(Relaxed),
        from_switch: counts[1].load(Relaxed),
        bad_lengths: counts[2].load(Relaxed),
    };
    (end, stats)
}

/// Relay frames between the switch and a SOCK_SEQPACKET socket (one frame
/// per message): UML's vde transport runs `vde_plug ... seqpacket://FD URL`
/// and exchanges its frames on FD. Ends when either side hangs up.
pub fn relay_packets(plug: Plug, sock: UnixDatagram) -> (StreamEnd, StreamStats) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    let plug = Arc::new(plug);
    let sock = Arc::new(sock);
    let counts: Arc<[AtomicU64; 2]> = Arc::new(Default::default());
    let (tx, rx) = mpsc::channel();
    {
        let (p, s, c, tx) = (plug.clone(), sock.clone(), counts.clone(), tx.clone());
        std::thread::spawn(move || {
            use std::os::fd::AsFd;
            let end = pump(s.as_fd(), p.data.as_fd(), &c[0], true);
            let _ = tx.send(end);
        });
    }
    {
        let (p, s, c, tx) = (plug.clone(), sock.clone(), counts.clone(), tx.clone());
        std::thread::spawn(move || {
            use std::os::fd::AsFd;
            let end = pump(p.data.as_fd(), s.as_fd(), &c[1], false);
            let _ = tx.send(end);
        });
    }
    watch_port(plug.clone(), tx);
    let end = rx.recv().unwrap_or(StreamEnd::SwitchGone);
    let stats = StreamStats {
        to_switch: counts[0].load(Relaxed),
        from_switch: counts[1].load(Relaxed),
        bad_lengths: 0,
    };
    (end, stats)
}

/// `seqpacket://FD` as vdeplug4 writes it: the descriptor number.
pub fn seqpacket_fd(url: &str) -> Option<i32> {
    url.strip_prefix("seqpacket://")?.parse().ok()
}

/// Move datagrams from `from` to `to` in batches (recvmmsg/sendmmsg, up to
/// 64 per call) until `from` ends. A full `to` is waited for briefly
/// (backpressure, as a blocking send would), then the rest of the batch is
/// dropped as on a congested wire. `from_guest`: `from` is the guest's
/// seqpacket, where an empty message is its hangup.
fn pump(
    from: std::os::fd::BorrowedFd<'_>,
    to: std::os::fd::BorrowedFd<'_>,
    count: &std::sync::atomic::AtomicU64,
    from_guest: bool,
) -> StreamEnd {
    use umlkit_sys::net::{send_batch, Epoll, Interest, RecvBatch, MAX_BATCH};
    let closed = if from_guest {
        StreamEnd::InputClosed
    } else {
        StreamEnd::SwitchGone
    };
    let (Ok(mut rd), Ok(mut wr)) = (Epoll::new(), Epoll::new()) else {
        return closed;
    };
    if rd.add(from, 0, Interest::READ).is_err()
        || wr
            .add(
                to,
                0,
                Interest {
                    read: false,
                    write: true,
                },
            )
            .is_err()
    {
        return closed;
    }
    let mut batch = RecvBatch::new(MAX_BATCH, stream::MAX_FRAME + 64);
    let mut events = Vec::new();
    loop {
        let n = match batch.recv(from, false) {
            Ok(0) => return closed,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if rd.wait(&mut events, -1).is_err() {
                    return closed;
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return closed,
        };
        // an empty message: the peer of a seqpacket hung up
        let n = match (0..n).find(|&i| batch.frame(i).is_empty()) {
            Some(0) if from_guest => return closed,
            Some(i) => i,
            None => n,
        };
        let mut sent = 0;
        let mut waits = 0;
        while sent < n {
            match send_batch(to, n - sent, |i| (batch.frame(sent + i), None)) {
                Ok(k) => {
                    sent += k;
                    count.fetch_add(k as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && waits < 3 => {
                    waits += 1;
                    let _ = wr.wait(&mut events, 50);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ENOBUFS and the like: this batch is lost, the link is not
                Err(e) if e.raw_os_error() == Some(105) => break,
                Err(_) if from_guest => return StreamEnd::SwitchGone,
                Err(_) => return StreamEnd::OutputClosed,
            }
        }
    }
}

/// `umlkit switch --uplink URL`: the switch at `local` (its own directory)
/// dials the switch at `remote` and relays frames between the two as one
/// cable (a port on each side), reconnecting with a growing pause (1 s up
/// to 10 s) whenever either end goes away. Runs until the process ends.
pub fn spawn_uplink(local: PathBuf, remote: String, mut log: crate::Logger) {
    std::thread::spawn(move || {
        let mut pause = std::time::Duration::from_secs(1);
        let mut said_waiting = false;
        loop {
            match uplink_once(&local, &remote) {
                Ok((near, far)) => {
                    log.info(&format!("uplink to {remote}: connected"));
                    said_waiting = false;
                    pause = std::time::Duration::from_secs(1);
                    let end = relay_plugs(near, far);
                    log.info(&format!("uplink to {remote}: {end}; reconnecting"));
                }
                Err(e) => {
                    if !said_waiting {
                        let mut why = e.to_string();
                        let mut cur = std::error::Error::source(&e);
                        while let Some(c) = cur {
                            why.push_str(&format!(": {c}"));
                            cur = c.source();
                        }
                        log.peer(&format!("uplink to {remote}: {why}; retrying"));
                        said_waiting = true;
                    }
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_secs(10));
        }
    });
}

fn uplink_once(local: &Path, remote: &str) -> Result<(Plug, Plug), Error> {
    let far = Plug::open(
        remote,
        &PlugOptions {
            descr: format!("umlkit uplink from {}", local.display()),
            ..PlugOptions::default()
        },
    )?;
    let near = Plug::open(
        &local.display().to_string(),
        &PlugOptions {
            descr: format!("umlkit uplink to {remote}"),
            ..PlugOptions::default()
        },
    )?;
    Ok((near, far))
}

impl std::fmt::Display for StreamEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamEnd::InputClosed => "the input ended",
            StreamEnd::OutputClosed => "the output closed",
            StreamEnd::SwitchGone => "a switch closed the port",
        })
    }
}

/// Relay frames between two switch ports until either switch closes its port.
fn relay_plugs(a: Plug, b: Plug) -> StreamEnd {
    use std::os::fd::AsFd;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let (tx, rx) = mpsc::channel();
    for (from, to) in [(a.clone(), b.clone()), (b.clone(), a.clone())] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let n = AtomicU64::new(0);
            let _ = tx.send(pump(from.data.as_fd(), to.data.as_fd(), &n, false));
        });
    }
    for p in [a.clone(), b.clone()] {
        watch_port(p, tx.clone());
    }
    let end = rx.recv().unwrap_or(StreamEnd::SwitchGone);
    // close both ports: the pumps and watchers of this cable end with them
    for p in [&a, &b] {
        let _ = p.ctl.shutdown(std::net::Shutdown::Both);
        let _ = p.data.shutdown(std::net::Shutdown::Both);
    }
    end
}

/// The switch ends a port by closing its control stream: send
/// [`StreamEnd::SwitchGone`] on `tx` when that happens (or the stream fails).
fn watch_port(plug: std::sync::Arc<Plug>, tx: mpsc::Sender<StreamEnd>) {
    std::thread::spawn(move || {
        let mut b = [0u8; 256];
        let mut ctl = &plug.ctl;
        loop {
            match ctl.read(&mut b) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(StreamEnd::SwitchGone);
    });
}

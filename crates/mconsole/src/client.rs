//! A blocking mconsole client with timeouts: unlike uml_mconsole it never
//! hangs when the kernel dies in the middle of a command.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::proto::{self, Reply, Request, Response};
use crate::Error;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A client bound to a private abstract address, talking to one mconsole socket.
pub struct Client {
    sock: UnixDatagram,
    target: PathBuf,
    /// Longest wait for each reply datagram.
    pub timeout: Duration,
}

impl Client {
    /// Bind a client socket for the mconsole socket at `path`. The path is
    /// checked to exist so that a wrong name fails here, clearly.
    pub fn new(path: &Path) -> Result<Client, Error> {
        if path.as_os_str().len() >= 108 {
            return Err(Error::PathTooLong(path.to_path_buf()));
        }
        std::fs::metadata(path).map_err(|e| Error::NoSocket(path.to_path_buf(), e))?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("umlkit-mc-{}-{n}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(Error::Socket)?;
        let sock = UnixDatagram::bind_addr(&addr).map_err(Error::Socket)?;
        Ok(Client {
            sock,
            target: path.to_path_buf(),
            timeout: Duration::from_secs(10),
        })
    }

    /// The mconsole socket this client talks to.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Send one command and collect every reply datagram until `more == 0`.
    pub fn command(&self, cmd: &str) -> Result<Response, Error> {
        self.command_with(cmd, |_| {})
    }

    /// Like [`Client::command`], calling `chunk` with each reply datagram's text
    /// as it arrives (for long `sysrq`/`proc` output).
    pub fn command_with(&self, cmd: &str, mut chunk: impl FnMut(&str)) -> Result<Response, Error> {
        let req = Request::new(cmd.as_bytes()).map_err(Error::Proto)?;
        // drain stale replies of an earlier timed-out command
        self.sock.set_nonblocking(true).map_err(Error::Socket)?;
        let mut buf = [0u8; 4096];
        while self.sock.recv(&mut buf).is_ok() {}
        self.sock.set_nonblocking(false).map_err(Error::Socket)?;
        self.sock
            .send_to(&req.encode(), &self.target)
            .map_err(|e| Error::Send(self.target.clone(), e))?;
        let mut resp = Response::default();
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(self.target.clone(), cmd.to_string()));
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(Error::Socket)?;
            let n = match self.sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Err(Error::Timeout(self.target.clone(), cmd.to_string()))
                }
                Err(e) => return Err(Error::Recv(self.target.clone(), e)),
            };
            if proto::is_version0_reply(&buf[..n]) {
                return Err(Error::Protocol(
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
            let r = Reply::decode(&buf[..n]).map_err(Error::Proto)?;
            let text = String::from_utf8_lossy(&r.data);
            chunk(&text);
            resp.text.push_str(&text);
            resp.err = r.err;
            if !r.more {
                return Ok(resp);
            }
        }
    }
}

/// Send one command to the mconsole socket at `path` with `timeout` per reply.
pub fn send(path: &Path, cmd: &str, timeout: Duration) -> Result<Response, Error> {
    let mut c = Client::new(path)?;
    c.timeout = timeout;
    c.command(cmd)
}

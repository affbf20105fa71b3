//! Client side of `<statedir>/<name>/exec.sock` (same framing as the agent).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub use umlkit_agent::ExecRequest;
use umlkit_agent::{Decoder, Frame, Kind};

use crate::Error;

/// Output of a finished command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Exit code; 128 + N when killed by signal N; 127 when not found.
    pub code: i32,
}

/// Something the running command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
}

/// One running command in a guest.
pub struct ExecSession {
    stream: UnixStream,
    dec: Decoder,
    buf: Vec<u8>,
    name: String,
}

const ID: u32 = 1;

impl ExecSession {
    /// Connect to the guest's exec socket and start `req`.
    pub fn start(name: &str, sock: &Path, req: &ExecRequest) -> Result<ExecSession, Error> {
        let mut stream = UnixStream::connect(sock)
            .map_err(|e| Error::NotRunning(name.to_string(), e.to_string()))?;
        stream
            .write_all(&Frame::new(Kind::Exec, ID, req.encode()).encode())
            .map_err(|e| Error::ExecIo(name.to_string(), e))?;
        Ok(ExecSession {
            stream,
            dec: Decoder::new(),
            buf: vec![0; 65536],
            name: name.to_string(),
        })
    }

    /// A second handle for writing stdin from another thread.
    pub fn stdin_handle(&self) -> Result<StdinHandle, Error> {
        Ok(StdinHandle(
            self.stream
                .try_clone()
                .map_err(|e| Error::ExecIo(self.name.clone(), e))?,
        ))
    }

    /// The next event; `Err(Timeout)` when nothing arrives before `deadline`.
    pub fn next_event(&mut self, deadline: Option<Instant>) -> Result<Event, Error> {
        loop {
            match self.dec.next_frame() {
                Ok(Some(f)) => match f.kind {
                    Kind::Stdout => return Ok(Event::Stdout(f.payload)),
                    Kind::Stderr => return Ok(Event::Stderr(f.payload)),
                    Kind::Exit => {
                        return f
                            .code()
                            .map(Event::Exit)
                            .map_err(|e| Error::Protocol(self.name.clone(), e.to_string()))
                    }
                    Kind::Error => {
                        return Err(Error::Protocol(
                            self.name.clone(),
                            String::from_utf8_lossy(&f.payload).into_owned(),
                        ))
                    }
                    _ => continue,
                },
                Ok(None) => {}
                Err(e) => return Err(Error::Protocol(self.name.clone(), e.to_string())),
            }
            let to = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout(self.name.clone(), "exec".into()));
                    }
                    Some(left)
                }
                None => None,
            };
            self.stream
                .set_read_timeout(to)
                .map_err(|e| Error::ExecIo(self.name.clone(), e))?;
            match self.stream.read(&mut self.buf) {
                Ok(0) => {
                    return Err(Error::NotRunning(
                        self.name.clone(),
                        "the supervisor closed the exec connection".into(),
                    ))
                }
                Ok(n) => self.dec.push(&self.buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Error::Timeout(self.name.clone(), "exec".into()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::ExecIo(self.name.clone(), e)),
            }
        }
    }
}

/// Writes stdin, EOF and signals for an [`ExecSession`].
pub struct StdinHandle(UnixStream);

impl StdinHandle {
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        for c in data.chunks(16384) {
            self.0
                .write_all(&Frame::new(Kind::Stdin, ID, c.to_vec()).encode())?;
        }
        Ok(())
    }
    pub fn eof(&mut self) -> std::io::Result<()> {
        self.0
            .write_all(&Frame::new(Kind::Eof, ID, vec![]).encode())
    }
    /// The terminal of a tty exec is now `rows` x `cols` (agents older
    /// than the resize frame ignore it).
    pub fn resize(&mut self, rows: u16, cols: u16) -> std::io::Result<()> {
        self.0.write_all(&Frame::resize(ID, rows, cols).encode())
    }
    pub fn signal(&mut self, sig: i32) -> std::io::Result<()> {
        self.0
            .write_all(&Frame::new(Kind::Signal, ID, sig.to_le_bytes().to_vec()).encode())
    }
}

/// Run `argv` to completion, collecting its output (no stdin).
pub fn run(
    name: &str,
    sock: &Path,
    argv: &[String],
    timeout: Duration,
) -> Result<ExecOutput, Error> {
    let req = ExecRequest {
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: vec![],
        tty: false,
    };
    if req.argv.is_empty() {
        return Err(Error::Protocol(name.to_string(), "empty command".into()));
    }
    let mut s = ExecSession::start(name, sock, &req)?;
    s.stdin_handle()?
        .eof()
        .map_err(|e| Error::ExecIo(name.to_string(), e))?;
    let deadline = Instant::now() + timeout;
    let mut out = ExecOutput::default();
    loop {
        match s.next_event(Some(deadline))? {
            Event::Stdout(d) => out.stdout.extend_from_slice(&d),
            Event::Stderr(d) => out.stderr.extend_from_slice(&d),
            Event::Exit(c) => {
                out.code = c;
                return Ok(out);
            }
        }
    }
}

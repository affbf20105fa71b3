//! A terminal on a running guest: console attach/detach, the exec pump
//! (stdin, stdout, stderr, exit status) and `logs -f`. Output goes to the
//! writers passed in; the caller owns the terminal (see [`RawStdin`]).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::{Error, Event, ExecRequest, Store};

/// The console escape that detaches: Ctrl-] (0x1d), as telnet's.
pub const DETACH_KEY: u8 = 0x1d;

/// The process's stdin in raw mode while this lives (when it is a terminal
/// and `on`); the saved settings are restored on drop.
pub struct RawStdin(Option<umlkit_sys::process::Termios>);

impl RawStdin {
    pub fn new(on: bool) -> RawStdin {
        let stdin = std::io::stdin();
        if on && umlkit_sys::process::is_tty(stdin.as_fd()) {
            RawStdin(umlkit_sys::process::make_raw(stdin.as_fd()).ok())
        } else {
            RawStdin(None)
        }
    }
}

impl Drop for RawStdin {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = umlkit_sys::process::restore_termios(std::io::stdin().as_fd(), t);
        }
    }
}

/// How a console session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detach {
    /// The user typed [`DETACH_KEY`] or the input ended; the guest runs on.
    Detached,
    /// The guest closed the console (it stopped): seen as the end of its
    /// output or a failed write.
    Closed,
}

/// Attach to the console of guest `name`: what the guest prints goes to
/// `output`, `input` goes to the guest until [`DETACH_KEY`] (bytes before it
/// are still sent) or its end. `notice` gets the `[attached ...]`,
/// `[detached ...]` / `[... console closed]` lines; `raw` puts a terminal
/// stdin in raw mode meanwhile. Detaching leaves the guest running.
pub fn console(
    store: &Store,
    name: &str,
    input: &mut dyn Read,
    output: &mut (dyn Write + Send),
    notice: &mut dyn Write,
    raw: bool,
) -> Result<Detach, Error> {
    let s = store.status(name)?;
    let sock = s
        .console
        .ok_or_else(|| Error::NoConsole(name.to_string()))?;
    let mut c = std::os::unix::net::UnixStream::connect(&sock)
        .map_err(|e| Error::ConsoleConnect(sock.clone(), e))?;
    let mut rd = c
        .try_clone()
        .map_err(|e| Error::ConsoleConnect(sock.clone(), e))?;
    let _ = write!(notice, "[attached to {name}; detach with Ctrl-]]\r\n");
    let _ = notice.flush();
    let raw = RawStdin::new(raw);
    let how = std::thread::scope(|scope| {
        let t = scope.spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = rd.read(&mut buf) {
                if n == 0 || output.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = output.flush();
            }
        });
        let mut buf = [0u8; 1024];
        let how = loop {
            if t.is_finished() {
                break Ok(Detach::Closed);
            }
            let n = match input.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(Error::Input(e)),
            };
            if n == 0 {
                break Ok(Detach::Detached);
            }
            if let Some(p) = buf[..n].iter().position(|&b| b == DETACH_KEY) {
                let _ = c.write_all(&buf[..p]);
                break Ok(Detach::Detached);
            }
            if c.write_all(&buf[..n]).is_err() {
                // the guest's side closed the console
                break Ok(Detach::Closed);
            }
        };
        // wake the reader (it sees end of file) so that it can be joined
        let _ = c.shutdown(std::net::Shutdown::Both);
        how
    })?;
    drop(raw);
    let _ = match how {
        Detach::Closed => write!(notice, "\r\n[{name}: console closed]\n"),
        Detach::Detached => write!(notice, "\r\n[detached from {name}]\n"),
    };
    Ok(how)
}

/// Run `req` in guest `name` and pump its streams: `stdin` (if any) is sent
/// from a thread until its end, then EOF (without `stdin`, EOF at once); the
/// command's stdout and stderr go to `out` and `err` as they come. Returns
/// its exit status (128 + N when killed by signal N). `timeout` (if any)
/// bounds the wait for each event.
pub fn exec(
    store: &Store,
    name: &str,
    req: &ExecRequest,
    stdin: Option<Box<dyn Read + Send>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    timeout: Option<Duration>,
) -> Result<i32, Error> {
    // a tty exec gets our terminal's size from the start (else 24x80)
    let size = req
        .tty
        .then(|| umlkit_sys::process::get_winsize(std::io::stdin().as_fd()).ok())
        .flatten()
        .filter(|&(r, c)| r > 0 && c > 0);
    let sized;
    let req = match size {
        Some((rows, cols)) => {
            sized = req.clone().with_winsize(rows, cols);
            &sized
        }
        None => req,
    };
    let mut sess = store.exec_session(name, req)?;
    let mut h = sess.stdin_handle()?;
    let _raw = RawStdin::new(req.tty);
    // and follows it: SIGWINCH -> resize frame (blocked from here on, so the
    // threads started below leave it to the signalfd)
    if size.is_some() {
        if let (Ok(sigs), Ok(mut h2)) = (
            umlkit_sys::net::SignalFd::new(&[umlkit_sys::process::SIGWINCH]),
            sess.stdin_handle(),
        ) {
            std::thread::spawn(move || {
                while sigs.wait().is_ok() {
                    while sigs.read().is_some() {}
                    let stdin = std::io::stdin();
                    if let Ok((rows, cols)) = umlkit_sys::process::get_winsize(stdin.as_fd()) {
                        if rows > 0 && cols > 0 && h2.resize(rows, cols).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }
    if let Some(mut input) = stdin {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = h.eof();
                        return;
                    }
                    Ok(n) => {
                        if h.write(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    } else {
        h.eof().map_err(|e| Error::ExecIo(name.to_string(), e))?;
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        match sess.next_event(deadline)? {
            Event::Stdout(d) => {
                out.write_all(&d)
                    .and_then(|()| out.flush())
                    .map_err(Error::Output)?;
            }
            Event::Stderr(d) => {
                err.write_all(&d).map_err(Error::Output)?;
            }
            Event::Exit(c) => return Ok(c),
        }
    }
}

/// Copy the console log of guest `name` to `out`; with `follow`, keep
/// copying what the guest prints until it stops (checked every 200 ms when
/// there is nothing new), then copy the rest and return.
pub fn logs(store: &Store, name: &str, follow: bool, out: &mut dyn Write) -> Result<(), Error> {
    store.status(name)?;
    let path = store.paths(name).console_log();
    let mut f = std::fs::File::open(&path).map_err(|e| Error::LogOpen(path.clone(), e))?;
    let mut buf = vec![0u8; 65536];
    let rd = |e| Error::io(&path, "reading the console log", e);
    loop {
        let n = f.read(&mut buf).map_err(rd)?;
        if n > 0 {
            out.write_all(&buf[..n]).map_err(Error::Output)?;
            continue;
        }
        out.flush().map_err(Error::Output)?;
        if !follow || !store.status(name).map(|s| s.alive()).unwrap_or(false) {
            // one last read after the guest ended
            loop {
                let n = f.read(&mut buf).map_err(rd)?;
                if n == 0 {
                    return out.flush().map_err(Error::Output);
                }
                out.write_all(&buf[..n]).map_err(Error::Output)?;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

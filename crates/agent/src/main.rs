//! `umlkit-agent`: the exec agent that runs inside a guest booted from the
//! default image. It is built as a fully static binary and copied into the
//! image; the image's init respawns it on the serial line given as argument
//! (default `/dev/ttyS1`), which it puts in raw mode. Protocol: see the
//! library part of this crate (`umlkit_agent`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use umlkit_agent::{Decoder, ExecRequest, Frame, Kind, MAX_PAYLOAD};

type Writer = Arc<Mutex<File>>;

/// Where stdin bytes of a running exec go, and how to signal it.
struct Running {
    stdin: Option<Box<dyn Write + Send>>,
    pid: u32,
    /// Stdin that arrived before the process was spawned.
    pending: Vec<u8>,
    /// EOF arrived before the process was spawned.
    eof: bool,
    tty: bool,
    /// The pty master of a tty exec (for window size changes).
    pty: Option<File>,
    /// A window size that arrived before the process was spawned.
    size: Option<(u16, u16)>,
}

impl Running {
    fn new() -> Running {
        Running {
            stdin: None,
            pid: 0,
            pending: Vec::new(),
            eof: false,
            tty: false,
            pty: None,
            size: None,
        }
    }
}

/// A writer that hands data to its own thread, so a process that does not
/// read its stdin never blocks the agent's line reader (and other execs).
/// Dropping it closes the real writer once queued data is written.
struct Threaded(std::sync::mpsc::Sender<Vec<u8>>);

impl Write for Threaded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn threaded(mut w: Box<dyn Write + Send>) -> Box<dyn Write + Send> {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        for chunk in rx {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    Box::new(Threaded(tx))
}

/// Register the spawned process: flush early stdin, apply an early EOF.
fn attach(table: &Table, id: u32, pid: u32, stdin: Option<Box<dyn Write + Send>>) {
    let mut stdin = stdin.map(threaded);
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    let r = t.entry(id).or_insert_with(Running::new);
    r.pid = pid;
    if let Some(s) = stdin.as_mut() {
        if !r.pending.is_empty() && s.write_all(&r.pending).is_err() {
            stdin = None;
        }
    }
    r.pending = Vec::new();
    if r.eof {
        if r.tty {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(b"\x04");
            }
        } else {
            stdin = None;
        }
    }
    r.stdin = stdin;
}

type Table = Arc<Mutex<HashMap<u32, Running>>>;

fn send(w: &Writer, f: &Frame) {
    let bytes = f.encode();
    let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
    let _ = g.write_all(&bytes);
}

fn pump(mut r: impl Read, w: &Writer, id: u32, kind: Kind) {
    let mut buf = vec![0u8; 16384.min(MAX_PAYLOAD)];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => send(w, &Frame::new(kind, id, buf[..n].to_vec())),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break, // EIO on a pty once the last writer is gone
        }
    }
}

fn code_of(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

fn build_command(req: &ExecRequest) -> Command {
    use std::os::unix::ffi::OsStrExt;
    let os = |b: &Vec<u8>| std::ffi::OsStr::from_bytes(b).to_os_string();
    let mut cmd = Command::new(os(&req.argv[0]));
    cmd.args(req.argv[1..].iter().map(os));
    cmd.env_clear()
        .env("PATH", "/sbin:/bin:/usr/sbin:/usr/bin")
        .env("HOME", "/root")
        .env("TERM", if req.tty { "xterm" } else { "dumb" })
        .current_dir("/");
    for e in &req.env {
        let e = os(e);
        let s = e.as_bytes();
        if let Some(p) = s.iter().position(|&c| c == b'=') {
            cmd.env(
                std::ffi::OsStr::from_bytes(&s[..p]),
                std::ffi::OsStr::from_bytes(&s[p + 1..]),
            );
        }
    }
    cmd
}

fn start(id: u32, mut req: ExecRequest, w: Writer, table: Table) {
    let size = req.take_winsize();
    let mut cmd = build_command(&req);
    if req.tty {
        let pty = match umlkit_sys::process::open_pty() {
            Ok(p) => p,
            Err(e) => {
                return send(
                    &w,
                    &Frame::new(Kind::Error, id, format!("pty: {e}").into_bytes()),
                )
            }
        };
        let (rows, cols) = size.unwrap_or((24, 80));
        let _ = umlkit_sys::process::set_winsize(pty.master.as_fd(), rows, cols);
        let (a, b, c) = match (
            pty.slave.try_clone(),
            pty.slave.try_clone(),
            pty.slave.try_clone(),
        ) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            _ => return send(&w, &Frame::new(Kind::Error, id, b"dup failed".to_vec())),
        };
        cmd.stdin(a).stdout(b).stderr(c);
        umlkit_sys::process::setsid_on_spawn(&mut cmd, true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return spawn_failed(&w, &table, id, &req, e),
        };
        drop(pty.slave);
        drop(cmd);
        let reader = match pty.master.try_clone() {
            Ok(r) => r,
            Err(e) => return send(&w, &Frame::new(Kind::Error, id, e.to_string().into_bytes())),
        };
        if let Ok(m) = pty.master.try_clone() {
            let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
            let r = t.entry(id).or_insert_with(Running::new);
            if let Some((rows, cols)) = r.size.take() {
                let _ = umlkit_sys::process::set_winsize(m.as_fd(), rows, cols);
            }
            r.pty = Some(m);
        }
        attach(&table, id, child.id(), Some(Box::new(pty.master)));
        let w2 = w.clone();
        let out = std::thread::spawn(move || pump(reader, &w2, id, Kind::Stdout));
        let st = child.wait();
        // the pty reads EIO once every holder of the slave is gone
        table.lock().unwrap().remove(&id);
        let _ = out.join();
        let code = st.map(code_of).unwrap_or(255);
        send(&w, &Frame::exit(id, code));
    } else {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return spawn_failed(&w, &table, id, &req, e),
        };
        let stdin = child
            .stdin
            .take()
            .map(|s| Box::new(s) as Box<dyn Write + Send>);
        attach(&table, id, child.id(), stdin);
        let (w1, w2) = (w.clone(), w.clone());
        let so = child.stdout.take().expect("piped stdout");
        let se = child.stderr.take().expect("piped stderr");
        let t1 = std::thread::spawn(move || pump(so, &w1, id, Kind::Stdout));
        let t2 = std::thread::spawn(move || pump(se, &w2, id, Kind::Stderr));
        let _ = t1.join();
        let _ = t2.join();
        let st = child.wait();
        table.lock().unwrap().remove(&id);
        send(&w, &Frame::exit(id, st.map(code_of).unwrap_or(255)));
    }
}

fn spawn_failed(w: &Writer, table: &Table, id: u32, req: &ExecRequest, e: std::io::Error) {
    table.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    let msg = format!(
        "umlkit-agent: cannot run {}: {e}\n",
        String::from_utf8_lossy(&req.argv[0])
    );
    send(w, &Frame::new(Kind::Stderr, id, msg.into_bytes()));
    let code = if e.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    send(w, &Frame::exit(id, code));
}

fn main() {
    let dev = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/dev/ttyS1".into());
    umlkit_sys::process::ignore_sigpipe();
    let line = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev)
    {
        Ok(f) => f,
        Err(e) => {
            // no serial line for the agent (e.g. a foreground guest): stay
            // idle rather than exit and be respawned in a loop by init
            eprintln!("umlkit-agent: cannot open {dev}: {e}");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    };
    if umlkit_sys::process::is_tty(line.as_fd()) {
        if let Err(e) = umlkit_sys::process::make_raw(line.as_fd()) {
            eprintln!("umlkit-agent: cannot put {dev} in raw mode: {e}");
        }
    }
    let mut reader = line.try_clone().expect("dup line");
    let w: Writer = Arc::new(Mutex::new(line));
    let table: Table = Arc::new(Mutex::new(HashMap::new()));
    send(
        &w,
        &Frame::new(
            Kind::Hello,
            0,
            format!("umlkit-agent {}", env!("CARGO_PKG_VERSION")).into_bytes(),
        ),
    );
    let mut dec = Decoder::new();
    let mut buf = vec![0u8; 65536];
    const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
    let mut garbage: u64 = 0;
    let mut last_report: Option<std::time::Instant> = None;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => {
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("umlkit-agent: read {dev}: {e}");
                std::process::exit(1);
            }
        };
        send(&w, &Frame::ack(n as u32));
        dec.push(&buf[..n]);
        loop {
            let f = match dec.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    // the decoder consumed the bad bytes; report garbage at
                    // most once every few seconds so a flood of it cannot
                    // flood the console in turn
                    garbage += 1;
                    if !matches!(last_report, Some(t) if t.elapsed() < REPORT_EVERY) {
                        eprintln!(
                            "umlkit-agent: {e} ({garbage} bad frame header(s) skipped so far)"
                        );
                        last_report = Some(std::time::Instant::now());
                    }
                    continue;
                }
            };
            match f.kind {
                Kind::Exec => match ExecRequest::decode(&f.payload) {
                    Ok(req) => {
                        let mut r = Running::new();
                        r.tty = req.tty;
                        table.lock().unwrap().insert(f.id, r);
                        let (w, t) = (w.clone(), table.clone());
                        std::thread::spawn(move || start(f.id, req, w, t));
                    }
                    Err(e) => send(
                        &w,
                        &Frame::new(Kind::Error, f.id, e.to_string().into_bytes()),
                    ),
                },
                Kind::Stdin => {
                    let mut t = table.lock().unwrap();
                    if let Some(r) = t.get_mut(&f.id) {
                        if let Some(s) = r.stdin.as_mut() {
                            if s.write_all(&f.payload).is_err() {
                                r.stdin = None;
                            }
                        } else if r.pid == 0 {
                            r.pending.extend_from_slice(&f.payload);
                        }
                    }
                }
                Kind::Eof => {
                    if let Some(r) = table.lock().unwrap().get_mut(&f.id) {
                        match r.stdin.take() {
                            // a pty has no half-close: send ^D (EOF at line start) instead
                            Some(mut s) if r.tty => {
                                let _ = s.write_all(b"\x04");
                            }
                            Some(_) => {}
                            None => r.eof = true,
                        }
                    }
                }
                Kind::Signal => {
                    if let (Some(r), Ok(sig)) = (table.lock().unwrap().get(&f.id), f.code()) {
                        // the whole command (its own session and group since
                        // setsid): a pipeline is stopped, continued or killed
                        // as one
                        if umlkit_sys::process::kill_group(r.pid, sig).is_err() {
                            let _ = umlkit_sys::process::kill(r.pid, sig);
                        }
                    }
                }
                Kind::Resize => {
                    if let (Some(r), Ok((rows, cols))) =
                        (table.lock().unwrap().get_mut(&f.id), f.size())
                    {
                        // TIOCSWINSZ on the master: the kernel sends
                        // SIGWINCH to the pty's foreground process group
                        match r.pty.as_ref() {
                            Some(m) => {
                                let _ = umlkit_sys::process::set_winsize(m.as_fd(), rows, cols);
                            }
                            None => r.size = Some((rows, cols)),
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

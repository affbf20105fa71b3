//! The per-guest supervisor: starts the kernel in its own process group,
//! owns the host end of the agent's serial line and of the console, serves
//! `exec.sock` and `console.sock`, writes `console.log` and `state.json`,
//! and records how the guest ended. Runs detached (`umlkit supervise DIR`,
//! a session leader) or in the foreground of `umlkit run`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use umlkit_agent::{Decoder, Frame, Kind};
use umlkit_sys::process as sp;

use crate::config::{kernel_args, ConsoleMode, GuestConfig, Layout};
use crate::sink::{Overflow, Sink, CONSOLE_BACKLOG, CONSOLE_SNDBUF, EXEC_BACKLOG};
use crate::state::{now_ms, Ending, GuestPaths, State};
use crate::Error;

/// Host fd number of the agent's serial line inside the kernel process.
pub const AGENT_FD: i32 = 3;

type Shared<T> = Arc<Mutex<T>>;

struct Route {
    client: Sink,
    cid: u32,
}

/// Live counters behind `state.json`'s `io` (see [`crate::state::IoCounters`]).
#[derive(Default)]
struct Counters {
    console_dropped: Arc<AtomicU64>,
    exec_disconnected: Arc<AtomicU64>,
    bad_frames: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> crate::state::IoCounters {
        crate::state::IoCounters {
            console_dropped_bytes: self.console_dropped.load(Ordering::Relaxed),
            exec_clients_disconnected: self.exec_disconnected.load(Ordering::Relaxed),
            agent_bad_frames: self.bad_frames.load(Ordering::Relaxed),
        }
    }
}

/// Bytes queued for the agent, sent within the flow-control window.
struct Outbox {
    queue: std::collections::VecDeque<u8>,
    in_flight: usize,
    closed: bool,
}

struct Hub {
    outbox: Mutex<Outbox>,
    outbox_cv: std::sync::Condvar,
    routes: Shared<HashMap<u32, Route>>,
    next_id: Mutex<u32>,
    ready: AtomicBool,
    dead: AtomicBool,
    state: Shared<State>,
    state_path: PathBuf,
    /// The guest's process marker (see [`marker`]): finds its helpers.
    marker: String,
    /// A state write failed: the guest was stopped (its state would lie).
    failed: AtomicBool,
    counters: Counters,
}

impl Hub {
    /// Save the state. A failed write (e.g. a full disk) is not just
    /// logged: `ps` would show a stale phase and `run --wait` would wait
    /// for nothing. The error (naming the file) goes into the state by an
    /// in-place rewrite when a new file cannot be written, and the guest
    /// is stopped at once.
    fn save(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.io = self.counters.snapshot();
        if let Err(e) = st.save(&self.state_path) {
            let msg = crate::state::error_chain(&e);
            self.failed.store(true, Ordering::SeqCst);
            // every host process, helpers included, is gone before the
            // error is recorded: whoever reads it may rely on that
            // (zombies are not counted: the main thread reaps the kernel)
            kill_until_gone(st.pgid, Some(&self.marker), false);
            // stderr may be on the full disk too: never panic on it
            let _ = writeln!(std::io::stderr(), "umlkit supervise: {msg}");
            if st.error.is_none() {
                st.error = Some(format!(
                    "{msg}; the guest was stopped because its state cannot be recorded"
                ));
            }
            let _ = st.save_or_record(&self.state_path);
        }
    }
    fn to_agent(&self, f: &Frame) -> bool {
        let mut o = lock(&self.outbox);
        if o.closed {
            return false;
        }
        o.queue.extend(f.encode());
        self.outbox_cv.notify_all();
        true
    }

    fn acked(&self, n: usize, reset: bool) {
        let mut o = lock(&self.outbox);
        o.in_flight = if reset {
            0
        } else {
            o.in_flight.saturating_sub(n)
        };
        self.outbox_cv.notify_all();
    }
}

/// Writes queued bytes to the agent's line, never more than WINDOW unacked.
fn agent_writer(hub: Arc<Hub>, mut line: UnixStream) {
    loop {
        let chunk: Vec<u8> = {
            let mut o = lock(&hub.outbox);
            loop {
                if o.closed {
                    return;
                }
                let room = umlkit_agent::WINDOW.saturating_sub(o.in_flight);
                if room > 0 && !o.queue.is_empty() {
                    let n = room.min(o.queue.len());
                    o.in_flight += n;
                    break o.queue.drain(..n).collect();
                }
                o = hub
                    .outbox_cv
                    .wait_timeout(o, Duration::from_secs(1))
                    .map(|r| r.0)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        };
        if line.write_all(&chunk).is_err() {
            lock(&hub.outbox).closed = true;
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Agent -> clients.
fn agent_reader(hub: Arc<Hub>, mut rd: UnixStream) {
    let mut dec = Decoder::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match rd.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        dec.push(&buf[..n]);
        loop {
            let f = match dec.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    // the decoder consumed the garbage (e.g. echo before raw
                    // mode, or bytes root wrote to the agent's tty): count it
                    // and report the first one
                    if hub.counters.bad_frames.fetch_add(1, Ordering::Relaxed) == 0 {
                        let _ = writeln!(std::io::stderr(), "umlkit supervise: agent line: {e} (skipped; see io.agent_bad_frames in state.json)");
                    }
                    continue;
                }
            };
            if f.kind == Kind::Ack {
                if let Ok(n) = f.code() {
                    hub.acked(n as u32 as usize, false);
                }
                continue;
            }
            if f.kind == Kind::Hello {
                // a (re)started agent has nothing of ours in flight
                hub.acked(0, true);
                let restarted = hub.ready.swap(true, Ordering::SeqCst);
                if restarted {
                    // the agent was restarted: pending execs are lost
                    let mut r = lock(&hub.routes);
                    for (_, route) in r.drain() {
                        let e = Frame::new(
                            Kind::Error,
                            route.cid,
                            b"the guest agent restarted".to_vec(),
                        );
                        route.client.send(e.encode());
                    }
                }
                {
                    let mut st = lock(&hub.state);
                    st.ready_unix_ms = Some(now_ms());
                    st.boots += 1;
                }
                hub.save();
                continue;
            }
            let last = matches!(f.kind, Kind::Exit | Kind::Error);
            let route = {
                let mut r = lock(&hub.routes);
                if last {
                    r.remove(&f.id)
                } else {
                    r.get(&f.id).map(|x| Route {
                        client: x.client.clone(),
                        cid: x.cid,
                    })
                }
            };
            if let Some(route) = route {
                // never blocks: a client that does not keep up is cut off
                // by its sink, the line and the other clients go on
                let out = Frame::new(f.kind, route.cid, f.payload);
                route.client.send(out.encode());
            }
        }
    }
}

/// One exec client.
fn exec_client(hub: Arc<Hub>, mut rd: UnixStream) {
    // The client's commands in the guest, for backpressure: a client that
    // reads slower than its commands write gets them stopped (SIGSTOP to
    // their process group) until it caught up (SIGCONT), instead of being
    // cut off; one that stops reading is cut off by the sink.
    let gids: Arc<Mutex<Vec<u32>>> = Arc::default();
    let flow = {
        let (hub, gids) = (hub.clone(), gids.clone());
        Box::new(move |pause: bool| {
            let sig = if pause { sp::SIGSTOP } else { sp::SIGCONT };
            for &gid in lock(&gids).iter() {
                hub.to_agent(&Frame::new(Kind::Signal, gid, sig.to_le_bytes().to_vec()));
            }
        })
    };
    let wr = match rd.try_clone() {
        Ok(w) => Sink::with_flow(
            w,
            EXEC_BACKLOG,
            hub.counters.exec_disconnected.clone(),
            flow,
        ),
        Err(_) => return,
    };
    let mut mine: HashMap<u32, u32> = HashMap::new(); // cid -> gid
    let mut dec = Decoder::new();
    let mut buf = vec![0u8; 65536];
    'outer: loop {
        let n = match rd.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        dec.push(&buf[..n]);
        loop {
            let f = match dec.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => break 'outer,
            };
            match f.kind {
                Kind::Exec => {
                    let deadline = Instant::now() + Duration::from_secs(300);
                    while !hub.ready.load(Ordering::SeqCst)
                        && !hub.dead.load(Ordering::SeqCst)
                        && Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    if !hub.ready.load(Ordering::SeqCst) || hub.dead.load(Ordering::SeqCst) {
                        let e = Frame::new(
                            Kind::Error,
                            f.id,
                            b"the guest is not running (or its agent never started)".to_vec(),
                        );
                        wr.send(e.encode());
                        continue;
                    }
                    let gid = {
                        let mut g = lock(&hub.next_id);
                        *g = g.wrapping_add(1).max(1);
                        *g
                    };
                    lock(&hub.routes).insert(
                        gid,
                        Route {
                            client: wr.clone(),
                            cid: f.id,
                        },
                    );
                    mine.insert(f.id, gid);
                    lock(&gids).push(gid);
                    if !hub.to_agent(&Frame::new(Kind::Exec, gid, f.payload)) {
                        lock(&hub.routes).remove(&gid);
                        let e =
                            Frame::new(Kind::Error, f.id, b"cannot reach the guest agent".to_vec());
                        wr.send(e.encode());
                    }
                }
                Kind::Stdin | Kind::Eof | Kind::Signal | Kind::Resize => {
                    if let Some(&gid) = mine.get(&f.id) {
                        hub.to_agent(&Frame::new(f.kind, gid, f.payload));
                    }
                }
                _ => {}
            }
        }
    }
    // client gone (or cut off for not reading): kill what it still runs
    for gid in mine.values() {
        if lock(&hub.routes).remove(gid).is_some() {
            hub.to_agent(&Frame::new(Kind::Signal, *gid, 9i32.to_le_bytes().to_vec()));
        }
    }
    wr.finish();
}

/// Publish changed I/O counters in `state.json`, at most once a second.
fn save_counters(hub: Arc<Hub>) {
    let mut saved = crate::state::IoCounters::default();
    while !hub.dead.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
        let now = hub.counters.snapshot();
        if now != saved && !hub.dead.load(Ordering::SeqCst) {
            hub.save();
            saved = now;
        }
    }
}

fn serve_exec(hub: Arc<Hub>, l: UnixListener) {
    for c in l.incoming().flatten() {
        let h = hub.clone();
        std::thread::spawn(move || exec_client(h, c));
    }
}

/// console -> console.log + attached clients. Clients get the output
/// through bounded sinks: one that does not read loses output (counted),
/// never the log or the other clients.
fn console_pump(mut master: File, mut log: File, clients: Shared<Vec<Sink>>) {
    let mut buf = vec![0u8; 16384];
    loop {
        let n = match master.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // EIO while no process holds the slave: wait and retry
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = log.write_all(&buf[..n]);
        lock(&clients).retain(|c| c.send(buf[..n].to_vec()));
    }
}

fn serve_console(
    l: UnixListener,
    master: File,
    clients: Shared<Vec<Sink>>,
    dropped: Arc<AtomicU64>,
) {
    for c in l.incoming().flatten() {
        let Ok(w) = c.try_clone() else { continue };
        umlkit_sys::net::set_buffer_sizes(std::os::fd::AsFd::as_fd(&w), CONSOLE_SNDBUF, 0);
        lock(&clients).push(Sink::new(
            w,
            CONSOLE_BACKLOG,
            Overflow::Drop,
            dropped.clone(),
        ));
        let Ok(mut m) = master.try_clone() else {
            continue;
        };
        let mut c = c;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 || m.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
}

/// Listen on a unix socket only its owner can connect to: mode 0600 set
/// explicitly after bind, whatever the umask (the guest dir is 0700 too).
fn bind(path: &Path) -> Result<UnixListener, Error> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(|e| Error::io(path, "cannot listen on", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(path, "cannot chmod 0600", e))?;
    Ok(l)
}

/// Processes whose process group is `pgid` (from /proc).
pub fn group_members(pgid: u32) -> Vec<u32> {
    use umlkit_sys::procfs;
    procfs::all_pids()
        .into_iter()
        .filter(|&pid| procfs::pgrp(pid) == Some(pgid))
        .collect()
}

/// Name of the environment variable that marks every host process of a guest
/// (the kernel and whatever it forks, even helpers that leave its process
/// group with setsid, such as the kernel's SIGWINCH helper for tty consoles).
pub const MARKER_VAR: &str = "UMLKIT_GUEST";

/// The marker value of a guest: `<supervisor pid>:<guest dir>`.
pub fn marker(supervisor_pid: u32, dir: &Path) -> String {
    format!("{supervisor_pid}:{}", dir.display())
}

/// Processes carrying `MARKER_VAR=marker` in their environment.
pub fn marked_processes(marker: &str) -> Vec<u32> {
    use umlkit_sys::procfs;
    let needle = format!("{MARKER_VAR}={marker}");
    procfs::all_pids()
        .into_iter()
        .filter(|&pid| procfs::environ_has(pid, needle.as_bytes()))
        .collect()
}

/// All live host processes of a guest: its process group plus marked processes.
pub fn guest_processes(pgid: Option<u32>, marker: Option<&str>) -> Vec<u32> {
    let mut v = pgid.map(group_members).unwrap_or_default();
    if let Some(m) = marker {
        v.extend(marked_processes(m));
    }
    v.sort_unstable();
    v.dedup();
    // zombies hold no resources and cannot be killed; ignore them
    v.retain(|&p| umlkit_sys::procfs::state(p).is_some_and(|s| s != 'Z'));
    v
}

/// SIGKILL every host process of a guest until none is left (max ~5 s).
pub fn kill_all(pgid: Option<u32>, marker: Option<&str>) -> bool {
    kill_until_gone(pgid, marker, true)
}

/// [`kill_all`]; `reap` reaps the caller's exited children on the way,
/// which a thread must not do while another one waits for the kernel.
fn kill_until_gone(pgid: Option<u32>, marker: Option<&str>, reap: bool) -> bool {
    for _ in 0..250 {
        let procs = guest_processes(pgid, marker);
        if procs.is_empty() {
            return true;
        }
        if let Some(g) = pgid {
            let _ = sp::kill_group(g, sp::SIGKILL);
        }
        for p in procs {
            let _ = sp::kill(p, sp::SIGKILL);
        }
        while reap && sp::reap_any().is_some() {}
        std::thread::sleep(Duration::from_millis(20));
    }
    guest_processes(pgid, marker).is_empty()
}

/// Foreground only: the first SIGTERM/SIGINT/SIGHUP asks the kernel to
/// stop (UML cleans up and exits on SIGTERM); if it has not ended 5 s
/// later, its process group is killed. The supervisor's main thread sees
/// the kernel end and cleans up as for any stop.
fn stop_on_signal(signals: umlkit_sys::net::SignalFd, pid: u32, stop_marker: PathBuf) {
    use umlkit_sys::net::{Epoll, Interest};
    let Ok(mut ep) = Epoll::new() else { return };
    if ep.add(signals.fd(), 0, Interest::READ).is_err() {
        return;
    }
    let mut events = Vec::new();
    loop {
        if ep.wait(&mut events, -1).is_err() {
            return;
        }
        if let Some(sig) = signals.read() {
            let _ = writeln!(
                std::io::stderr(),
                "umlkit: signal {sig}: stopping the guest"
            );
            let _ = umlkit_sys::private::write_atomic(&stop_marker, b"signal");
            let _ = sp::kill_group(pid, sp::SIGTERM);
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while sp::group_exists(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = sp::kill_group(pid, sp::SIGKILL);
}

/// Run the supervisor for the guest in `dir` (its `config.json` must exist).
/// Returns the kernel's exit status as a process exit code.
pub fn run(dir: &Path, foreground: bool) -> Result<i32, Error> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::BadState(dir.to_path_buf(), "not a guest dir".into()))?
        .to_string();
    let root = dir.parent().unwrap_or(Path::new("/"));
    let paths = GuestPaths::new(root, &name);
    let text = std::fs::read_to_string(paths.config())
        .map_err(|e| Error::io(&paths.config(), "cannot read", e))?;
    let cfg: GuestConfig =
        serde_json::from_str(&text).map_err(|e| Error::BadState(paths.config(), e.to_string()))?;
    if !foreground {
        let _ = sp::setsid();
    }
    // Everything the supervisor and the kernel create (COWs, console.log,
    // the uml_dir and its mconsole socket) is private whatever the caller's
    // umask; sockets and files we make are chmod'ed explicitly as well.
    umlkit_sys::private::set_umask(0o077);
    umlkit_sys::private::private_dir(&paths.dir, true)?;
    // orphans of the kernel come back to us, so none can escape cleanup
    let _ = sp::set_child_subreaper();
    sp::ignore_sigpipe();
    let kernel = crate::find_kernel(cfg.kernel.as_deref())?;
    let uml_dir = paths.uml_dir();
    umlkit_sys::private::private_dir(&uml_dir, true)?;
    let layout = Layout {
        dir: paths.dir.clone(),
        uml_dir: uml_dir.clone(),
        agent_fd: Some(AGENT_FD),
    };
    // fresh automatic COWs at each start
    for (i, d) in cfg.disks.iter().enumerate() {
        if d.cow.is_none() && !d.readonly && !d.no_cow {
            let _ = std::fs::remove_file(crate::config::auto_cow(&paths.dir, i));
        }
    }
    let args = kernel_args(&cfg, &layout);
    let _ = std::fs::remove_file(paths.stop_marker());
    let (ours, theirs) = UnixStream::pair().map_err(|e| Error::io(dir, "socketpair", e))?;
    let mark = marker(std::process::id(), &paths.dir);
    // In the foreground, SIGTERM, SIGINT and SIGHUP to `umlkit run` stop
    // the guest and let the normal end below clean up (helpers, state).
    let stop_signals = if foreground {
        use umlkit_sys::net::{SignalFd, SIGHUP, SIGINT, SIGTERM};
        SignalFd::new(&[SIGTERM, SIGINT, SIGHUP]).ok()
    } else {
        None
    };
    let mut cmd = Command::new(&kernel);
    cmd.args(&args).env(MARKER_VAR, &mark);
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    if foreground {
        // `umlkit run` killed (a closed terminal, SIGTERM, even SIGKILL):
        // the kernel ends with it instead of running on unsupervised.
        // UML treats SIGTERM as "clean up and exit".
        sp::signal_on_parent_death(&mut cmd, sp::SIGTERM);
        sp::unblock_signals_on_spawn(&mut cmd);
    }
    sp::pass_fd(&mut cmd, theirs.as_raw_fd(), AGENT_FD);
    let log_path = paths.console_log();
    let mut pty_master = None;
    match (cfg.console, foreground) {
        (ConsoleMode::Stdio, true) => {}
        (ConsoleMode::Pty, _) | (ConsoleMode::Stdio, false) => {
            // A socketpair, not a host pty: the 6.1 kernel's fd console
            // waits for SIGIO once its host fd is full, and a pty slave
            // does not raise it when the master drains, so fast console
            // output stalled for good after a few hundred kB (issue 8.2).
            // A socket signals write space; the kernel also starts no
            // SIGWINCH helper for it.
            let (m, slave) =
                UnixStream::pair().map_err(|e| Error::io(dir, "console socketpair", e))?;
            let slave = File::from(std::os::fd::OwnedFd::from(slave));
            let c = |f: &File| f.try_clone().map_err(|e| Error::io(dir, "dup", e));
            cmd.stdin(c(&slave)?).stdout(c(&slave)?).stderr(c(&slave)?);
            pty_master = Some(File::from(std::os::fd::OwnedFd::from(m)));
        }
        (ConsoleMode::None, _) => {
            let f = umlkit_sys::private::create_private(&log_path)
                .map_err(|e| Error::io(&log_path, "cannot create", e))?;
            let g = f.try_clone().map_err(|e| Error::io(&log_path, "dup", e))?;
            cmd.stdin(Stdio::null()).stdout(f).stderr(g);
        }
    }
    let mut state = State {
        marker: Some(mark.clone()),
        name: name.clone(),
        supervisor_pid: std::process::id(),
        supervisor_start: sp::start_time(std::process::id()),
        pid: None,
        pid_start: None,
        pgid: None,
        started_unix_ms: now_ms(),
        ready_unix_ms: None,
        boots: 0,
        ended_unix_ms: None,
        ending: None,
        kernel: kernel.clone(),
        cmdline: args.clone(),
        config: cfg.clone(),
        error: None,
        io: Default::default(),
    };
    let exec_l = bind(&paths.exec_sock())?;
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            state.error = Some(format!("cannot start {}: {e}", kernel.display()));
            state.ending = Some(Ending::Crashed {
                exit_code: None,
                signal: None,
            });
            state.ended_unix_ms = Some(now_ms());
            let _ = state.save_or_record(&paths.state());
            let _ = std::fs::remove_file(paths.exec_sock());
            return Err(Error::io(&kernel, "cannot start the kernel", e));
        }
    };
    drop(cmd);
    drop(theirs);
    let pid = child.id();
    if let Some(signals) = stop_signals {
        let marker_path = paths.stop_marker();
        std::thread::spawn(move || stop_on_signal(signals, pid, marker_path));
    }
    // SIGKILL to `umlkit run` reaches the kernel through PDEATHSIG, but
    // its clone()d helpers outlive it when it dies before its exit
    // handlers ran: a guard process kills what is left of the group.
    let group_guard = if foreground {
        sp::GroupGuard::spawn(pid, Duration::from_secs(3)).ok()
    } else {
        None
    };
    state.pid = Some(pid);
    state.pid_start = sp::start_time(pid);
    state.pgid = Some(pid);
    let state_path = paths.state();
    if let Err(e) = state.save(&state_path) {
        // nobody could find or stop this kernel without its state: stop it
        kill_all(Some(pid), Some(&mark));
        let _ = child.wait();
        return Err(e);
    }
    if !foreground {
        // start-up is reported; from now on stderr is the log
        let log = paths.supervisor_log();
        match umlkit_sys::private::append_private(&log) {
            Ok(f) => {
                let _ = sp::redirect_stderr(&f);
            }
            Err(_) => {
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                    let _ = sp::redirect_stderr(&f);
                }
            }
        }
    }
    let hub = Arc::new(Hub {
        outbox: Mutex::new(Outbox {
            queue: Default::default(),
            in_flight: 0,
            closed: false,
        }),
        outbox_cv: std::sync::Condvar::new(),
        routes: Arc::new(Mutex::new(HashMap::new())),
        next_id: Mutex::new(0),
        ready: AtomicBool::new(false),
        dead: AtomicBool::new(false),
        state: Arc::new(Mutex::new(state)),
        state_path: state_path.clone(),
        marker: mark.clone(),
        failed: AtomicBool::new(false),
        counters: Counters::default(),
    });
    {
        let h = hub.clone();
        let line = ours.try_clone().map_err(|e| Error::io(dir, "dup", e))?;
        std::thread::spawn(move || agent_writer(h, line));
        let h = hub.clone();
        std::thread::spawn(move || agent_reader(h, ours));
        let h = hub.clone();
        std::thread::spawn(move || serve_exec(h, exec_l));
        let h = hub.clone();
        std::thread::spawn(move || save_counters(h));
    }
    if let Some(master) = pty_master {
        let log = umlkit_sys::private::append_private(&log_path)
            .map_err(|e| Error::io(&log_path, "cannot create", e))?;
        let clients: Shared<Vec<Sink>> = Arc::new(Mutex::new(Vec::new()));
        let l = bind(&paths.console_sock())?;
        let m2 = master.try_clone().map_err(|e| Error::io(dir, "dup", e))?;
        let c2 = clients.clone();
        let dropped = hub.counters.console_dropped.clone();
        std::thread::spawn(move || console_pump(master, log, c2));
        std::thread::spawn(move || serve_console(l, m2, clients, dropped));
    }
    let status = child.wait().map_err(|e| Error::io(&kernel, "wait", e))?;
    hub.dead.store(true, Ordering::SeqCst);
    lock(&hub.outbox).closed = true;
    hub.outbox_cv.notify_all();
    use std::os::unix::process::ExitStatusExt;
    let stop_requested = paths.stop_marker().exists();
    let ending = match (status.code(), status.signal()) {
        (Some(0), _) => Ending::Halted,
        _ if stop_requested || hub.failed.load(Ordering::SeqCst) => Ending::Killed,
        (code, signal) => Ending::Crashed {
            exit_code: code,
            signal,
        },
    };
    // helpers the kernel started (vde_plug, SIGWINCH helper...) must not outlive it
    kill_all(Some(pid), Some(&mark));
    if let Some(g) = group_guard {
        g.disarm();
    }
    // the sockets go before the ending is saved: a waiter that sees the
    // ending may start the guest again at once, and its new sockets must
    // not be removed by us
    let _ = std::fs::remove_file(paths.exec_sock());
    let _ = std::fs::remove_file(paths.console_sock());
    let _ = std::fs::remove_file(paths.stop_marker());
    {
        let mut st = lock(&hub.state);
        st.ending = Some(ending);
        st.ended_unix_ms = Some(now_ms());
    }
    hub.save();
    // give console_pump a moment to flush the last output
    std::thread::sleep(Duration::from_millis(50));
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

//! The guest store: a state root holding one directory per guest, and the
//! operations on guests (start, wait_ready, exec, halt, kill, list, cleanup).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use umlkit_sys::process as sp;

use crate::config::{valid_name, DiskSpec, GuestConfig, Transport, MIN_MEM_MB};
use crate::exec::{ExecOutput, ExecRequest, ExecSession};
use crate::state::{now_ms, Ending, GuestPaths, State};
use crate::supervisor::{guest_processes, kill_all};
use crate::Error;

/// What `start` returns.
#[derive(Debug, Clone, Serialize)]
pub struct GuestInfo {
    pub name: String,
    pub dir: PathBuf,
    pub pid: u32,
    /// Start time of `pid` (clock ticks since boot), as the supervisor recorded it.
    pub pid_start: Option<u64>,
    pub pgid: u32,
    pub supervisor_pid: u32,
    /// Start time of the supervisor.
    pub supervisor_start: Option<u64>,
    pub mconsole: PathBuf,
    pub exec_sock: PathBuf,
    pub console_sock: PathBuf,
}

/// Life-cycle phase shown by `ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The kernel runs, the agent has not said hello yet.
    Booting,
    /// The agent is up: exec works.
    Running,
    Halted,
    Killed,
    Crashed,
    /// The state says running but neither supervisor nor kernel exists
    /// (e.g. both were SIGKILLed, or the host rebooted).
    Dead,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).ok();
        write!(f, "{}", s.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

/// One line of `ps`.
#[derive(Debug, Clone, Serialize)]
pub struct GuestStatus {
    pub name: String,
    pub phase: Phase,
    pub pid: Option<u32>,
    pub pgid: Option<u32>,
    pub supervisor_pid: u32,
    pub uptime_s: Option<f64>,
    /// Boot time: start to agent hello.
    pub boot_s: Option<f64>,
    /// VmRSS of the kernel's processes (KiB), each address space once.
    pub rss_kb: u64,
    /// Pss of the kernel's processes (KiB), each address space once.
    pub pss_kb: u64,
    pub processes: Vec<u32>,
    /// Host memory backing the guest's RAM: allocated size of the kernel's
    /// (deleted) physical-memory file in /dev/shm or $TMPDIR (KiB). Also
    /// counted in RSS/PSS for the pages the kernel has touched.
    pub physmem_kb: u64,
    pub disks: Vec<String>,
    pub interfaces: Vec<String>,
    pub console: Option<PathBuf>,
    pub ending: Option<Ending>,
    pub mem_mb: u32,
    /// Supervisor I/O counters (slow clients, agent-line garbage).
    pub io: crate::state::IoCounters,
}

impl GuestStatus {
    pub fn alive(&self) -> bool {
        matches!(self.phase, Phase::Booting | Phase::Running)
    }
}

/// Files a UML kernel keeps in its instance dir `<uml_dir>/<umid>/`.
const UML_INSTANCE_FILES: &[&str] = &["pid", "mconsole"];

/// Instance dirs `<uml_dir>/<umid>/` left behind by kernels that died without
/// cleaning up (a panic, SIGKILL): their `pid` file names no live process,
/// or there is no pid file and the mconsole socket refuses connections.
/// Only directories that hold nothing but what UML puts there (`pid`,
/// `mconsole`) are candidates; symlinks are never followed, and a pid file
/// naming any live process keeps the dir (it may be a kernel, or not ours
/// to judge).
pub fn stale_uml_dirs(uml_dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(uml_dir) else {
        return v;
    };
    for e in rd.flatten() {
        let d = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(inner) = std::fs::read_dir(&d) else {
            continue;
        };
        let names: Vec<String> = inner
            .flatten()
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .collect();
        if names.is_empty()
            || names
                .iter()
                .any(|n| !UML_INSTANCE_FILES.contains(&n.as_str()))
        {
            continue;
        }
        let pid_file = d.join("pid");
        let pid = match pid_file.symlink_metadata() {
            Ok(m) if m.is_file() => match std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                Some(p) => Some(p),
                None => continue, // not a pid UML wrote
            },
            Ok(_) => continue,
            Err(_) => None,
        };
        let stale = match pid {
            Some(p) => !sp::process_exists(p),
            None => {
                let sock = d.join("mconsole");
                sock.symlink_metadata()
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                    && std::os::unix::net::UnixDatagram::unbound()
                        .and_then(|s| s.connect(&sock))
                        .is_err()
            }
        };
        if stale {
            v.push(d);
        }
    }
    v.sort();
    v
}

trait NoneOrEmpty {
    fn is_none_or_empty(&self) -> bool;
}
impl NoneOrEmpty for Option<Vec<u32>> {
    fn is_none_or_empty(&self) -> bool {
        self.as_ref().map(|v| v.is_empty()).unwrap_or(true)
    }
}

/// A directory of guests.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    supervisor: Option<PathBuf>,
}

/// Allocated KiB of the kernel's physical-memory file (an unlinked file under
/// /dev/shm or $TMPDIR held open by the main process).
fn physmem_kb(pid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let mut best = 0;
    for e in rd.flatten() {
        let Ok(t) = std::fs::read_link(e.path()) else {
            continue;
        };
        let t = t.to_string_lossy();
        if t.ends_with(" (deleted)") && t.contains("/#") {
            if let Ok(md) = std::fs::metadata(e.path()) {
                best = best.max(md.blocks() / 2);
            }
        }
    }
    best
}

/// Host memory of a set of processes, each address space counted once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostMemory {
    /// Sum of VmRSS (KiB) over the distinct address spaces.
    pub rss_kb: u64,
    /// Sum of Pss (KiB) over the distinct address spaces.
    pub pss_kb: u64,
}

/// RSS and PSS of `pids`, counting every address space once. UML's kernel
/// process and its helpers (`clone(CLONE_VM)`: separate pids, one address
/// space) each report the whole shared memory in `smaps_rollup`; summing
/// them counted an idle guest about three times over.
pub fn host_memory(pids: &[u32]) -> HostMemory {
    let mut m = HostMemory::default();
    for p in sp::distinct_address_spaces(pids) {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/status")) {
            m.rss_kb += kb_field(&s, "VmRSS:");
        }
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
            m.pss_kb += kb_field(&s, "Pss:");
        }
    }
    m
}

fn kb_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Store {
    /// The default state root: `$UMLKIT_STATE_DIR`, else
    /// `$XDG_RUNTIME_DIR/umlkit`, else `$HOME/.umlkit/run`, else
    /// `/tmp/umlkit-run-UID`.
    pub fn default_root() -> PathBuf {
        if let Some(d) = std::env::var_os("UMLKIT_STATE_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d).join("umlkit");
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home).join(".umlkit/run"),
            // per user, and checked like any root (owner, mode, no symlink)
            None => PathBuf::from(format!("/tmp/umlkit-run-{}", umlkit_sys::private::euid())),
        }
    }

    /// Open (creating it) the state root.
    pub fn open(state_root: Option<PathBuf>) -> Result<Store, Error> {
        let root = state_root.unwrap_or_else(Store::default_root);
        let root = std::path::absolute(&root).unwrap_or(root);
        umlkit_sys::private::private_dir(&root, false)?;
        Ok(Store {
            root,
            supervisor: None,
        })
    }

    /// A store at `state_root` that creates nothing yet: the root (0700)
    /// appears with the first guest. An existing root is checked as in
    /// [`Store::open`]. For callers that share a root between concurrent
    /// processes (labs) and must not create-then-remove it.
    pub fn at(state_root: PathBuf) -> Result<Store, Error> {
        let root = std::path::absolute(&state_root).unwrap_or(state_root);
        if root.symlink_metadata().is_ok() {
            umlkit_sys::private::private_dir(&root, false)?;
        }
        Ok(Store {
            root,
            supervisor: None,
        })
    }

    /// Use this `umlkit` executable to run supervisors (`EXE supervise DIR`).
    pub fn with_supervisor_exe(mut self, exe: PathBuf) -> Store {
        self.supervisor = Some(exe);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn paths(&self, name: &str) -> GuestPaths {
        GuestPaths::new(&self.root, name)
    }

    fn supervisor_exe(&self) -> Result<PathBuf, Error> {
        if let Some(p) = &self.supervisor {
            return Ok(p.clone());
        }
        if let Some(p) = std::env::var_os("UMLKIT_BIN") {
            return Ok(PathBuf::from(p));
        }
        if let Ok(exe) = std::env::current_exe() {
            if exe.file_name().is_some_and(|n| n == "umlkit") {
                return Ok(exe);
            }
            // test binaries live in target/<profile>/deps
            for d in exe.ancestors().skip(1).take(2) {
                let c = d.join("umlkit");
                if c.is_file() {
                    return Ok(c);
                }
            }
        }
        crate::which("umlkit").ok_or(Error::NoSupervisor)
    }

    /// Validate `cfg`, make its paths absolute, resolve the kernel, refuse a
    /// running duplicate, and write the guest dir with `config.json`.
    pub fn prepare(&self, cfg: &GuestConfig) -> Result<(GuestPaths, GuestConfig), Error> {
        if !valid_name(&cfg.name) {
            return Err(Error::BadName(cfg.name.clone()));
        }
        let paths = self.paths(&cfg.name);
        paths.check_socket_paths()?;
        if cfg.mem_mb < MIN_MEM_MB {
            return Err(Error::MemTooSmall(cfg.mem_mb));
        }
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut c = cfg.clone();
        c.kernel = Some(crate::find_kernel(cfg.kernel.as_deref())?);
        for d in &mut c.disks {
            d.image = abs(&d.image);
            if !d.image.is_file() {
                return Err(Error::Missing {
                    what: "disk image",
                    path: d.image.clone(),
                });
            }
            d.cow = d.cow.as_deref().map(abs);
        }
        for n in &mut c.nets {
            let (what, p) = match &mut n.transport {
                Transport::Daemon { ctl } => ("switch control socket", ctl),
                Transport::Vde { dir, .. } => ("VDE switch directory", dir),
                Transport::Vector { sock, .. } => {
                    ("vector socket (is the switch started with --vector?)", sock)
                }
            };
            *p = abs(p);
            if p.symlink_metadata().is_err() {
                return Err(Error::Missing {
                    what,
                    path: p.clone(),
                });
            }
        }
        if let Some(h) = &mut c.hostfs {
            *h = abs(h);
            if !h.is_dir() {
                return Err(Error::Missing {
                    what: "hostfs directory",
                    path: h.clone(),
                });
            }
        }
        if paths.dir.exists() {
            if let Ok(st) = self.status(&cfg.name) {
                if st.alive() {
                    return Err(Error::AlreadyRunning(cfg.name.clone()));
                }
            }
            self.remove_dir(&paths)?;
        }
        umlkit_sys::private::private_dir(&paths.dir, true)?;
        let text = serde_json::to_string_pretty(&c).expect("config serializes");
        umlkit_sys::private::write_atomic(&paths.config(), text.as_bytes())
            .map_err(|e| Error::io(&paths.config(), "cannot write", e))?;
        Ok((paths, c))
    }

    /// Start a guest detached, under its own supervisor. Returns once the
    /// kernel process runs (use [`Store::wait_ready`] for exec).
    pub fn start(&self, cfg: &GuestConfig) -> Result<GuestInfo, Error> {
        let exe = self.supervisor_exe()?;
        let (paths, _) = self.prepare(cfg)?;
        // Until the kernel runs and its state is saved, the supervisor's
        // stderr is a pipe to us, so a start-up failure reaches the user even
        // when the state dir is full; then it moves to supervisor.log.
        let mut cmd = Command::new(&exe);
        cmd.arg("supervise")
            .arg(&paths.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        sp::setsid_on_spawn(&mut cmd, false);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(&exe, "cannot start the supervisor", e))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let result = loop {
            if let Ok(st) = State::load(&paths.state()) {
                if let Some(err) = st.error {
                    break Err(Error::NotRunning(cfg.name.clone(), err));
                }
                if let (Some(pid), Some(pgid)) = (st.pid, st.pgid) {
                    break Ok(GuestInfo {
                        name: cfg.name.clone(),
                        dir: paths.dir.clone(),
                        pid,
                        pid_start: st.pid_start,
                        pgid,
                        supervisor_pid: st.supervisor_pid,
                        supervisor_start: st.supervisor_start,
                        mconsole: paths.mconsole(),
                        exec_sock: paths.exec_sock(),
                        console_sock: paths.console_sock(),
                    });
                }
            }
            if let Ok(Some(st)) = child.try_wait() {
                let mut log = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut log);
                }
                if log.trim().is_empty() {
                    log = std::fs::read_to_string(paths.supervisor_log()).unwrap_or_default();
                }
                break Err(Error::NotRunning(
                    cfg.name.clone(),
                    format!("the supervisor exited ({st}): {}", log.trim()),
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break Err(Error::Timeout(
                    cfg.name.clone(),
                    "the supervisor to start the kernel".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // reap the supervisor whenever it ends (we may be a long-lived process)
        std::thread::spawn(move || child.wait());
        result
    }

    /// Run a guest in the foreground of this process (console on stdio unless
    /// `cfg.console` says otherwise); returns the kernel's exit code.
    pub fn run_foreground(&self, cfg: &GuestConfig) -> Result<i32, Error> {
        let (paths, _) = self.prepare(cfg)?;
        crate::supervisor::run(&paths.dir, true)
    }

    fn load(&self, name: &str) -> Result<(GuestPaths, State), Error> {
        if !valid_name(name) {
            return Err(Error::BadName(name.to_string()));
        }
        let paths = self.paths(name);
        if !paths.dir.is_dir() {
            return Err(Error::Unknown(name.to_string()));
        }
        match State::load(&paths.state()) {
            Ok(st) => Ok((paths, st)),
            Err(e) => {
                if paths.config().exists() && !paths.state().exists() {
                    Err(Error::NotRunning(
                        name.to_string(),
                        "never started (no state.json)".into(),
                    ))
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Status of one guest.
    pub fn status(&self, name: &str) -> Result<GuestStatus, Error> {
        let (paths, st) = self.load(name)?;
        Ok(self.status_of(&paths, &st))
    }

    fn status_of(&self, paths: &GuestPaths, st: &State) -> GuestStatus {
        // pid and start time: a dead guest's reused pid is not the guest
        let phase = phase_of(st);
        let alive = matches!(phase, Phase::Booting | Phase::Running);
        let processes = if alive {
            guest_processes(st.live_pgid(), st.marker.as_deref())
        } else {
            vec![]
        };
        let HostMemory {
            rss_kb: rss,
            pss_kb: pss,
        } = host_memory(&processes);
        let physmem_kb = match (alive, st.pid) {
            (true, Some(pid)) => physmem_kb(pid),
            _ => 0,
        };
        let now = now_ms();
        let end = st.ended_unix_ms.unwrap_or(now);
        let disks = st
            .cmdline
            .iter()
            .filter(|a| a.starts_with("ubd"))
            .cloned()
            .collect();
        let interfaces = st
            .cmdline
            .iter()
            .filter(|a| a.starts_with("eth"))
            .cloned()
            .collect();
        GuestStatus {
            name: st.name.clone(),
            phase,
            pid: st.pid,
            pgid: st.pgid,
            supervisor_pid: st.supervisor_pid,
            uptime_s: st
                .pid
                .map(|_| end.saturating_sub(st.started_unix_ms) as f64 / 1000.0),
            boot_s: st
                .ready_unix_ms
                .map(|r| r.saturating_sub(st.started_unix_ms) as f64 / 1000.0),
            rss_kb: rss,
            pss_kb: pss,
            processes,
            physmem_kb,
            disks,
            interfaces,
            console: (alive && paths.console_sock().exists()).then(|| paths.console_sock()),
            ending: st.ending.clone(),
            mem_mb: st.config.mem_mb,
            io: st.io.clone(),
        }
    }

    /// All guests of this store, sorted by name (dead ones included).
    pub fn list(&self) -> Result<Vec<GuestStatus>, Error> {
        let mut v = Vec::new();
        let rd =
            std::fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, "cannot list", e))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !valid_name(&name) {
                continue;
            }
            let paths = self.paths(&name);
            if let Ok(st) = State::load(&paths.state()) {
                v.push(self.status_of(&paths, &st));
            }
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// Wait until the guest's exec agent is up (the supervisor records it
    /// in state.json), the guest ends, or `timeout` passes. Blocks on the
    /// guest folder (inotify: the supervisor's atomic state writes) and on
    /// the supervisor's and kernel's pidfds (a death that wrote no state),
    /// re-reading the state only when one of them fires.
    pub fn wait_ready(&self, name: &str, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        // watch first, then read: a change between the two still wakes us
        let watch = if valid_name(name) {
            umlkit_sys::watch::DirWatch::new(&self.paths(name).dir, &["state.json"]).ok()
        } else {
            None
        };
        // pidfds of the processes named by the state (with their start
        // time checked after opening, so a reused pid is never watched)
        let mut pidfds: Vec<(umlkit_sys::process::ProcessId, std::os::fd::OwnedFd)> = Vec::new();
        loop {
            let (paths, st) = self.load(name)?;
            // the supervisor could not start the kernel or record its
            // state (a full disk): say so at once, naming the file
            if let Some(err) = st.error {
                return Err(Error::NotRunning(name.to_string(), err));
            }
            match phase_of(&st) {
                Phase::Running => return Ok(()),
                Phase::Booting => {}
                _ => {
                    let log = std::fs::read_to_string(paths.console_log()).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    let ending = st.ending.unwrap_or(Ending::Crashed {
                        exit_code: None,
                        signal: None,
                    });
                    // the reason first: a kernel panic's line comes before
                    // its stack trace, which fills the last lines
                    let why: String = boot_failure_reasons(&log)
                        .into_iter()
                        .filter(|l| !tail.contains(l))
                        .map(|l| format!("{} ... ", l.trim()))
                        .collect();
                    let extra = if tail.is_empty() {
                        String::new()
                    } else {
                        format!("; console: {why}{}", tail.join(" | "))
                    };
                    return Err(Error::Ended(name.to_string(), ending, extra));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(name.to_string(), "the guest agent".into()));
            }
            let Some(watch) = &watch else {
                // no inotify here (or no instances left): look again soon
                std::thread::sleep(left.min(Duration::from_millis(10)));
                continue;
            };
            // a process that exited stays readable: watch live ones only
            pidfds.retain(|(id, _)| id.alive());
            for id in std::iter::once(st.supervisor_id()).chain(st.kernel_id()) {
                if pidfds.iter().any(|(p, _)| p.pid == id.pid) {
                    continue;
                }
                if let Ok(fd) = umlkit_sys::process::pidfd_open(id.pid) {
                    if id.alive() {
                        pidfds.push((id, fd));
                    }
                }
            }
            let fds: Vec<&std::os::fd::OwnedFd> = pidfds.iter().map(|(_, fd)| fd).collect();
            if watch.wait(&fds, left).is_err() {
                std::thread::sleep(left.min(Duration::from_millis(10)));
            }
        }
    }

    /// [`Store::start`], then [`Store::wait_ready`]; a kernel that died
    /// before init (see [`panic_before_init`]: nothing of the guest ran) is
    /// started once more, after `note` was told why.
    pub fn start_ready(
        &self,
        cfg: &GuestConfig,
        timeout: Duration,
        note: &mut dyn FnMut(&str),
    ) -> Result<GuestInfo, Error> {
        let info = self.start(cfg)?;
        match self.wait_ready(&cfg.name, timeout) {
            Ok(()) => Ok(info),
            Err(e @ Error::Ended(..)) => {
                let log = std::fs::read_to_string(self.paths(&cfg.name).console_log())
                    .unwrap_or_default();
                let Some(cause) = panic_before_init(&log) else {
                    return Err(e);
                };
                note(&booting_again(&cfg.name, &cause));
                let info = self.start(cfg)?;
                self.wait_ready(&cfg.name, timeout)?;
                Ok(info)
            }
            Err(e) => Err(e),
        }
    }

    /// Run a command in the guest and collect its output and exit code.
    pub fn exec<S: AsRef<str>>(
        &self,
        name: &str,
        argv: &[S],
        timeout: Duration,
    ) -> Result<ExecOutput, Error> {
        let (paths, _) = self.load(name)?;
        let argv: Vec<String> = argv.iter().map(|s| s.as_ref().to_string()).collect();
        crate::exec::run(name, &paths.exec_sock(), &argv, timeout)
    }

    /// Start an interactive/streaming exec.
    pub fn exec_session(&self, name: &str, req: &ExecRequest) -> Result<ExecSession, Error> {
        let (paths, _) = self.load(name)?;
        ExecSession::start(name, &paths.exec_sock(), req)
    }

    /// Send one mconsole command; an `ERR` reply becomes an error.
    pub fn mconsole(&self, name: &str, cmd: &str) -> Result<mconsole::Response, Error> {
        let (paths, _) = self.load(name)?;
        let r = mconsole::send(&paths.mconsole(), cmd, Duration::from_secs(10))
            .map_err(|e| Error::Mconsole(name.to_string(), e))?;
        if !r.ok() {
            return Err(Error::MconsoleErr(
                name.to_string(),
                cmd.to_string(),
                r.text,
            ));
        }
        Ok(r)
    }

    /// Wait until the guest has ended (state written, processes gone).
    fn wait_ended(&self, name: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(s) = self.status(name) {
                let st = State::load(&self.paths(name).state()).ok();
                let left = st.map(|st| guest_processes(st.live_pgid(), st.marker.as_deref()));
                if !s.alive() && left.is_none_or_empty() {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop a guest: mconsole `cad` (the default image's init powers off
    /// cleanly), then mconsole `halt`, then SIGTERM, then SIGKILL, each after
    /// `timeout`. No host process is left behind. Returns how it ended.
    pub fn halt(&self, name: &str, timeout: Duration) -> Result<Ending, Error> {
        let s = self.status(name)?;
        if s.alive() {
            let (paths, st) = self.load(name)?;
            let steps: [&dyn Fn(); 2] = [
                &|| {
                    let _ = mconsole::send(&paths.mconsole(), "cad", Duration::from_secs(2));
                },
                &|| {
                    let _ = mconsole::send(&paths.mconsole(), "halt", Duration::from_secs(2));
                },
            ];
            let mut done = false;
            for step in steps {
                step();
                if self.wait_ended(name, timeout) {
                    done = true;
                    break;
                }
            }
            if !done {
                let _ = umlkit_sys::private::create_private(&paths.stop_marker());
                if let Some(g) = st.live_pgid() {
                    let _ = sp::kill_group(g, sp::SIGTERM);
                }
                if !self.wait_ended(name, timeout) {
                    self.force_kill(&paths, &st);
                }
            }
        }
        let s = self.status(name)?;
        Ok(s.ending.unwrap_or(Ending::Crashed {
            exit_code: None,
            signal: None,
        }))
    }

    fn force_kill(&self, paths: &GuestPaths, st: &State) {
        let _ = umlkit_sys::private::create_private(&paths.stop_marker());
        // The group only while its leader (the kernel) is the one we started;
        // the marker finds the rest without trusting any number.
        let pgid = st.live_pgid();
        if let Some(g) = pgid {
            let _ = sp::kill_group(g, sp::SIGKILL);
        }
        if self.wait_ended(&st.name, Duration::from_secs(3)) {
            return;
        }
        // the supervisor is gone or stuck: finish its job
        let _ = st.supervisor_id().signal(sp::SIGKILL);
        kill_all(pgid, st.marker.as_deref());
        let _ = State::update(&paths.state(), |cur| {
            if cur.ending.is_none() {
                cur.ending = Some(Ending::Killed);
                cur.ended_unix_ms = Some(now_ms());
            }
        });
    }

    /// SIGKILL the guest's processes at once.
    pub fn kill(&self, name: &str) -> Result<(), Error> {
        let (paths, st) = self.load(name)?;
        if self.status_of(&paths, &st).alive() {
            self.force_kill(&paths, &st);
        }
        Ok(())
    }

    /// Reboot through mconsole (the kernel re-executes itself in place) and
    /// wait at most `timeout` until the agent is back.
    pub fn reboot(&self, name: &str, timeout: Duration) -> Result<(), Error> {
        let (paths, st) = self.load(name)?;
        self.mconsole(name, "reboot")?;
        let deadline = Instant::now() + timeout;
        loop {
            let cur = State::load(&paths.state())?;
            if cur.boots > st.boots {
                return Ok(());
            }
            if !self.status_of(&paths, &cur).alive() {
                return Err(Error::NotRunning(
                    name.to_string(),
                    "it ended during the reboot".into(),
                ));
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(
                    name.to_string(),
                    "the agent after the reboot".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Remove a stopped guest's state dir (COWs, logs, stale uml_dir).
    pub fn cleanup(&self, name: &str) -> Result<(), Error> {
        let (paths, st) = match self.load(name) {
            Ok(x) => x,
            Err(Error::NotRunning(..)) | Err(Error::BadState(..)) => {
                return self.remove_dir(&self.paths(name));
            }
            Err(e) => return Err(e),
        };
        if self.status_of(&paths, &st).alive() {
            return Err(Error::StillRunning(name.to_string()));
        }
        // a dead guest (supervisor lost) may have left helpers behind: found
        // by marker (its group id may belong to someone else by now)
        kill_all(st.live_pgid(), st.marker.as_deref());
        self.remove_dir(&paths)
    }

    fn remove_dir(&self, paths: &GuestPaths) -> Result<(), Error> {
        std::fs::remove_dir_all(&paths.dir).map_err(|e| Error::io(&paths.dir, "cannot remove", e))
    }

    /// Remove every guest that is not running (halted, killed, crashed, dead);
    /// returns their names.
    pub fn prune(&self) -> Result<Vec<String>, Error> {
        let mut gone = Vec::new();
        for g in self.list()? {
            if !g.alive() {
                self.cleanup(&g.name)?;
                gone.push(g.name);
            }
        }
        Ok(gone)
    }

    /// Hot-plug a disk on the first free ubd slot (1..15); returns `ubdN`.
    /// Without an explicit COW, an automatic one is made in the guest dir.
    pub fn disk_add(&self, name: &str, disk: &DiskSpec) -> Result<String, Error> {
        let (paths, _) = self.load(name)?;
        let image = std::path::absolute(&disk.image).unwrap_or(disk.image.clone());
        if !image.is_file() {
            return Err(Error::Missing {
                what: "disk image",
                path: image,
            });
        }
        for n in 1..16 {
            let r = self.mconsole(name, &format!("config ubd{n}"))?;
            if !r.text.is_empty() {
                continue;
            }
            let spec = if disk.readonly {
                format!("ubd{n}r={}", image.display())
            } else if disk.no_cow {
                format!("ubd{n}={}", image.display())
            } else {
                let cow = disk
                    .cow
                    .as_deref()
                    .map(|c| std::path::absolute(c).unwrap_or(c.to_path_buf()))
                    .unwrap_or_else(|| paths.dir.join(format!("hot-ubd{n}.cow")));
                let _ = std::fs::remove_file(paths.dir.join(format!("hot-ubd{n}.cow")));
                format!("ubd{n}={},{}", cow.display(), image.display())
            };
            self.mconsole(name, &format!("config {spec}"))?;
            return Ok(format!("ubd{n}"));
        }
        Err(Error::MconsoleErr(
            name.to_string(),
            "config ubd".into(),
            "no free ubd slot".into(),
        ))
    }

    /// Hot-unplug `ubdN` (or `ubdX` with a letter).
    pub fn disk_remove(&self, name: &str, dev: &str) -> Result<(), Error> {
        let n = dev.strip_prefix("ubd").unwrap_or(dev);
        let n = match n.parse::<u32>() {
            Ok(v) => v,
            Err(_) if n.len() == 1 && n.as_bytes()[0].is_ascii_lowercase() => {
                u32::from(n.as_bytes()[0] - b'a')
            }
            Err(_) => {
                return Err(Error::MconsoleErr(
                    name.into(),
                    format!("remove {dev}"),
                    "expected ubdN or ubdX".into(),
                ))
            }
        };
        self.mconsole(name, &format!("remove ubd{n}")).map(|_| ())
    }
}

/// The phase a state file describes, with its processes checked by pid and
/// start time (a dead guest's reused pid is not the guest).
fn phase_of(st: &State) -> Phase {
    let sup_alive = st.supervisor_id().alive();
    let kern_alive = st.kernel_id().is_some_and(|k| k.alive());
    match &st.ending {
        Some(Ending::Halted) => Phase::Halted,
        Some(Ending::Killed) => Phase::Killed,
        Some(Ending::Crashed { .. }) => Phase::Crashed,
        None if kern_alive || sup_alive => {
            if st.ready_unix_ms.is_some() {
                Phase::Running
            } else {
                Phase::Booting
            }
        }
        None => Phase::Dead,
    }
}

#[cfg(test)]
mod wait_ready_tests {
    use super::*;
    use std::process::{Child, Command};

    /// A stand-in supervisor and kernel (`sleep`), killed on drop.
    struct Proc(Child);
    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn sleeper() -> Proc {
        Proc(Command::new("sleep").arg("60").spawn().unwrap())
    }

    /// A guest folder whose state names `sup` as supervisor and kernel,
    /// booting (agent not up yet), with a process marker as real guests have.
    fn booting(root: &Path, name: &str, sup: &Proc) -> (Store, PathBuf) {
        let store = Store::at(root.join("g")).unwrap();
        let dir = store.paths(name).dir;
        umlkit_sys::private::private_dir(&root.join("g"), true).unwrap();
        umlkit_sys::private::private_dir(&dir, true).unwrap();
        let pid = sup.0.id();
        let st = State {
            name: name.into(),
            supervisor_pid: pid,
            supervisor_start: umlkit_sys::process::start_time(pid),
            pid: Some(pid),
            pid_start: umlkit_sys::process::start_time(pid),
            pgid: umlkit_sys::process::getpgid(pid).ok(),
            started_unix_ms: now_ms(),
            ready_unix_ms: None,
            boots: 0,
            ended_unix_ms: None,
            ending: None,
            kernel: "/usr/bin/linux.uml".into(),
            cmdline: vec![],
            config: GuestConfig::new(name),
            error: None,
            marker: Some(format!("wait-ready-test-{pid}")),
            io: Default::default(),
        };
        let state = store.paths(name).state();
        st.save(&state).unwrap();
        (store, state)
    }

    /// CPU time (user + system, ms) of the calling thread.
    fn thread_cpu_ms() -> u64 {
        let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after = &s[s.rfind(')').unwrap() + 2..];
        let f: Vec<u64> = after
            .split(' ')
            .skip(11)
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        (f[0] + f[1]) * 10 // USER_HZ is 100 on Linux
    }

    /// Regression (issue 11): waiting for a booting guest re-read its state
    /// and scanned all of /proc every 10 ms. Now the waiter sleeps until
    /// the supervisor writes the state or a process exits.
    #[test]
    fn wait_ready_does_not_spin_while_a_guest_boots() {
        let tmp = tempfile::tempdir().unwrap();
        let sup = sleeper();
        let (store, _) = booting(tmp.path(), "w1", &sup);
        let c0 = thread_cpu_ms();
        let t = Instant::now();
        let e = store.wait_ready("w1", Duration::from_secs(2)).unwrap_err();
        let (cpu, took) = (thread_cpu_ms() - c0, t.elapsed());
        assert!(matches!(e, Error::Timeout(..)), "{e}");
        assert!(took >= Duration::from_secs(2), "{took:?}");
        assert!(cpu <= 60, "waiting 2 s took {cpu} ms of CPU");
    }

    /// The supervisor's state write (agent up) wakes the waiter at once.
    #[test]
    fn wait_ready_wakes_on_the_supervisors_state_write() {
        let tmp = tempfile::tempdir().unwrap();
        let sup = sleeper();
        let (store, state) = booting(tmp.path(), "w2", &sup);
        std::thread::scope(|sc| {
            let w = sc.spawn(|| {
                let t = Instant::now();
                (store.wait_ready("w2", Duration::from_secs(60)), t.elapsed())
            });
            State::update(&state, |s| s.ready_unix_ms = Some(now_ms())).unwrap();
            let (r, took) = w.join().unwrap();
            r.unwrap();
            assert!(took < Duration::from_secs(60), "{took:?}");
        });
    }

    /// A supervisor killed before it could record anything ends the wait
    /// (its pidfd fires), long before the timeout.
    #[test]
    fn wait_ready_ends_when_the_supervisor_dies_silently() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sup = sleeper();
        let (store, _) = booting(tmp.path(), "w3", &sup);
        std::thread::scope(|sc| {
            let w = sc.spawn(|| {
                let t = Instant::now();
                (store.wait_ready("w3", Duration::from_secs(60)), t.elapsed())
            });
            sup.0.kill().unwrap();
            sup.0.wait().unwrap();
            let (r, took) = w.join().unwrap();
            let e = r.unwrap_err();
            assert!(matches!(e, Error::Ended(..)), "{e}");
            assert!(took < Duration::from_secs(30), "{took:?}");
        });
    }
}

/// When the kernel panicked before it started init (its console has a
/// panic and not the kernel's "Run /sbin/init as init process" line): the
/// line that says why, the cause before the panic line when there is one.
/// Nothing of the guest ran then, so booting it again is safe.
pub fn panic_before_init(log: &str) -> Option<String> {
    if !log.contains("Kernel panic") || log.contains(" as init process") {
        return None;
    }
    let reasons = boot_failure_reasons(log);
    let panic = reasons.iter().position(|l| l.contains("Kernel panic"))?;
    let cause = reasons[..panic]
        .iter()
        .rev()
        .find(|l| l.contains("VFS: Cannot") || l.contains("Failed") || l.contains("error -"))
        .unwrap_or(&reasons[panic]);
    Some(cause.trim().to_string())
}

/// What is said when a guest whose kernel died before init is booted again.
pub fn booting_again(name: &str, cause: &str) -> String {
    format!("{name}: its kernel stopped before init ({cause}); booting it again")
}

/// The console lines that say why a boot failed, in order, at most six:
/// the disk driver's and the filesystem's complaints (a COW whose backing
/// file changed, a lock held by another guest, an unreadable superblock)
/// come before the kernel's panic line, which alone says too little.
fn boot_failure_reasons(log: &str) -> Vec<&str> {
    const KEYS: [&str; 12] = [
        "Kernel panic",
        "VFS: Cannot",
        "VFS: Unable",
        "Failed to",
        "F_SETLK failed",
        "mismatch",
        "Couldn't ",
        "EXT4-fs (ubd",
        "I/O error",
        "No filesystem could mount root",
        "Out of memory",
        "ubd",
    ];
    let mut out: Vec<&str> = Vec::new();
    for l in log.lines() {
        // the partition list a failed root mount prints ("6200  524288 ubda")
        let partition = l.len() > 4 && l.as_bytes()[..4].iter().all(u8::is_ascii_hexdigit);
        let noise =
            partition || l.starts_with("Kernel command line") || l.contains("mounted filesystem");
        if !noise && KEYS.iter().any(|k| l.contains(k)) && !out.contains(&l) {
            out.push(l);
        }
    }
    // the last six: the cause is near the end
    let n = out.len().saturating_sub(6);
    out.split_off(n)
}

#[cfg(test)]
mod tests {
    use super::{boot_failure_reasons, panic_before_init};

    #[test]
    fn boot_failure_reasons_name_the_disk_before_the_panic() {
        let log = "Kernel command line: mem=64M ubd0=/s/a.cow,/i/base.img root=/dev/ubda\n\
                   VFS: Disk quotas dquot_6.6.0\n\
                   Backing file mismatch - mtime mismatch (1 vs 2) of COW header vs backing file\n\
                   Failed to open '/s/a.cow', errno = 22\n\
                   VFS: Cannot open root device \"ubda\" or unknown-block(98,0): error -22\n\
                   Please append a correct \"root=\" boot option\n\
                   Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(98,0)\n\
                   EXT4-fs (ubda): mounted filesystem without journal.\n";
        let r = boot_failure_reasons(log);
        assert_eq!(r.len(), 4, "{r:?}");
        assert!(r[0].starts_with("Backing file mismatch"), "{r:?}");
        assert!(r[1].starts_with("Failed to open"), "{r:?}");
        assert!(r[3].starts_with("Kernel panic"), "{r:?}");
        assert_eq!(
            panic_before_init(log).as_deref(),
            Some("VFS: Cannot open root device \"ubda\" or unknown-block(98,0): error -22")
        );
    }

    #[test]
    fn a_panic_after_init_started_is_not_before_init() {
        let log = "Run /sbin/init as init process\n\
                   Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n";
        assert_eq!(panic_before_init(log), None);
        assert_eq!(
            panic_before_init("VFS: Mounted root (ext4 filesystem)\n"),
            None
        );
        let bare = "Kernel panic - not syncing: Out of memory and no killable processes...\n";
        assert_eq!(
            panic_before_init(bare).as_deref(),
            Some("Kernel panic - not syncing: Out of memory and no killable processes...")
        );
    }
}

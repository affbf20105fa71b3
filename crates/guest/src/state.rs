//! Per-guest state directory layout and `state.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use umlkit_sys::process::ProcessId;

use crate::config::GuestConfig;
use crate::Error;

/// Files of one guest under the state root: `<root>/<name>/...`.
#[derive(Debug, Clone)]
pub struct GuestPaths {
    pub name: String,
    pub dir: PathBuf,
}

/// Longest AF_UNIX path (sun_path is 108 bytes with the NUL).
pub const SUN_PATH_MAX: usize = 107;

impl GuestPaths {
    pub fn new(root: &Path, name: &str) -> GuestPaths {
        GuestPaths {
            name: name.to_string(),
            dir: root.join(name),
        }
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn exec_sock(&self) -> PathBuf {
        self.dir.join("exec.sock")
    }
    pub fn console_sock(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
    /// The private `uml_dir` (short, to keep the mconsole path short).
    pub fn uml_dir(&self) -> PathBuf {
        self.dir.join("u")
    }
    pub fn mconsole(&self) -> PathBuf {
        self.uml_dir().join(&self.name).join("mconsole")
    }
    /// Marker written before a forced stop, so the ending reads "killed".
    pub fn stop_marker(&self) -> PathBuf {
        self.dir.join("stop-requested")
    }

    /// Fail when a socket path of this guest would not fit sun_path.
    pub fn check_socket_paths(&self) -> Result<(), Error> {
        for p in [self.mconsole(), self.exec_sock(), self.console_sock()] {
            if p.as_os_str().len() > SUN_PATH_MAX {
                return Err(Error::SocketPathTooLong(p));
            }
        }
        Ok(())
    }
}

/// How a guest ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Ending {
    /// The kernel exited 0 (guest poweroff, `halt`, `cad` with our init).
    Halted,
    /// Stopped by `umlkit halt` escalation or `umlkit kill`.
    Killed,
    /// Anything else: a non-zero exit (e.g. 134 after a panic) or a signal.
    Crashed {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Halted => write!(f, "halted"),
            Ending::Killed => write!(f, "killed"),
            Ending::Crashed {
                signal: Some(s), ..
            } => write!(f, "crashed(signal {s})"),
            Ending::Crashed { exit_code, .. } => {
                write!(f, "crashed(exit {})", exit_code.unwrap_or(-1))
            }
        }
    }
}

/// Contents of `state.json`, written by the supervisor (atomically).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub name: String,
    pub supervisor_pid: u32,
    /// Start time of the supervisor (clock ticks since boot, `/proc/PID/stat`
    /// field 22): with the pid it names the process even once the pid is reused.
    #[serde(default)]
    pub supervisor_start: Option<u64>,
    /// Main pid of the kernel.
    pub pid: Option<u32>,
    /// Start time of the kernel's main process (see `supervisor_start`).
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// Process group of the kernel and its helpers.
    pub pgid: Option<u32>,
    pub started_unix_ms: u64,
    /// When the exec agent said hello (last time).
    pub ready_unix_ms: Option<u64>,
    /// How many times the agent said hello (1 + reboots).
    #[serde(default)]
    pub boots: u32,
    pub ended_unix_ms: Option<u64>,
    pub ending: Option<Ending>,
    pub kernel: PathBuf,
    pub cmdline: Vec<String>,
    pub config: GuestConfig,
    /// Why the supervisor could not start the kernel.
    pub error: Option<String>,
    /// `UMLKIT_GUEST` environment marker carried by all the guest's host processes.
    #[serde(default)]
    pub marker: Option<String>,
    /// What slow clients and garbage on the agent line cost (updated at most
    /// once a second while the guest runs).
    #[serde(default)]
    pub io: IoCounters,
}

/// Counters of the supervisor's client and agent-line I/O.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoCounters {
    /// Console output not sent to `umlkit console` clients that did not keep
    /// up (bytes; `console.log` still has everything).
    pub console_dropped_bytes: u64,
    /// Exec clients disconnected because they did not read their output.
    pub exec_clients_disconnected: u64,
    /// Bad frame headers (or runs of garbage) skipped on the agent line.
    pub agent_bad_frames: u64,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl State {
    /// The supervisor, named by pid and start time.
    pub fn supervisor_id(&self) -> ProcessId {
        ProcessId {
            pid: self.supervisor_pid,
            start: self.supervisor_start,
        }
    }

    /// The kernel's main process, named by pid and start time.
    pub fn kernel_id(&self) -> Option<ProcessId> {
        self.pid.map(|pid| ProcessId {
            pid,
            start: self.pid_start,
        })
    }

    /// The kernel's process group, when it may still be addressed: only while
    /// the kernel itself (its leader) is alive, so a group id the system
    /// reused after the guest died is never signalled.
    pub fn live_pgid(&self) -> Option<u32> {
        self.pgid
            .filter(|_| self.kernel_id().is_some_and(|k| k.alive()))
    }

    /// The advisory lock beside a state file (`state.lock`): shared while
    /// reading, exclusive while writing, so a reader never sees a file
    /// being rewritten in place and read-modify-write cycles do not
    /// interleave.
    pub fn lock_path(path: &Path) -> PathBuf {
        path.with_file_name("state.lock")
    }

    pub fn load(path: &Path) -> Result<State, Error> {
        // best effort: a reader that cannot create the lock file still reads
        let _lock = umlkit_sys::private::StateLock::shared(&Self::lock_path(path)).ok();
        let bytes = umlkit_sys::private::read_nofollow(path)
            .map_err(|e| Error::io(path, "cannot read", e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::BadState(path.to_path_buf(), e.to_string()))
    }

    /// Write the state atomically (0600, a temp name unique to this writer,
    /// then rename), under the exclusive lock.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let _lock = Self::lock(path)?;
        self.save_locked(path)
    }

    fn lock(path: &Path) -> Result<umlkit_sys::private::StateLock, Error> {
        let lp = Self::lock_path(path);
        umlkit_sys::private::StateLock::exclusive(&lp)
            .map_err(|e| Error::io(&lp, "cannot lock the guest state", e))
    }

    fn save_locked(&self, path: &Path) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        umlkit_sys::private::write_atomic(path, text.as_bytes())
            .map_err(|e| Error::io(path, "cannot write the guest state", e))
    }

    /// Save; when that fails (a full disk), still try to record this state
    /// by rewriting the existing file in place (compact JSON, which fits in
    /// the blocks the file already has). Returns the error of the save.
    pub fn save_or_record(&self, path: &Path) -> Result<(), Error> {
        let _lock = Self::lock(path)?;
        let r = self.save_locked(path);
        if r.is_err() {
            let text = serde_json::to_string(self).expect("state serializes");
            let _ = umlkit_sys::private::rewrite_in_place(path, text.as_bytes());
        }
        r
    }

    /// Read-modify-write under the exclusive lock: `f` sees the state as
    /// it is on disk now, so concurrent updaters lose nothing.
    pub fn update<R>(path: &Path, f: impl FnOnce(&mut State) -> R) -> Result<R, Error> {
        let _lock = Self::lock(path)?;
        let bytes = umlkit_sys::private::read_nofollow(path)
            .map_err(|e| Error::io(path, "cannot read", e))?;
        let mut st: State = serde_json::from_slice(&bytes)
            .map_err(|e| Error::BadState(path.to_path_buf(), e.to_string()))?;
        let r = f(&mut st);
        st.save_locked(path)?;
        Ok(r)
    }
}

/// An error and its sources on one line (`a: b: c`), for messages stored
/// in `state.json`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state from JSON (fields added later with `serde(default)` need
    /// no change here).
    fn sample(name: &str) -> State {
        let cfg = serde_json::to_value(GuestConfig::new(name)).unwrap();
        serde_json::from_value(serde_json::json!({
            "name": name, "supervisor_pid": 1, "pid": null, "pgid": null,
            "started_unix_ms": 0, "ready_unix_ms": null, "ended_unix_ms": null,
            "ending": null, "kernel": "/usr/bin/linux.uml", "cmdline": [],
            "config": cfg, "error": null,
        }))
        .unwrap()
    }

    /// Regression (issue 8.4): `state.json.tmp` was one fixed name with no
    /// lock, so concurrent writers clobbered each other's temp file and
    /// read-modify-write cycles lost updates. Each thread opens the lock
    /// file itself, so the flock conflicts exactly as between processes.
    #[test]
    fn guest_state_concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        sample("g").save(&p).unwrap();
        let (threads, rounds) = (8, 40);
        std::thread::scope(|sc| {
            for _ in 0..threads {
                sc.spawn(|| {
                    for _ in 0..rounds {
                        State::update(&p, |s| s.boots += 1).unwrap();
                        // readers never see a torn or missing file
                        State::load(&p).unwrap();
                    }
                });
            }
            // a second writer replacing the whole state concurrently
            sc.spawn(|| {
                for _ in 0..rounds {
                    State::update(&p, |s| s.cmdline.push("x".into())).unwrap();
                }
            });
        });
        let st = State::load(&p).unwrap();
        assert_eq!(st.boots, threads * rounds);
        assert_eq!(st.cmdline.len(), rounds as usize);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["state.json", "state.lock"], "temp files left");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
    }
}

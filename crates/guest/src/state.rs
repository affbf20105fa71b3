//! Per-guest state directory layout and `state.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// Main pid of the kernel.
    pub pid: Option<u32>,
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
    pub fn load(path: &Path) -> Result<State, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read", e))?;
        serde_json::from_str(&text).map_err(|e| Error::BadState(path.to_path_buf(), e.to_string()))
    }

    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, "cannot write", e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, "cannot write", e))
    }
}

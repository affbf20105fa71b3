//! Guests as managed processes: kernel discovery, the pure command-line
//! builder ([`config`]), the per-guest supervisor ([`supervisor`]), state
//! files ([`state`]), the exec client ([`exec`]) and the [`Store`] that ties
//! them together (start, wait_ready, exec, halt, kill, list, cleanup).
//!
//! ```no_run
//! # fn main() -> Result<(), guest::Error> {
//! use guest::{DiskSpec, GuestConfig, Store};
//! use std::time::Duration;
//! let store = Store::open(None)?;
//! let mut cfg = GuestConfig::new("r1");
//! cfg.disks.push(DiskSpec::new("/path/default.img"));
//! cfg.extra_args.push("umlkit.ip.eth0=10.0.0.1/24".into());
//! store.start(&cfg)?;
//! store.wait_ready("r1", Duration::from_secs(30))?;
//! let out = store.exec("r1", &["uname", "-r"], Duration::from_secs(10))?;
//! assert_eq!(out.code, 0);
//! store.halt("r1", Duration::from_secs(10))?;
//! store.cleanup("r1")?;
//! # Ok(()) }
//! ```
//!
//! # Guest-init parameters (default image)
//! Pass these through [`GuestConfig::extra_args`]; the default image's init
//! reads them from `/proc/cmdline` (last occurrence wins):
//! `umlkit.hostname=NAME` (default: the guest name, added by the builder),
//! `umlkit.ip.<if>=ADDR/LEN[,ADDR/LEN...]` (or `up`), `umlkit.gw=IP`,
//! `umlkit.modules=mod1,mod2` (modprobe before network setup),
//! `umlkit.hostfs=/mountpoint` (default `/hostlab` when
//! [`GuestConfig::hostfs`] is set), `umlkit.startup=/path/script` (run with
//! `sh` after network setup; the agent starts after it, so
//! [`Store::wait_ready`] returns once the script has finished).
//!
//! # Layout
//! State root: `$UMLKIT_STATE_DIR`, else `$XDG_RUNTIME_DIR/umlkit`, else
//! `$HOME/.umlkit/run`; it must be ours (not a symlink, owned by the
//! effective uid, not group/world writable) and is created 0700. Per guest
//! `<root>/<name>/` (0700; files 0600, sockets 0600): `config.json`,
//! `state.json`, `console.log`, `exec.sock`, `console.sock`, `ubdN.cow`
//! (automatic COWs), `u/<name>/mconsole` (private uml_dir).

pub mod attach;
pub mod config;
pub mod exec;
pub mod sink;
pub mod state;
pub mod store;
pub mod supervisor;

pub use config::{
    kernel_args, parse_mac, ConsoleMode, DiskSpec, GuestConfig, Layout, NetSpec, Transport,
    MIN_MEM_MB,
};
pub use exec::{Event, ExecOutput, ExecRequest, ExecSession, StdinHandle};
pub use state::{Ending, GuestPaths, IoCounters, State};
pub use store::{booting_again, panic_before_init};
pub use store::{host_memory, stale_uml_dirs, GuestInfo, GuestStatus, HostMemory, Phase, Store};

use std::path::{Path, PathBuf};

/// Errors of guest management.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "invalid guest name '{0}' (use letters, digits, '_', '.', '-'; at most 32 characters)"
    )]
    BadName(String),
    #[error("no guest named '{0}'")]
    Unknown(String),
    #[error("guest '{0}' is already running")]
    AlreadyRunning(String),
    #[error("guest '{0}' is not running: {1}")]
    NotRunning(String, String),
    #[error("guest '{0}' is still running (halt or kill it first)")]
    StillRunning(String),
    #[error("UML kernel not found: {0}")]
    KernelNotFound(String),
    #[error("{what} {} does not exist", path.display())]
    Missing { what: &'static str, path: PathBuf },
    #[error(
        "socket path {} is {} bytes, longer than the 107 bytes a unix socket path may have; \
         use a shorter state dir (UMLKIT_STATE_DIR) or guest name", .0.display(), .0.as_os_str().len()
    )]
    SocketPathTooLong(PathBuf),
    #[error("mem={0}M is below the minimum of {min}M: the UML 6.1 kernel panics while allocating its memory map with less", min = MIN_MEM_MB)]
    MemTooSmall(u32),
    #[error("bad state file {}: {1}", .0.display())]
    BadState(PathBuf, String),
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("exec in guest '{0}' failed")]
    ExecIo(String, #[source] std::io::Error),
    #[error("guest '{0}': {1}")]
    Protocol(String, String),
    #[error("guest '{0}': timed out waiting for {1}")]
    Timeout(String, String),
    #[error("guest '{0}' ended ({1}) before it was ready{2}")]
    Ended(String, Ending, String),
    #[error("mconsole of guest '{0}'")]
    Mconsole(String, #[source] mconsole::Error),
    #[error("guest '{0}': mconsole '{1}' failed: {2}")]
    MconsoleErr(String, String, String),
    #[error("guest '{0}' has no console to attach to (not running, or --console none/stdio)")]
    NoConsole(String),
    #[error("cannot connect to {}", .0.display())]
    ConsoleConnect(PathBuf, #[source] std::io::Error),
    #[error("cannot open {}", .0.display())]
    LogOpen(PathBuf, #[source] std::io::Error),
    #[error("cannot read the input")]
    Input(#[source] std::io::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    #[error("cannot find the umlkit executable to run the supervisor (set UMLKIT_BIN)")]
    NoSupervisor,
    /// A state dir that is not private (symlink, someone else's, writable by others).
    #[error(transparent)]
    Private(#[from] umlkit_sys::private::DirError),
}

impl Error {
    pub(crate) fn io(path: &Path, what: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    }
}

use umlkit_sys::file::which;

/// Find the UML kernel: `explicit`, else `$UMLKIT_KERNEL`, else `linux.uml`,
/// else `linux` on PATH.
pub fn find_kernel(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let given = explicit.map(|p| (p.to_path_buf(), "--kernel")).or_else(|| {
        std::env::var_os("UMLKIT_KERNEL").map(|k| (PathBuf::from(k), "$UMLKIT_KERNEL"))
    });
    if let Some((k, from)) = given {
        if k.is_file() {
            return Ok(std::path::absolute(&k).unwrap_or(k));
        }
        return Err(Error::KernelNotFound(format!(
            "{} (from {from}) does not exist",
            k.display()
        )));
    }
    which("linux.uml")
        .or_else(|| which("linux"))
        .ok_or_else(|| {
            Error::KernelNotFound(
                "no linux.uml or linux on PATH: install the Debian package user-mode-linux, \
             or pass --kernel / set UMLKIT_KERNEL"
                    .into(),
            )
        })
}

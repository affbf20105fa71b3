//! The lab crate's error type: every variant names the file (and line) and
//! the rule that was broken.

use std::path::PathBuf;

/// Errors of lab parsing, planning and running.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A line of lab.conf / lab.dep breaks a syntax or dialect rule.
    #[error("{file}:{line}: {rule}")]
    Syntax {
        file: PathBuf,
        line: usize,
        rule: String,
    },
    /// A rule about the lab as a whole (not one line) is broken.
    #[error("{file}: {rule}")]
    Invalid { file: PathBuf, rule: String },
    /// lab.dep has a dependency cycle.
    #[error("{file}: dependency cycle: {cycle}")]
    Cycle { file: PathBuf, cycle: String },
    /// lab.toml could not be decoded.
    #[error("{file}: {message}")]
    Toml { file: PathBuf, message: String },
    /// A file or directory of the lab would lead outside the lab folder.
    #[error("{path}: {rule}")]
    Unsafe { path: PathBuf, rule: String },
    /// An I/O operation failed.
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The read-only lab disk could not be built from the lab folder.
    #[error("cannot build the lab disk {disk} from {dir}")]
    LabDisk {
        disk: PathBuf,
        dir: PathBuf,
        #[source]
        source: image::Error,
    },
    /// A state folder that is not ours alone (a symlink, another user's,
    /// writable by others).
    #[error(transparent)]
    Private(#[from] umlkit_sys::private::DirError),
    /// A guest operation failed (`what` says which, for which machine).
    #[error("{what}")]
    Guest {
        what: String,
        #[source]
        source: guest::Error,
    },
    /// An image the machines boot could not be built or found.
    #[error("{what}")]
    Image {
        what: String,
        #[source]
        source: image::Error,
    },
    /// `lab start` was interrupted ([`crate::backend::Interrupt`]): no
    /// machine was started after that.
    #[error("{}", interrupted_text(ready, booting))]
    Interrupted {
        /// Machines of this start that were ready.
        ready: Vec<String>,
        /// Machines launched whose boot steps had not finished.
        booting: Vec<String>,
    },
    /// The runner could not do what was asked.
    #[error("{0}")]
    Run(String),
    /// A Graphviz layout engine is missing, failed or timed out
    /// ([`crate::graphviz`]); `what` says which and what to install.
    #[error("{what}")]
    Layout {
        what: String,
        #[source]
        source: Option<std::io::Error>,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, LabError>;

pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> LabError {
    let path = path.into();
    move |source| LabError::Io { what, path, source }
}

fn interrupted_text(ready: &[String], booting: &[String]) -> String {
    let mut s = String::from("interrupted: no further machine was started");
    if !ready.is_empty() {
        s.push_str(&format!("; ready: {}", ready.join(", ")));
    }
    if !booting.is_empty() {
        s.push_str(&format!(
            "; still booting (their boot steps are not finished): {}",
            booting.join(", ")
        ));
    }
    if !ready.is_empty() || !booting.is_empty() {
        s.push_str("; `lab stop` stops them, `lab start` finishes the start");
    }
    s
}

/// Wrap a guest error with what was being done (`what`), keeping it as the
/// source.
pub(crate) fn guest_err(what: impl Into<String>) -> impl FnOnce(guest::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Guest { what, source }
}

/// An error and its sources on one line: `outer: cause: root cause`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

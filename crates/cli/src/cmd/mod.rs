//! One module per area. Each defines a clap `Command` enum (flattened into the
//! top level), a `run` function and, where it has one, a `Bench` enum.

pub mod cow;
pub mod guest;
pub mod lab;
pub mod link;
pub mod out;
pub mod plug;
pub mod switch;
pub mod web;

pub use out::{shown, shown_lines};

/// The error chain on one line: `outer: cause: root cause`. Each error
/// says only its own part (a source is never repeated in its wrapper's
/// message), so every part is printed once.
pub fn error_chain(err: &anyhow::Error) -> String {
    err.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// [`error_chain`] of a library error.
pub fn chain_of(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(c) = cur {
        parts.push(c.to_string());
        cur = c.source();
    }
    parts.join(": ")
}

/// Exit status of `exec`, `lab exec` and `lab test` when umlkit itself
/// failed (no such guest, agent unreachable, timeout, lab not running), so
/// that it is not mistaken for the command's status or failed checks; as
/// `docker exec` and `env` do, 126 and 127 stay for a command that could not
/// be executed or was not found (docs/exit-codes.md).
pub const OWN_FAILURE: u8 = 125;

/// Exit code for an error that reached `main`: 1 unless an area says otherwise
/// by attaching an [`ExitStatus`] to the chain.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|c| c.downcast_ref::<ExitStatus>())
        .map(|s| s.0)
        .unwrap_or(1)
}

/// Attach to an error (with `anyhow::Error::context`) to choose the exit code.
#[derive(Debug)]
pub struct ExitStatus(pub u8);

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitStatus {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 11): `error_chain` skipped a cause whose text the
    /// previous part contained, which hid real causes ("timeout" under
    /// "waiting for the timeout handler") to mask errors that repeated their
    /// source. Every part is printed now, once.
    #[test]
    fn error_chain_prints_every_cause_once() {
        let e = anyhow::Error::new(std::io::Error::other("timeout"))
            .context("waiting for the timeout handler");
        assert_eq!(error_chain(&e), "waiting for the timeout handler: timeout");
    }

    /// Errors that wrap a source do not repeat it in their own message.
    #[test]
    fn library_errors_do_not_repeat_their_source() {
        let io = || std::io::Error::from_raw_os_error(98);
        let once = |s: String| {
            assert_eq!(s.matches("Address already in use").count(), 1, "{s}");
        };
        let sw = switchd::Error::Bind {
            path: "/x/ctl".into(),
            source: io(),
        };
        once(chain_of(&sw));
        once(error_chain(&anyhow::Error::new(sw)));
        let sw = switchd::Error::Connect {
            path: "/x/mgmt".into(),
            source: io(),
        };
        once(error_chain(&anyhow::Error::new(sw).context("umlkit link")));
        let lab = ::lab::LabError::Io {
            what: "cannot write",
            path: "/x/state.json".into(),
            source: io(),
        };
        once(error_chain(&anyhow::Error::new(lab)));
    }
}

//! One module per area. Each defines a clap `Command` enum (flattened into the
//! top level), a `run` function and, where it has one, a `Bench` enum.

pub mod cow;
pub mod guest;
pub mod lab;
pub mod link;
pub mod out;
pub mod switch;

pub use out::{shown, shown_lines};

/// The error chain on one line: `outer: cause: root cause`.
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        // Skip a cause whose text the previous part already carries.
        if parts.last().is_some_and(|p| p.contains(&s)) {
            continue;
        }
        parts.push(s);
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

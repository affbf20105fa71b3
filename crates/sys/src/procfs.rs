//! The one reader of `/proc` for processes: pids, `stat` fields, command
//! lines and environments. Every function answers "gone" (empty, `None`,
//! `false`) for a process that exits while it is read, never an error.

/// The pids of every process visible in `/proc` (empty if it cannot be read).
pub fn all_pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// The fields of `/proc/PID/stat` after the parenthesised command name
/// (`state ppid pgrp ...`, field 3 onwards), or `None` when it is gone.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The state letter of `pid` (`R`, `S`, `Z`, ...), `None` when it is gone.
pub fn state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The process group of `pid`, `None` when it is gone.
pub fn pgrp(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// `/proc/PID/cmdline` as it is: arguments separated by NUL bytes (empty
/// when the process is gone or a kernel thread).
pub fn cmdline_raw(pid: u32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

/// The arguments of `pid` (lossy UTF-8; empty when it is gone).
pub fn cmdline(pid: u32) -> Vec<String> {
    let raw = cmdline_raw(pid);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.strip_suffix(&[0])
        .unwrap_or(&raw)
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// True when `pid`'s environment holds exactly `KEY=VALUE` (`kv`).
pub fn environ_has(pid: u32, kv: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == kv))
}

/// Every process but this one whose raw command line contains `needle`.
pub fn pids_mentioning(needle: &[u8]) -> Vec<u32> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter(|&p| {
            !needle.is_empty() && cmdline_raw(p).windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(all_pids().contains(&me));
        assert!(matches!(state(me), Some('R' | 'S')));
        assert!(pgrp(me).is_some());
        let args = cmdline(me);
        assert_eq!(
            args.first().map(String::as_str),
            std::env::args().next().as_deref()
        );
    }

    /// Kills and reaps the child even when an assertion fails.
    struct Child(std::process::Child);

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_child_is_found_by_its_command_line_and_environment() {
        let mut child = Child(
            std::process::Command::new("sleep")
                .arg("1000.25")
                .env("UMLKIT_PROCFS_TEST", "x1")
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        // spawn returns once exec closed the CLOEXEC pipe, a moment before
        // the new image's arguments are set up: wait for them (bounded)
        let t0 = std::time::Instant::now();
        while cmdline(pid).len() != 2 && t0.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::yield_now();
        }
        assert!(pids_mentioning(b"1000.25").contains(&pid));
        assert_eq!(cmdline(pid), ["sleep", "1000.25"]);
        assert!(environ_has(pid, b"UMLKIT_PROCFS_TEST=x1"));
        assert!(!environ_has(pid, b"UMLKIT_PROCFS_TEST=x"));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        assert_eq!(state(pid), None);
        assert!(cmdline(pid).is_empty());
        assert!(pids_mentioning(b"").is_empty());
    }
}

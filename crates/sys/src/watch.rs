//! Waiting without polling: an inotify watch on one directory (a file in it
//! created, written or renamed into place) and pidfds (a process exited),
//! waited on together in one `poll(2)` with a timeout.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// Changes to the files of one directory (all of them, or the named ones).
#[derive(Debug)]
pub struct DirWatch {
    fd: OwnedFd,
    names: Vec<std::ffi::OsString>,
}

impl DirWatch {
    /// Watch `dir` for files created, closed after writing, or renamed into
    /// it (an atomic write), and for the directory's own removal. With
    /// `names`, only changes to those files count (a lock file opened next
    /// to them, by the watcher itself, does not wake it).
    pub fn new(dir: &Path, names: &[&str]) -> io::Result<DirWatch> {
        use std::os::unix::ffi::OsStrExt;
        let cdir = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: inotify_init1 takes flags only and returns a new fd or -1.
        let r = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `r` is a fresh fd the kernel just gave us; OwnedFd closes it.
        let fd = unsafe { OwnedFd::from_raw_fd(r) };
        let mask = libc::IN_CREATE
            | libc::IN_CLOSE_WRITE
            | libc::IN_MOVED_TO
            | libc::IN_DELETE_SELF
            | libc::IN_ONLYDIR
            | libc::IN_DONT_FOLLOW;
        // SAFETY: the fd is open and `cdir` is a NUL-terminated path that
        // outlives the call; the kernel only reads it.
        let w = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), cdir.as_ptr(), mask) };
        if w < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DirWatch {
            fd,
            names: names.iter().map(std::ffi::OsString::from).collect(),
        })
    }

    /// Block until a watched file changes, one of `pidfds`' processes exits
    /// (see [`crate::process::pidfd_open`]), or `timeout` passes. Returns
    /// false on timeout. Directory events are consumed, so the next call
    /// waits for a new change; an exited process's pidfd stays ready.
    pub fn wait(&self, pidfds: &[&OwnedFd], timeout: Duration) -> io::Result<bool> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut fds: Vec<libc::pollfd> = std::iter::once(self.fd.as_raw_fd())
                .chain(pidfds.iter().map(|f| f.as_raw_fd()))
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
            // round up: a timeout below a millisecond must not become a busy loop
            let ms = if ms == 0 && !left.is_zero() { 1 } else { ms };
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs
            // that lives across the call; the kernel writes only `revents`.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(false);
            }
            if fds[1..].iter().any(|f| f.revents != 0) {
                if fds[0].revents != 0 {
                    self.drain();
                }
                return Ok(true);
            }
            if self.drain() {
                return Ok(true);
            }
        }
    }

    /// Read every pending event; true when one is about a watched file (or
    /// the directory itself).
    fn drain(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        const HDR: usize = std::mem::size_of::<libc::inotify_event>();
        let mut hit = false;
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: the fd is open and non-blocking; `buf` is writable for
            // its full length, which is what we pass.
            let r = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if r <= 0 {
                return hit;
            }
            let got = &buf[..r as usize];
            let mut at = 0;
            // struct inotify_event: wd, mask, cookie, len (native u32s),
            // then `len` bytes of NUL-padded name
            while at + HDR <= got.len() {
                let u32_at = |o: usize| {
                    u32::from_ne_bytes(got[at + o..at + o + 4].try_into().expect("4 bytes"))
                };
                let mask = u32_at(4);
                let len = u32_at(12) as usize;
                let end = (at + HDR + len).min(got.len());
                let raw = &got[at + HDR..end];
                let name = &raw[..raw.iter().position(|b| *b == 0).unwrap_or(raw.len())];
                if self.names.is_empty()
                    || mask & (libc::IN_DELETE_SELF | libc::IN_IGNORED | libc::IN_Q_OVERFLOW) != 0
                    || self.names.iter().any(|n| n.as_bytes() == name)
                {
                    hit = true;
                }
                at = end;
            }
        }
    }
}

/// Wait until every process in `pids` has exited (or `timeout` passed):
/// one pidfd per process, blocked on in `poll(2)`, no polling of /proc.
/// Each pid is checked with `still_ours` after its pidfd is opened, so a
/// pid the system already reused for another process is not waited for.
/// Returns true when all are gone.
pub fn wait_exit(pids: &[u32], still_ours: impl Fn(u32) -> bool, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    let mut fds: Vec<OwnedFd> = pids
        .iter()
        .filter_map(|&p| {
            let fd = crate::process::pidfd_open(p).ok()?;
            still_ours(p).then_some(fd)
        })
        .collect();
    while !fds.is_empty() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pfds: Vec<libc::pollfd> = fds
            .iter()
            .map(|f| libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = libc::c_int::try_from(left.as_millis())
            .unwrap_or(libc::c_int::MAX)
            .max(1);
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs
        // that lives across the call; the kernel writes only `revents`.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
        let mut i = 0;
        fds.retain(|_| {
            let keep = pfds[i].revents == 0;
            i += 1;
            keep
        });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_rename_into_the_directory_wakes_the_watch() {
        let d = tempfile::tempdir().unwrap();
        let w = DirWatch::new(d.path(), &[]).unwrap();
        // nothing happened: times out
        assert!(!w.wait(&[], Duration::from_millis(20)).unwrap());
        std::fs::write(d.path().join("x.tmp"), b"1").unwrap();
        std::fs::rename(d.path().join("x.tmp"), d.path().join("x")).unwrap();
        assert!(w.wait(&[], Duration::from_secs(10)).unwrap());
        // consumed: the next wait waits for a new change
        assert!(!w.wait(&[], Duration::from_millis(20)).unwrap());
    }

    #[test]
    fn only_the_named_files_wake_the_watch() {
        let d = tempfile::tempdir().unwrap();
        let w = DirWatch::new(d.path(), &["state.json"]).unwrap();
        std::fs::write(d.path().join("state.json.lock"), b"").unwrap();
        assert!(!w.wait(&[], Duration::from_millis(50)).unwrap());
        std::fs::write(d.path().join("state.json"), b"{}").unwrap();
        assert!(w.wait(&[], Duration::from_secs(10)).unwrap());
    }

    #[test]
    fn an_exiting_process_wakes_the_watch() {
        let d = tempfile::tempdir().unwrap();
        let w = DirWatch::new(d.path(), &[]).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pfd = crate::process::pidfd_open(child.id()).unwrap();
        let t = Instant::now();
        assert!(w.wait(&[&pfd], Duration::from_secs(30)).unwrap());
        assert!(t.elapsed() < Duration::from_secs(30));
        child.wait().unwrap();
    }

    #[test]
    fn wait_exit_returns_when_all_processes_are_gone() {
        let mut a = std::process::Command::new("sleep")
            .arg("0.1")
            .spawn()
            .unwrap();
        let mut b = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pids = [a.id(), b.id()];
        // b still runs: times out
        assert!(!wait_exit(&pids, |_| true, Duration::from_millis(300)));
        b.kill().unwrap();
        assert!(wait_exit(&pids, |_| true, Duration::from_secs(30)));
        // processes that are not ours (any more) are not waited for
        let mut c = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        assert!(wait_exit(&[c.id()], |_| false, Duration::from_secs(30)));
        c.kill().unwrap();
        for ch in [&mut a, &mut b, &mut c] {
            ch.wait().unwrap();
        }
    }

    #[test]
    fn a_file_is_not_a_directory_to_watch() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"").unwrap();
        assert!(DirWatch::new(&f, &[]).is_err());
    }
}

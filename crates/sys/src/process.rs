//! Syscall wrappers: processes, process groups, signals.

use std::io;

/// A signal number as the kernel knows it (`libc::SIGKILL`, ...).
pub type Signal = libc::c_int;

pub const SIGKILL: Signal = libc::SIGKILL;
pub const SIGTERM: Signal = libc::SIGTERM;
pub const SIGINT: Signal = libc::SIGINT;

/// Send `sig` to the process `pid`.
pub fn kill(pid: u32, sig: Signal) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours;
    // pid > 0 was checked so it never addresses a process group by accident.
    let r = unsafe { libc::kill(pid, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Send `sig` to every process of the process group `pgid`.
pub fn kill_group(pgid: u32, sig: Signal) -> io::Result<()> {
    let pgid =
        libc::pid_t::try_from(pgid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pgid <= 1 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: killpg(2) takes plain integers; pgid > 1 was checked so it can
    // neither mean "our own group" (0) nor init's.
    let r = unsafe { libc::killpg(pgid, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// True when a process with this pid exists (it may be a zombie).
pub fn process_exists(pid: u32) -> bool {
    match kill(pid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() != Some(libc::ESRCH),
    }
}

/// True when at least one process of group `pgid` exists.
pub fn group_exists(pgid: u32) -> bool {
    match kill_group(pgid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() != Some(libc::ESRCH),
    }
}

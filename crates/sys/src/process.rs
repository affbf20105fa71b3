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

/// Make the calling process a session leader (and process-group leader), detached
/// from any controlling terminal. Returns the new session id.
pub fn setsid() -> io::Result<u32> {
    // SAFETY: setsid(2) takes no arguments and touches no memory of ours.
    let r = unsafe { libc::setsid() };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as u32)
    }
}

/// The process group of process `pid` (0 = the caller).
pub fn getpgid(pid: u32) -> io::Result<u32> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: getpgid(2) takes a plain integer.
    let r = unsafe { libc::getpgid(pid) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as u32)
    }
}

/// How a child ended, as `waitpid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// Normal exit with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

/// Non-blocking `waitpid(pid, WNOHANG)` for a child of ours: `None` while it
/// runs. Stops/continues are ignored (reported as still running).
pub fn try_wait(pid: u32) -> io::Result<Option<WaitStatus>> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid, writable c_int for the duration of the call;
    // pid > 0 addresses one specific child.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r == 0 {
        return Ok(None);
    }
    if libc::WIFEXITED(status) {
        Ok(Some(WaitStatus::Exited(libc::WEXITSTATUS(status))))
    } else if libc::WIFSIGNALED(status) {
        Ok(Some(WaitStatus::Signaled(libc::WTERMSIG(status))))
    } else {
        Ok(None)
    }
}

/// Reap any exited child without blocking (`waitpid(-1, WNOHANG)`); returns its
/// pid and status, `None` when no child has exited (or there are no children).
pub fn reap_any() -> Option<(u32, WaitStatus)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid writable c_int; -1 means "any child of ours".
    let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if r <= 0 {
        return None;
    }
    let st = if libc::WIFEXITED(status) {
        WaitStatus::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        WaitStatus::Signaled(libc::WTERMSIG(status))
    } else {
        return None;
    };
    Some((r as u32, st))
}

/// A pseudo-terminal pair: the master (kept by us) and the slave (given to a child).
pub struct Pty {
    pub master: std::fs::File,
    pub slave: std::fs::File,
    /// Path of the slave, e.g. `/dev/pts/3`.
    pub slave_path: std::path::PathBuf,
}

/// Open a new pty pair (`posix_openpt`, `grantpt`, `unlockpt`). Both ends are
/// close-on-exec and the slave is opened with `O_NOCTTY`, so opening it never
/// makes it our controlling terminal.
pub fn open_pty() -> io::Result<Pty> {
    use std::os::fd::FromRawFd;
    // SAFETY: posix_openpt returns a new fd or -1; no memory is passed.
    let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if m < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `m` is a fresh fd we own; File takes ownership and closes it on drop.
    let master = unsafe { std::fs::File::from_raw_fd(m) };
    // SAFETY: grantpt/unlockpt take the valid master fd.
    if unsafe { libc::grantpt(m) } != 0 || unsafe { libc::unlockpt(m) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: `buf` is writable for its full length, which we pass.
    let r = unsafe { libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: ptsname_r succeeded, so `buf` holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    let slave_path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&slave_path)?;
    Ok(Pty {
        master,
        slave,
        slave_path,
    })
}

/// Saved terminal settings, restored with [`restore_termios`].
#[derive(Clone, Copy)]
pub struct Termios(libc::termios);

/// Put the terminal `fd` in raw mode (no echo, no line editing, no signals,
/// 8-bit clean); returns the previous settings.
pub fn make_raw(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<Termios> {
    use std::os::fd::AsRawFd;
    // SAFETY: termios is plain old data; all-zero is a valid value to be overwritten.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid writable termios; fd is a borrowed open fd.
    if unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let saved = Termios(t);
    // SAFETY: cfmakeraw only modifies the struct we pass.
    unsafe { libc::cfmakeraw(&mut t) };
    // SAFETY: `t` is a valid termios; fd is open.
    if unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(saved)
}

/// Restore settings saved by [`make_raw`].
pub fn restore_termios(fd: std::os::fd::BorrowedFd<'_>, saved: &Termios) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `saved.0` is a termios obtained from tcgetattr; fd is open.
    if unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &saved.0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True when `fd` is a terminal.
pub fn is_tty(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: isatty takes a plain fd.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// Arrange for `cmd`'s child to get `src` duplicated onto fd `target`
/// (close-on-exec cleared), e.g. a socketpair end passed as fd 3. `src` must
/// stay open until the child has been spawned.
pub fn pass_fd(
    cmd: &mut std::process::Command,
    src: std::os::fd::RawFd,
    target: std::os::fd::RawFd,
) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // the async-signal-safe dup2/fcntl on integers.
    unsafe {
        cmd.pre_exec(move || {
            if src == target {
                let flags = libc::fcntl(src, libc::F_GETFD);
                if flags < 0 || libc::fcntl(src, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(src, target) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Make the child of `cmd` a session leader (`setsid` before exec) and, when
/// `ctty` is true, give it its stdin (a pty slave) as controlling terminal.
pub fn setsid_on_spawn(cmd: &mut std::process::Command, ctty: bool) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe setsid/ioctl on integers.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if ctty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Set a terminal's window size (rows, cols).
pub fn set_winsize(fd: std::os::fd::BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Ignore SIGPIPE process-wide (writes to closed sockets then fail with EPIPE).
pub fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN for SIGPIPE has no memory-safety implications.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Power the machine off / halt / reboot (for a guest's PID 1): `reboot(2)`
/// with `LINUX_REBOOT_CMD_POWER_OFF` etc. Only returns on error.
pub fn reboot(cmd: RebootCmd) -> io::Error {
    let c = match cmd {
        RebootCmd::PowerOff => libc::RB_POWER_OFF,
        RebootCmd::Restart => libc::RB_AUTOBOOT,
        RebootCmd::CadOff => libc::RB_DISABLE_CAD,
    };
    // SAFETY: reboot(2) takes a plain integer command.
    unsafe { libc::reboot(c) };
    io::Error::last_os_error()
}

/// Commands for [`reboot`].
#[derive(Debug, Clone, Copy)]
pub enum RebootCmd {
    PowerOff,
    Restart,
    /// Make Ctrl-Alt-Del send SIGINT to PID 1 instead of rebooting.
    CadOff,
}

/// Become a "child subreaper": orphaned descendants are re-parented to us
/// instead of init, so we can find, kill and reap them.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes plain integers.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The pids of every process visible in `/proc` (empty if it cannot be read).
pub fn all_pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Point this process's stderr (fd 2) at `f` (`dup2`), e.g. a detached
/// supervisor that reported its start-up over a pipe moving on to its log.
pub fn redirect_stderr(f: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: dup2(2) on a descriptor `f` keeps open and the constant 2;
    // it touches no memory of ours.
    let r = unsafe { libc::dup2(f.as_raw_fd(), 2) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

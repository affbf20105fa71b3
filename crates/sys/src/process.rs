//! Syscall wrappers: processes, process groups, signals.

use std::io;

/// A signal number as the kernel knows it (`libc::SIGKILL`, ...).
pub type Signal = libc::c_int;

pub const SIGKILL: Signal = libc::SIGKILL;
pub const SIGTERM: Signal = libc::SIGTERM;
pub const SIGINT: Signal = libc::SIGINT;
pub const SIGSTOP: Signal = libc::SIGSTOP;
pub const SIGCONT: Signal = libc::SIGCONT;
pub const SIGWINCH: Signal = libc::SIGWINCH;

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

/// Have the kernel send `sig` to the child of `cmd` when this process
/// ends, whatever ends it (even SIGKILL). The signal fires when the
/// *thread* that spawned the child exits: spawn from a thread that lives
/// as long as the process (e.g. the main thread).
pub fn signal_on_parent_death(cmd: &mut std::process::Command, sig: Signal) {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid is async-signal-safe; the closure runs in the forked
    // child before exec and only calls async-signal-safe prctl/getppid/_exit.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) < 0 {
                return Err(io::Error::last_os_error());
            }
            // the parent may have gone between fork and prctl
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Start the child of `cmd` with a core file size limit of 0, so that a
/// crashing helper program (an assertion failing in it) leaves no `core`
/// file in the caller's working directory.
pub fn no_core_dump_on_spawn(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only
    // calls async-signal-safe setrlimit on a local struct.
    unsafe {
        cmd.pre_exec(|| {
            let zero = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_CORE, &zero) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Start the child of `cmd` with no signal blocked, whatever the mask of
/// the spawning thread (a thread reading signals through a signalfd blocks
/// them; an exec'd program must not inherit that).
pub fn unblock_signals_on_spawn(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only
    // calls async-signal-safe sigemptyset/sigprocmask on a local set.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) < 0 {
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

/// A terminal's window size (rows, cols).
pub fn get_winsize(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    use std::os::fd::AsRawFd;
    // SAFETY: winsize is plain old data; all-zero is a valid value to be overwritten.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize struct that lives for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ws.ws_row, ws.ws_col))
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

pub use crate::procfs::all_pids;
use crate::procfs::stat_fields;

/// When `pid` started, in clock ticks since boot (`/proc/PID/stat` field
/// 22). Together with the pid it names one process for the whole uptime of
/// the host: a pid reused by another process has another start time.
pub fn start_time(pid: u32) -> Option<u64> {
    // field 22 is the 20th after the command name (fields 3..)
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// True when `pid` is a zombie (or dead and not yet reaped: `X`).
pub fn is_zombie(pid: u32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|s| s == "Z" || s == "X")
}

/// One process, named by pid and start time so that a reused pid is never
/// taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId {
    pub pid: u32,
    /// [`start_time`] when the process was recorded; `None` for records
    /// written before start times were kept (then only the pid is checked).
    pub start: Option<u64>,
}

impl ProcessId {
    /// The running process `pid` with its current start time.
    pub fn of(pid: u32) -> ProcessId {
        ProcessId {
            pid,
            start: start_time(pid),
        }
    }

    /// True while this very process runs (not a zombie, pid not reused).
    pub fn alive(&self) -> bool {
        if !process_exists(self.pid) || is_zombie(self.pid) {
            return false;
        }
        match self.start {
            Some(s) => start_time(self.pid) == Some(s),
            None => true,
        }
    }

    /// Send `sig` to this process only: the pid is pinned with a pidfd, then
    /// its start time is checked, so a pid reused in between is never hit.
    /// `Ok(false)` when the process is gone (or the pid belongs to another).
    pub fn signal(&self, sig: Signal) -> io::Result<bool> {
        let fd = match pidfd_open(self.pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(false),
            Err(e) => return Err(e),
        };
        if let Some(s) = self.start {
            if start_time(self.pid) != Some(s) {
                return Ok(false);
            }
        }
        match pidfd_send_signal(&fd, sig) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// `pidfd_open(2)`: a file descriptor that keeps naming `pid` even after
/// the pid is reused.
pub fn pidfd_open(pid: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: pidfd_open takes a plain pid and flags (0) and returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `r` is a fresh fd the kernel just gave us; OwnedFd closes it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r as libc::c_int) })
}

/// `pidfd_send_signal(2)` to the process behind `fd`.
pub fn pidfd_send_signal(fd: &std::os::fd::OwnedFd, sig: Signal) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the fd is open for the call; info is NULL (as kill(2) would
    // fill it) and flags are 0, so no memory of ours is read or written.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
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

/// `kcmp(a, b, KCMP_VM)`: true when both processes share one address space
/// (threads, or `clone(CLONE_VM)` helpers such as UML's). Needs ptrace
/// access to both (our own processes, or root).
pub fn same_address_space(a: u32, b: u32) -> io::Result<bool> {
    const KCMP_VM: libc::c_int = 1;
    let a = libc::pid_t::try_from(a).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let b = libc::pid_t::try_from(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kcmp takes plain integers (pids, type, two unused idx values)
    // and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a,
            b,
            KCMP_VM,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r == 0)
    }
}

/// Group `pids` by address space: one representative pid per distinct
/// address space (the first of each group, in the order given). Pids whose
/// address space cannot be compared (gone, no permission) stay on their own.
pub fn distinct_address_spaces(pids: &[u32]) -> Vec<u32> {
    let mut reps: Vec<u32> = Vec::new();
    for &p in pids {
        let shared = reps
            .iter()
            .any(|&r| same_address_space(r, p).unwrap_or(false));
        if !shared {
            reps.push(p);
        }
    }
    reps
}

/// Largest resident set (KiB) of any child this process has waited for
/// (`getrusage(RUSAGE_CHILDREN)`): an upper bound of a finished child's peak.
pub fn children_max_rss_kb() -> io::Result<u64> {
    // SAFETY: an all-zero rusage is a valid value of a plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the struct we own and pass
    // by a valid pointer for the duration of the call.
    let r = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ru.ru_maxrss.max(0) as u64)
}

/// Raise the soft limit of open files to the hard limit; returns the new
/// soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid rlimit that lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if r.rlim_cur < r.rlim_max {
        let want = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: want is a valid rlimit that lives across the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
            return Err(io::Error::last_os_error());
        }
        r.rlim_cur = r.rlim_max;
    }
    Ok(r.rlim_cur)
}

/// Supplementary group ids of a running process (from
/// `/proc/PID/status`), empty if it cannot be read.
pub fn supplementary_groups(pid: u32) -> Vec<u32> {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    s.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn start_time_of_self_is_stable_and_names_us() {
        let me = std::process::id();
        let a = start_time(me).expect("our own start time");
        assert_eq!(start_time(me), Some(a));
        assert!(ProcessId::of(me).alive());
        let wrong = ProcessId {
            pid: me,
            start: Some(a + 1),
        };
        assert!(!wrong.alive(), "another start time is another process");
        assert!(!wrong.signal(0).unwrap());
        assert!(ProcessId::of(me).signal(0).unwrap());
    }

    #[test]
    fn threads_share_an_address_space_children_do_not() {
        let me = std::process::id();
        assert!(same_address_space(me, me).unwrap());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let c = child.id();
        let r = same_address_space(me, c);
        let _ = child.kill();
        let _ = child.wait();
        assert!(!r.unwrap());
        assert_eq!(distinct_address_spaces(&[me, me]), vec![me]);
    }
}

/// A forked guard that SIGKILLs a process group when the process that made
/// it ends without [`GroupGuard::disarm`] (killed by SIGKILL, crashed).
///
/// PR_SET_PDEATHSIG reaches only the direct child; a kernel's helpers
/// (UML's clone()d I/O and SIGIO threads) live on when its main process
/// dies before its exit handlers ran. The guard waits on a pipe whose
/// only write end this process holds: EOF without the "disarm" byte means
/// this process is gone. It then gives the group `grace` to end by itself
/// and kills what is left. It holds no other descriptor (no stdout that a
/// reader waits on, no socket that keeps a peer connected).
pub struct GroupGuard {
    write: std::os::fd::OwnedFd,
    pid: u32,
}

impl GroupGuard {
    pub fn spawn(pgid: u32, grace: std::time::Duration) -> io::Result<GroupGuard> {
        use std::os::fd::FromRawFd;
        let pgid = libc::pid_t::try_from(pgid)
            .ok()
            .filter(|&p| p > 1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad process group"))?;
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
        let (read, write) = unsafe {
            (
                std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            )
        };
        let ticks = (grace.as_millis() / 100).max(1) as u32;
        // SAFETY: the child calls only async-signal-safe functions (dup2,
        // close_range through syscall, close, read, kill, nanosleep, _exit)
        // on plain integers and stack memory, as required after fork in a
        // multithreaded process; it never returns into Rust code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            unsafe { guard_child(fds[0], pgid, ticks) }
        }
        drop(read);
        Ok(GroupGuard {
            write,
            pid: pid as u32,
        })
    }

    /// The group ended as it should: tell the guard and reap it.
    pub fn disarm(self) {
        use std::os::fd::AsRawFd;
        // SAFETY: writes one byte from a live stack buffer to an fd we own.
        unsafe { libc::write(self.write.as_raw_fd(), b"d".as_ptr().cast(), 1) };
        drop(self.write);
        let mut status = 0;
        // SAFETY: waits for our own child; status is a valid int.
        unsafe { libc::waitpid(self.pid as libc::pid_t, &mut status, 0) };
    }
}

/// The body of the forked guard: async-signal-safe calls only.
unsafe fn guard_child(read: libc::c_int, pgid: libc::pid_t, ticks: u32) -> ! {
    unsafe {
        if libc::dup2(read, 0) < 0 {
            libc::_exit(1);
        }
        if libc::syscall(
            libc::SYS_close_range,
            1 as libc::c_uint,
            libc::c_uint::MAX,
            0,
        ) < 0
        {
            for fd in 1..4096 {
                libc::close(fd);
            }
        }
        let mut b = 0u8;
        loop {
            let n = libc::read(0, (&mut b as *mut u8).cast(), 1);
            if n == 1 {
                libc::_exit(0); // disarmed
            }
            if n == 0 {
                break; // our parent is gone
            }
            if *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        let tick = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        for _ in 0..ticks {
            if libc::kill(-pgid, 0) < 0 {
                libc::_exit(0); // the group ended by itself
            }
            libc::nanosleep(&tick, std::ptr::null_mut());
        }
        libc::kill(-pgid, libc::SIGKILL);
        libc::_exit(0)
    }
}

#[cfg(test)]
mod group_guard_tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    /// A group of two: the shell's background sleep is not our child,
    /// as UML's clone()d helpers are not `umlkit run`'s.
    fn group() -> std::process::Child {
        std::process::Command::new("sh")
            .args(["-c", "sleep 60 & exec sleep 60"])
            .process_group(0)
            .spawn()
            .expect("spawn sh")
    }

    fn gone_within(pgid: u32, child: &mut std::process::Child, t: Duration) -> bool {
        let end = Instant::now() + t;
        while Instant::now() < end {
            let _ = child.try_wait();
            if !group_exists(pgid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn a_guard_whose_maker_is_gone_kills_the_whole_group() {
        let mut g = group();
        let pgid = g.id();
        std::thread::sleep(Duration::from_millis(100)); // the background sleep exists
        let guard = GroupGuard::spawn(pgid, Duration::from_millis(200)).unwrap();
        // dropping the write end is what our death looks like to the guard
        drop(guard);
        let ok = gone_within(pgid, &mut g, Duration::from_secs(5));
        let _ = kill_group(pgid, SIGKILL);
        let _ = g.wait();
        assert!(ok, "group {pgid} is still there");
    }

    #[test]
    fn a_disarmed_guard_leaves_the_group_alone() {
        let mut g = group();
        let pgid = g.id();
        let guard = GroupGuard::spawn(pgid, Duration::from_millis(100)).unwrap();
        guard.disarm();
        std::thread::sleep(Duration::from_millis(500));
        let alive = group_exists(pgid);
        let _ = kill_group(pgid, SIGKILL);
        let _ = g.wait();
        assert!(alive, "a disarmed guard killed the group");
        assert!(GroupGuard::spawn(1, Duration::from_millis(100)).is_err());
    }
}

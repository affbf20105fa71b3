//! Fixtures shared by integration tests: real kernel and C-tool discovery,
//! busybox test images, and process guards that make sure no child outlives
//! a test (each child runs in its own process group, killed on drop).
//!
//! Test tiers (see ARCHITECTURE.md): unit tests need none of this;
//! integration tests use real sockets and the C tools; end-to-end tests boot
//! the real kernel through [`kernel`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod browser;
pub mod lab;

/// Find an executable on PATH; a name with a `/` is that file itself (as
/// the shell's `command -v` does), if it is executable.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        use std::os::unix::fs::PermissionsExt;
        let p = PathBuf::from(name);
        return std::fs::metadata(&p)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .then_some(p);
    }
    umlkit_sys::file::which(name)
}

/// Every process but this test whose command line contains `needle` (a
/// state root, a temp dir): what a test started and must clean up.
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    umlkit_sys::procfs::pids_mentioning(needle.as_bytes())
}

/// A tool the test needs; panics with the Debian package to install.
pub fn require(name: &str, package: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!("{name} not found on PATH: install the Debian package {package} (apt-get install {package})")
    })
}

/// The UML kernel: `$UMLKIT_KERNEL`, else `linux.uml`, else `linux` on PATH.
pub fn kernel() -> PathBuf {
    if let Some(k) = std::env::var_os("UMLKIT_KERNEL") {
        return PathBuf::from(k);
    }
    which("linux.uml")
        .or_else(|| which("linux"))
        .expect("linux.uml not found: install the Debian package user-mode-linux")
}

/// The `umlkit` binary built by cargo for this test run.
///
/// Integration tests of the `umlkit` crate get it from `CARGO_BIN_EXE_umlkit`;
/// others find it next to the test executable (`target/<profile>/umlkit`).
pub fn umlkit_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_umlkit") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/test-xxxx -> target/<profile>/umlkit
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = profile_dir.join("umlkit");
    assert!(
        p.is_file(),
        "{} not built: run cargo build first",
        p.display()
    );
    p
}

/// A temporary directory with a short path (AF_UNIX paths are limited to
/// 108 bytes), removed on drop.
pub fn short_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create temp dir in /tmp")
}

/// A child process in its own process group; the whole group is killed with
/// SIGKILL and reaped when the guard is dropped, so nothing outlives a test.
pub struct ProcGuard {
    child: Option<Child>,
    pgid: u32,
    name: String,
}

impl ProcGuard {
    /// Spawn `cmd` in a new process group.
    pub fn spawn(name: &str, cmd: Command) -> ProcGuard {
        ProcGuard::try_spawn(name, cmd).unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
    }

    /// Spawn `cmd` in a new process group; the spawn error if it fails.
    pub fn try_spawn(name: &str, mut cmd: Command) -> std::io::Result<ProcGuard> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let child = cmd.spawn()?;
        let pgid = child.id();
        Ok(ProcGuard {
            child: Some(child),
            pgid,
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pgid
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child")
    }

    /// Wait for the leader to exit, at most `timeout`; None on timeout.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while any process of the group is alive.
    pub fn group_alive(&self) -> bool {
        umlkit_sys::process::group_exists(self.pgid)
    }

    /// Kill the whole group and reap the leader.
    pub fn kill(&mut self) {
        let _ = umlkit_sys::process::kill_group(self.pgid, umlkit_sys::process::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Give the other members of the group a moment to die.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.group_alive() && Instant::now() < deadline {
            let _ = umlkit_sys::process::kill_group(self.pgid, umlkit_sys::process::SIGKILL);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        if self.child.is_some() || self.group_alive() {
            self.kill();
        }
        let _ = &self.name;
    }
}

/// Poll `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Build a minimal busybox root filesystem in `root`: /bin/busybox with a
/// link per applet, the usual mount points, and `/sbin/init` = `init_script`
/// (a shell script run by busybox sh as PID 1).
pub fn busybox_rootfs(root: &Path, init_script: &str) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| require("busybox", "busybox-static"));
    for d in [
        "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "mnt",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    let out = Command::new(&busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
    }
    let init = root.join("sbin/init");
    std::fs::write(&init, init_script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Make a sparse ext4 image of `size_mb` MiB holding `root` (mkfs.ext4 -d).
pub fn mkfs_ext4(img: &Path, size_mb: u64, root: &Path) {
    let mkfs = which("mkfs.ext4")
        .or_else(|| Some(PathBuf::from("/sbin/mkfs.ext4")).filter(|p| p.is_file()))
        .unwrap_or_else(|| require("mkfs.ext4", "e2fsprogs"));
    let f = std::fs::File::create(img).unwrap();
    f.set_len(size_mb * 1024 * 1024).unwrap();
    drop(f);
    let st = Command::new(mkfs)
        .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
        .arg(root)
        .arg(img)
        .stdout(Stdio::null())
        .status()
        .expect("run mkfs.ext4");
    assert!(st.success(), "mkfs.ext4 failed for {}", img.display());
}

/// The standard init for simple boot tests: mount proc/sys, run `body`
/// (shell text), then power off.
pub fn simple_init(body: &str) -> String {
    format!(
        "#!/bin/sh\nmount -t proc proc /proc\nmount -t sysfs sys /sys\n{body}\nsync\npoweroff -f\n"
    )
}

/// Boot the real kernel on `disk_arg` (e.g. `ubd0=cow,img`) with the given
/// umid and uml_dir, capture its console output, and wait at most `timeout`
/// for it to power off. Returns (exit status, console output).
pub fn boot_to_poweroff(
    uml_dir: &Path,
    umid: &str,
    args: &[&str],
    timeout: Duration,
) -> (Option<ExitStatus>, String) {
    let log = uml_dir.join(format!("{umid}.console.log"));
    let logf = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(kernel());
    cmd.arg(format!("umid={umid}"))
        .arg(format!("uml_dir={}", uml_dir.display()))
        .args([
            "mem=64M",
            "con=null",
            "con0=fd:0,fd:1",
            "root=/dev/ubda",
            "rw",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf);
    let mut g = ProcGuard::spawn(umid, cmd);
    let st = g.wait_timeout(timeout);
    g.kill();
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    (st, out)
}

/// The uid of a second, unprivileged local user `name` for "another user"
/// tests, created (`useradd -M`) the first time. `None`, with a note on
/// stderr, when not root: such tests then skip.
pub fn other_user(name: &str) -> Option<u32> {
    if umlkit_sys::net::euid() != 0 {
        eprintln!("skipped: needs root to create another user");
        return None;
    }
    let id = || {
        Command::new("id")
            .args(["-u", name])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
    };
    if let Some(u) = id() {
        return Some(u);
    }
    let _ = Command::new("useradd")
        .args(["-M", "-s", "/bin/sh", name])
        .status();
    Some(id().unwrap_or_else(|| panic!("useradd did not create {name}")))
}

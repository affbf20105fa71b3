//! State dirs, modes, locks and full disks (issue 8 items 3, 4, 5, 8):
//! another local user can neither prepare our state nor reach our guests'
//! sockets, whatever our umask; a full state disk is reported at once,
//! naming the file, and never keeps a lab running. Tests that need a second
//! user or a tmpfs run as root (as CI does) and say so when skipped.
#![allow(clippy::disallowed_macros)] // eprintln! in tests: the harness captures stderr

mod guest_common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use guest_common::Env;

const OTHER: &str = "umlkit-test-other";

fn is_root() -> bool {
    umlkit_sys::private::euid() == 0
}

/// A second, unprivileged local user (created once), or None when not root.
fn other_user() -> Option<&'static str> {
    testkit::other_user(OTHER).map(|_| OTHER)
}

fn as_other(args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", OTHER, "--"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("runuser")
}

/// As the other user, connect to a unix socket; returns perl's `$!` text
/// ("" when the connection succeeded).
fn other_connect(sock: &Path, dgram: bool) -> String {
    let ty = if dgram { "SOCK_DGRAM" } else { "SOCK_STREAM" };
    let script = format!(
        "use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Peer => $ARGV[0], Type => {ty}); \
         print $s ? \"\" : \"$!\";"
    );
    let o = as_other(&["perl", "-e", &script, sock.to_str().unwrap()]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn chown_other(p: &Path) {
    let st = Command::new("chown")
        .args(["-R", OTHER])
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A small tmpfs, unmounted when dropped (even when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("skipped: needs root to mount a tmpfs");
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs at {}", at.display());
        Some(Tmpfs(at.to_path_buf()))
    }

    /// Fill it up: one file grown until the file system says ENOSPC.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![0xa5u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // lazy: a process the test failed to stop may still hold it
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn pids_mentioning(needle: &str) -> Vec<u32> {
    testkit::pids_mentioning(needle)
}

/// A lab in a temp dir; its guard runs `lab clean` and kills (by pid) any
/// process still naming the state root.
struct Lab {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    state: PathBuf,
}

impl Lab {
    fn new(prefix: &str, state_in: Option<&Path>) -> Lab {
        let tmp = testkit::short_tempdir(prefix);
        let dir = tmp.path().join("lab");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("lab.conf"), "a[0]=lan\nb[0]=lan\n").unwrap();
        std::fs::write(dir.join("a.startup"), "ip addr add 10.7.0.1/24 dev eth0\n").unwrap();
        std::fs::write(dir.join("b.startup"), "ip addr add 10.7.0.2/24 dev eth0\n").unwrap();
        let state = state_in.map_or_else(|| tmp.path().join("st"), |p| p.join("st"));
        Lab { tmp, dir, state }
    }

    fn cmd(&self, sub: &str) -> Command {
        let mut c = Command::new(testkit::umlkit_bin());
        c.args(["lab", sub])
            .arg(&self.dir)
            .arg("--state-root")
            .arg(&self.state)
            .env("UMLKIT_CACHE_DIR", guest_common::cache_dir())
            .stdin(Stdio::null());
        c
    }

    fn run(&self, sub: &str) -> Output {
        self.cmd(sub).output().unwrap()
    }

    fn ok(&self, sub: &str) -> String {
        let o = self.run(sub);
        assert!(o.status.success(), "lab {sub} failed: {}", text(&o));
        text(&o)
    }

    fn leftovers(&self) -> Vec<u32> {
        pids_mentioning(self.state.to_str().unwrap())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.run("clean");
        for pid in self.leftovers() {
            let _ = umlkit_sys::process::kill(pid, umlkit_sys::process::SIGKILL);
        }
    }
}

/// Regression (issue 8.3): the lab state root was a fixed /tmp path used
/// without any check, so another user could pre-create it with a
/// `state.json` naming the victim's processes, and the victim's own
/// `lab stop|crash|clean` killed them. Now a root that is someone else's,
/// a symlink or writable by others is refused before anything is read.
#[test]
fn lab_state_root_prepared_by_another_user_is_refused() {
    if other_user().is_none() {
        return;
    }
    let lab = Lab::new("stother", None);
    std::fs::set_permissions(lab.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // a process of the victim the planted state names
    let mut sleeper = testkit::ProcGuard::spawn("sleep", {
        let mut c = Command::new("sleep");
        c.arg("300");
        c
    });
    let victim = sleeper.pid();
    let id = lab::plan::lab_id(&lab.dir.canonicalize().unwrap());
    let planted = lab.state.join(&id);
    std::fs::create_dir_all(&planted).unwrap();
    let state = serde_json::json!({
        "lab_dir": lab.dir, "switches": [],
        "machines": [{"name": "a", "pid": victim, "pgid": victim, "extra_pids": [victim]}],
    });
    std::fs::write(planted.join("state.json"), state.to_string()).unwrap();
    chown_other(&lab.state);
    for sub in ["stop", "crash", "clean"] {
        let o = lab.run(sub);
        let t = text(&o);
        assert!(
            !o.status.success(),
            "lab {sub} accepted a foreign root: {t}"
        );
        assert!(
            t.contains("not to you") && t.contains(lab.state.to_str().unwrap()),
            "lab {sub}: {t}"
        );
    }
    assert!(
        umlkit_sys::process::process_exists(victim),
        "the planted state killed the victim's process"
    );
    assert!(planted.join("state.json").exists());

    // a symlink to a dir of ours is refused too
    std::fs::remove_dir_all(&lab.state).unwrap();
    let real = lab.tmp.path().join("real");
    std::fs::create_dir_all(real.join(&id)).unwrap();
    std::fs::write(real.join(&id).join("state.json"), state.to_string()).unwrap();
    std::os::unix::fs::symlink(&real, &lab.state).unwrap();
    let o = lab.run("crash");
    assert!(!o.status.success());
    assert!(text(&o).contains("symbolic link"), "{}", text(&o));
    assert!(umlkit_sys::process::process_exists(victim));

    // and so is a world-writable one of ours
    std::fs::remove_file(&lab.state).unwrap();
    std::fs::rename(&real, &lab.state).unwrap();
    std::fs::set_permissions(&lab.state, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let o = lab.run("clean");
    assert!(!o.status.success());
    assert!(text(&o).contains("other users can write"), "{}", text(&o));
    assert!(umlkit_sys::process::process_exists(victim));
    sleeper.kill();

    // the guest store's root is checked the same way
    let env = Env::new("stgother");
    std::fs::create_dir_all(&env.state).unwrap();
    chown_other(&env.state);
    let o = env.umlkit(&["ps"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not to you"), "{}", text(&o));
}

/// Regression (issue 8.8): guest dirs were 0755, COWs and console.log 0644,
/// and under `umask 000` the exec and console sockets became 0777, so
/// another user could read a guest's disk or run commands in it as root.
#[test]
fn guest_files_and_sockets_are_private_even_under_umask_000() {
    if other_user().is_none() {
        return;
    }
    let env = Env::new("stmode");
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // a root others may enter: only the guest's own dir protects it
    std::fs::create_dir(&env.state).unwrap();
    std::fs::set_permissions(&env.state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let img = env.default_image();
    env.guard("g1");
    let o = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(testkit::umlkit_bin())
        .args(["run", "--detach", "--wait", "--name", "g1", "--disk"])
        .arg(&img)
        .env("UMLKIT_STATE_DIR", &env.state)
        .env("UMLKIT_CACHE_DIR", guest_common::cache_dir())
        .env_remove("UMLKIT_KERNEL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let g = env.state.join("g1");
    assert_eq!(mode(&g), 0o700);
    assert_eq!(mode(&g.join("u")), 0o700);
    for f in [
        "config.json",
        "state.json",
        "console.log",
        "supervisor.log",
        "ubd0.cow",
    ] {
        assert_eq!(mode(&g.join(f)) & 0o077, 0, "{f} is {:o}", mode(&g.join(f)));
    }
    for s in ["exec.sock", "console.sock"] {
        assert_eq!(mode(&g.join(s)), 0o600, "{s}");
    }
    let mconsole = g.join("u/g1/mconsole");
    assert_eq!(mode(&mconsole) & 0o077, 0, "mconsole {:o}", mode(&mconsole));

    let denied = |why: &str| why.contains("Permission denied");
    for (s, dgram) in [
        (g.join("exec.sock"), false),
        (g.join("console.sock"), false),
        (mconsole.clone(), true),
    ] {
        let why = other_connect(&s, dgram);
        assert!(denied(&why), "other user reached {}: {why:?}", s.display());
    }
    // even with the guest dir opened up, the sockets themselves refuse
    std::fs::set_permissions(&g, std::fs::Permissions::from_mode(0o755)).unwrap();
    for s in [g.join("exec.sock"), g.join("console.sock")] {
        let why = other_connect(&s, false);
        assert!(denied(&why), "other user reached {}: {why:?}", s.display());
    }
    std::fs::set_permissions(&g, std::fs::Permissions::from_mode(0o700)).unwrap();
    // and we still can
    let out = env.ok(&["exec", "g1", "--", "echo", "mine"]);
    assert_eq!(out.trim(), "mine");
    env.ok(&["halt", "g1"]);
}

/// Regression (issue 8.5): a failed write of a guest's state was only
/// logged; `ps` kept showing "booting" and `run --wait` ended 120 s later
/// with a misleading timeout. Now the guest is stopped and `run --wait`
/// fails at once naming the file, whichever write hits the full disk.
#[test]
fn guest_state_dir_full_run_wait_fails_at_once_naming_the_file() {
    let env = Env::new("stfull");
    let img = env.default_image();
    // 4k: config.json fits, the first state write does not (reported by
    // the supervisor at start-up); 8k and 16k: the kernel runs, the state
    // write when the agent says hello fails.
    for size in ["4k", "8k", "16k"] {
        let mnt = env.path().join(format!("full{size}"));
        let Some(_fs) = Tmpfs::mount(&mnt, size) else {
            return;
        };
        let cow = env.path().join(format!("cow{size}"));
        let disk = format!("{}:cow={}", img.display(), cow.display());
        let t0 = Instant::now();
        let o = env
            .cmd(&["run", "--detach", "--wait", "--name", "g1", "--disk", &disk])
            .env("UMLKIT_STATE_DIR", mnt.join("s"))
            .output()
            .unwrap();
        let took = t0.elapsed();
        let t = text(&o);
        // guard: whatever the state says, kill it
        let sj = mnt.join("s/g1/state.json");
        let v: Option<serde_json::Value> = std::fs::read(&sj)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let leftover = v
            .as_ref()
            .map(|v| {
                guest::supervisor::guest_processes(
                    v["pgid"].as_u64().map(|g| g as u32),
                    v["marker"].as_str(),
                )
            })
            .unwrap_or_default();
        for p in &leftover {
            let _ = umlkit_sys::process::kill(*p, umlkit_sys::process::SIGKILL);
        }
        assert!(!o.status.success(), "{size}: run --wait succeeded: {t}");
        assert!(
            t.contains(sj.to_str().unwrap()) && t.contains("No space left on device"),
            "{size}: {t}"
        );
        assert!(took < Duration::from_secs(30), "{size}: took {took:?}");
        assert!(
            leftover.is_empty(),
            "{size}: guest left running: {leftover:?}"
        );
        if let Some(v) = v {
            // when recorded at all, the state says what happened
            assert!(
                v["error"].as_str().unwrap_or("").contains("state.json"),
                "{v}"
            );
            let ps = env
                .cmd(&["ps", "--json"])
                .env("UMLKIT_STATE_DIR", mnt.join("s"))
                .output()
                .unwrap();
            let ps = String::from_utf8_lossy(&ps.stdout);
            assert!(
                !ps.contains("\"booting\""),
                "{size}: ps still says booting: {ps}"
            );
        }
    }
}

/// Issue 8 item 5 for labs: a full lab state dir must not keep a lab
/// running: `lab stop` stops every machine and switch (and says the state
/// could not be updated), `lab clean` stops and removes everything.
#[test]
fn lab_state_dir_full_stop_and_clean_still_stop_everything() {
    if !is_root() {
        eprintln!("skipped: needs root to mount a tmpfs");
        return;
    }
    let tmp = testkit::short_tempdir("stlabfull");
    let Some(fs) = Tmpfs::mount(&tmp.path().join("m"), "96m") else {
        return;
    };
    let lab = Lab::new("stlabfull", Some(&fs.0));
    lab.ok("start");
    assert_eq!(mode(&lab.state), 0o700);
    let sd = lab
        .state
        .join(lab::plan::lab_id(&lab.dir.canonicalize().unwrap()));
    assert_eq!(mode(&sd), 0o700);
    assert_eq!(mode(&sd.join("state.json")), 0o600);
    assert!(!lab.leftovers().is_empty());
    fs.fill();
    let o = lab.run("stop");
    assert!(
        testkit::wait_until(Duration::from_secs(10), || lab.leftovers().is_empty()),
        "lab stop on a full disk left processes: {:?}\n{}",
        lab.leftovers(),
        text(&o)
    );
    if !o.status.success() {
        assert!(text(&o).contains("state.json"), "{}", text(&o));
    }
    // start again (room made), fill again, clean
    std::fs::remove_file(fs.0.join("filler")).unwrap();
    lab.ok("start");
    fs.fill();
    lab.ok("clean");
    assert!(
        lab.leftovers().is_empty(),
        "clean left {:?}",
        lab.leftovers()
    );
    assert!(!sd.exists(), "clean left the state dir");
}

/// Regression (issue 10): `lab clean` exited 1 and left the lab's
/// processes running when lab.conf no longer parsed; it now works from the
/// plan saved in the state folder.
#[test]
fn lab_clean_works_from_saved_state_when_lab_conf_breaks() {
    let lab = Lab::new("stbroken", None);
    lab.ok("start");
    assert!(!lab.leftovers().is_empty());
    std::fs::write(lab.dir.join("lab.conf"), "a[0]=lan\nb[0]=lan\na[0]=other\n").unwrap();
    assert!(
        !lab.run("info").status.success(),
        "the broken lab.conf still loads"
    );
    let out = lab.ok("clean");
    assert!(out.contains("plan saved at start"), "{out}");
    assert!(
        lab.leftovers().is_empty(),
        "clean left {:?}",
        lab.leftovers()
    );
    assert!(
        std::fs::read_dir(&lab.state).map_or(true, |mut d| d.next().is_none()),
        "clean left state behind"
    );
}

/// Regression (issue 10): with `UMLKIT_LAB_STATE` relative, the state
/// paths were relative in the plan but absolute in the guests' command
/// lines, so `lab clean` did not find the kernels and leaked them.
#[test]
fn lab_relative_state_root_clean_leaves_nothing() {
    let lab = Lab::new("strel", None);
    let run = |sub: &str| {
        Command::new(testkit::umlkit_bin())
            .args(["lab", sub, "lab"])
            .current_dir(lab.tmp.path())
            .env("UMLKIT_LAB_STATE", "st")
            .env("UMLKIT_CACHE_DIR", guest_common::cache_dir())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = run("start");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !lab.leftovers().is_empty(),
        "nothing runs under {}",
        lab.state.display()
    );
    let o = run("clean");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        lab.leftovers().is_empty(),
        "clean leaked {:?}",
        lab.leftovers()
    );
}

/// Issue 8 item 5 for the image cache: a full cache fails naming the file
/// that could not be written (it used to name the source agent binary) and
/// leaves no half-built image or staging tree; a cache dir others can write
/// to (they could plant an image we would boot) is refused.
#[test]
fn image_cache_full_fails_naming_the_file_and_leaves_nothing() {
    let tmp = testkit::short_tempdir("stimg");
    let Some(fs) = Tmpfs::mount(&tmp.path().join("c"), "2m") else {
        return;
    };
    let cache = fs.0.join("images");
    let build = |cache: &Path| {
        Command::new(testkit::umlkit_bin())
            .args(["image", "default"])
            .env("UMLKIT_CACHE_DIR", cache)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = build(&cache);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(cache.to_str().unwrap()) && t.contains("No space left on device"),
        "{t}"
    );
    assert_eq!(mode(&cache), 0o700);
    let left: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    let ww = tmp.path().join("ww");
    std::fs::create_dir(&ww).unwrap();
    std::fs::set_permissions(&ww, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = build(&ww);
    assert!(!o.status.success());
    assert!(text(&o).contains("other users can write"), "{}", text(&o));
}

/// Regression (issue 8.4): two `lab start` commands on one lab at once
/// (one machine each) overwrote each other's state records, raced on
/// creating and removing the state folders, and each started a switch for
/// the shared domain. Now both machines are recorded, share one switch and
/// reach each other; one `lab stop` stops everything.
#[test]
fn lab_two_concurrent_starts_lose_nothing() {
    let lab = Lab::new("stconc", None);
    let ca = lab.cmd("start").arg("a").spawn().unwrap();
    let cb = lab.cmd("start").arg("b").spawn().unwrap();
    let (oa, ob) = (
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    );
    assert!(
        oa.status.success() && ob.status.success(),
        "{} {}",
        text(&oa),
        text(&ob)
    );
    let st: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(
        &lab.cmd("status").arg("--json").output().unwrap().stdout,
    ))
    .unwrap();
    let running: Vec<&str> = st["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "running")
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(running, ["a", "b"], "{st}");
    let switches = pids_mentioning("switch")
        .into_iter()
        .filter(|p| {
            let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            c.contains(&format!("{}/", lab.state.display())) && c.contains("/sw/0 ")
        })
        .count();
    assert_eq!(switches, 1, "switches for one domain");
    let o = Command::new(testkit::umlkit_bin())
        .args(["lab", "exec", "--state-root"])
        .arg(&lab.state)
        .arg("-d")
        .arg(&lab.dir)
        .args(["a", "--", "ping", "-c", "1", "-W", "3", "10.7.0.2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "a cannot reach b: {}", text(&o));
    lab.ok("stop");
    assert!(
        lab.leftovers().is_empty(),
        "stop left {:?}",
        lab.leftovers()
    );
}

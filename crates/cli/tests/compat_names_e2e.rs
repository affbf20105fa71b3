//! Netkit and Kathará command names through the links `umlkit install-links`
//! makes, on the real kernel: `lstart`, `linfo`, `kathara exec`, `lclean`,
//! `lrestart`, `kathara lstart`/`lclean` from a lab folder, and `vstart`/`vlist`/`vhalt`
//! with a collision domain. A guard cleans the lab, kills the guest and the
//! domain's switch (by PID) even when the test fails.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

struct Env {
    tmp: tempfile::TempDir,
    bin: PathBuf,
    lab: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = testkit::short_tempdir("compat");
        let bin = tmp.path().join("bin");
        let lab = tmp.path().join("lab");
        std::fs::create_dir_all(&lab).unwrap();
        std::fs::write(lab.join("lab.conf"), "pc1[0]=A\npc1[mem]=64\n").unwrap();
        std::fs::write(
            lab.join("pc1.startup"),
            "ip addr add 10.9.0.1/24 dev eth0\nip link set eth0 up\n",
        )
        .unwrap();
        Env { tmp, bin, lab }
    }

    fn state(&self) -> PathBuf {
        self.tmp.path().join("st")
    }

    /// Run the link NAME from the lab folder with private state roots.
    fn run(&self, name: &str, args: &[&str]) -> Output {
        Command::new(self.bin.join(name))
            .args(args)
            .current_dir(&self.lab)
            .env("UMLKIT_LAB_STATE", self.tmp.path().join("labst"))
            .env("UMLKIT_STATE_DIR", self.state())
            .env(
                "UMLKIT_CACHE_DIR",
                PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("umlkit-images"),
            )
            .env_remove("UMLKIT_KERNEL")
            .stdin(Stdio::null())
            .output()
            .expect("run a link")
    }

    fn ok(&self, name: &str, args: &[&str]) -> Output {
        let o = self.run(name, args);
        assert!(
            o.status.success(),
            "{name} {args:?}: {:?}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    fn switch_pid(&self) -> Option<i32> {
        let p = self.state().join(".domains/V.pid");
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.bin.join("lclean").exists() {
            let _ = self.run("lclean", &[]);
            let _ = self.run("vcrash", &["vm1"]);
        }
        if let Some(pid) = self.switch_pid() {
            // the switch this test started, by its PID
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn install_links_never_replaces_a_file_that_is_not_ours() {
    let tmp = testkit::short_tempdir("links");
    let dir = tmp.path().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lstart"), "#!/bin/sh\necho netkit\n").unwrap();
    std::os::unix::fs::symlink("/bin/true", dir.join("vstart")).unwrap();
    let run = |force: bool| {
        let mut c = Command::new(testkit::umlkit_bin());
        c.arg("install-links").arg(&dir);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    let o = run(false);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("lstart exists and is not a link"), "{err}");
    assert!(err.contains("vstart is a link to something else"), "{err}");
    // the others are made
    for n in ["kathara", "lclean", "vhalt", "uml_switch"] {
        assert!(dir.join(n).symlink_metadata().unwrap().is_symlink(), "{n}");
    }
    // --force replaces the foreign symlink, never the file
    let o = run(true);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.join("lstart")).unwrap(),
        "#!/bin/sh\necho netkit\n"
    );
    assert_eq!(
        dir.join("vstart").canonicalize().unwrap(),
        testkit::umlkit_bin().canonicalize().unwrap()
    );
    // a second run keeps what is ours
    std::fs::remove_file(dir.join("lstart")).unwrap();
    let o = run(false);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("(already there)"));
}

#[test]
fn refused_flags_are_named_with_exit_status_2() {
    let e = Env::new();
    let o = Command::new(testkit::umlkit_bin())
        .arg("install-links")
        .arg(&e.bin)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    for (name, args, want) in [
        (
            "lstart",
            &["-o", "mem=128"][..],
            "lstart: -o is not supported",
        ),
        (
            "lstart",
            &["--bogus"][..],
            "option --bogus is not supported",
        ),
        ("kathara", &["wipe"][..], "kathara wipe is not supported"),
        ("vstart", &["vm", "--eth0=../x"][..], "collision domain"),
    ] {
        let o = e.run(name, args);
        assert_eq!(o.status.code(), Some(2), "{name} {args:?}");
        assert!(text(&o.stderr).contains(want), "{}", text(&o.stderr));
    }
    // nothing was started or written
    assert!(!e.state().exists());
    assert!(!e.tmp.path().join("labst").exists());
}

#[test]
fn netkit_and_kathara_names_drive_a_lab_and_a_vstart_machine() {
    testkit::kernel();
    let e = Env::new();
    let o = Command::new(testkit::umlkit_bin())
        .arg("install-links")
        .arg(&e.bin)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));

    // Netkit, from the lab folder
    e.ok("lstart", &["-f"]);
    let info = text(&e.ok("linfo", &[]).stdout);
    assert!(info.contains("pc1"), "{info}");
    let o = e.ok("kathara", &["exec", "pc1", "--", "ip", "-4", "-o", "addr"]);
    assert!(
        text(&o.stdout).contains("10.9.0.1/24"),
        "{}",
        text(&o.stdout)
    );
    // the command's status is the exit status
    let o = e.run("kathara", &["exec", "pc1", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    e.ok("lclean", &[]);

    // Kathará, naming the folder
    let dir = e.lab.to_str().unwrap().to_string();
    let o = e.ok("kathara", &["lstart", "--noterminals", "-d", &dir]);
    assert!(
        text(&o.stderr).contains("note: kathara lstart: ignoring --noterminals"),
        "{}",
        text(&o.stderr)
    );
    let o = e.ok("kathara", &["exec", "-d", &dir, "pc1", "echo", "hello"]);
    assert_eq!(text(&o.stdout).trim(), "hello");
    // lhalt: graceful stop, the lab's files stay until lclean
    e.ok("lhalt", &["-d", &dir, "-q"]);
    let o = e.run("kathara", &["exec", "-d", &dir, "pc1", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    // lrestart: lhalt then lstart of the same lab
    let o = e.ok("lrestart", &["-d", &dir, "-q"]);
    assert!(
        text(&o.stderr).contains("ignoring -q"),
        "{}",
        text(&o.stderr)
    );
    let o = e.ok("kathara", &["exec", "-d", &dir, "pc1", "echo", "again"]);
    assert_eq!(text(&o.stdout).trim(), "again");
    e.ok("kathara", &["lclean", "-d", &dir]);

    // vstart / vlist / vhalt with a collision domain
    e.ok("vstart", &["vm1", "--eth0=V", "--mem=64", "--xterm=gnome"]);
    assert!(testkit::wait_until(Duration::from_secs(5), || e
        .switch_pid()
        .is_some()));
    let ctl = e.state().join(".domains/V/ctl");
    assert!(
        std::os::unix::net::UnixStream::connect(&ctl).is_ok(),
        "{}",
        ctl.display()
    );
    let list = text(&e.ok("vlist", &[]).stdout);
    assert!(list.contains("vm1"), "{list}");
    let o = e.ok(
        "kathara",
        &["exec", "-v", "vm1", "cat /sys/class/net/eth0/operstate"],
    );
    assert!(!text(&o.stdout).trim().is_empty());
    e.ok("vhalt", &["-r", "vm1"]);
    let list = text(&e.ok("vlist", &[]).stdout);
    assert!(!list.contains("vm1"), "{list}");
}

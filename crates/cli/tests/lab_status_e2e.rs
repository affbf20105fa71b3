//! Status that does not lie (issue 8 item 10), on the real kernel: a `lab
//! start` SIGKILLed before the boot steps ran is not "up" on a rerun (the
//! machine is restarted and the steps run), and a SIGKILLed lab switch shows
//! as dead in `lab status` (exit 1) and makes a rerun name the machines that
//! lost their link. Every lab lives in its own temp dir and state root; a
//! guard runs `lab clean` and kills any leftover of that state root by pid.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use umlkit_sys::process as sp;

struct TestLab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    state: PathBuf,
}

fn pids_mentioning(needle: &str) -> Vec<u32> {
    testkit::pids_mentioning(needle)
}

impl TestLab {
    fn new(prefix: &str, files: &[(&str, &str)]) -> TestLab {
        let tmp = testkit::short_tempdir(prefix);
        let dir = tmp.path().join("lab");
        let state = tmp.path().join("st");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        TestLab {
            _tmp: tmp,
            dir,
            state,
        }
    }

    fn cmd(&self, sub: &str, rest: &[&str]) -> Command {
        let mut c = Command::new(testkit::umlkit_bin());
        c.args(["lab", sub, "--state-root"])
            .arg(&self.state)
            .arg(&self.dir)
            .args(rest)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, sub: &str, rest: &[&str]) -> Output {
        self.cmd(sub, rest).output().expect("run umlkit")
    }

    fn exec(&self, machine: &str, cmd: &str) -> Output {
        Command::new(testkit::umlkit_bin())
            .args(["lab", "exec", "--state-root"])
            .arg(&self.state)
            .arg("-d")
            .arg(&self.dir)
            .args([machine, "--", cmd])
            .stdin(Stdio::null())
            .output()
            .expect("run umlkit")
    }

    /// The lab's state.json (one lab per state root).
    fn state_json(&self) -> serde_json::Value {
        let d = std::fs::read_dir(&self.state)
            .unwrap()
            .flatten()
            .find(|e| e.path().join("state.json").is_file())
            .expect("a lab state folder")
            .path();
        serde_json::from_str(&std::fs::read_to_string(d.join("state.json")).unwrap()).unwrap()
    }

    fn status(&self) -> (Option<i32>, serde_json::Value, String) {
        let o = self.run("status", &["--json"]);
        let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
        (
            o.status.code(),
            v,
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.run("clean", &[]);
        for pid in pids_mentioning(self.state.to_str().unwrap()) {
            let _ = sp::kill(pid, sp::SIGKILL);
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn machine<'a>(st: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    st["machines"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn lab_start_killed_before_boot_steps_is_not_up_on_rerun() {
    // The boot steps block until the lab folder holds `go` (hostfs).
    let lab = TestLab::new(
        "lstk",
        &[
            ("lab.conf", "pc1[0]=A\n"),
            (
                "pc1.startup",
                "i=0; while [ ! -f /hostlab/go ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done\ntouch /tmp/steps-done\n",
            ),
        ],
    );
    let mut start = testkit::ProcGuard::spawn("lab start", {
        let mut c = lab.cmd("start", &[]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    });
    // Wait until the machine runs (its agent answers) while the steps block.
    assert!(
        testkit::wait_until(Duration::from_secs(60), || lab
            .exec("pc1", "true")
            .status
            .success()),
        "pc1 never booted"
    );
    sp::kill(start.pid(), sp::SIGKILL).unwrap();
    assert!(start.wait_timeout(Duration::from_secs(10)).is_some());

    let (code, st, err) = lab.status();
    assert_eq!(machine(&st, "pc1")["state"], "interrupted", "{st}\n{err}");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("boot steps never finished"), "{err}");

    std::fs::write(lab.dir.join("go"), b"").unwrap();
    let o = lab.run("start", &[]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("already running"), "{out}");
    assert!(out.contains("restarting"), "{out}");
    let o = lab.exec("pc1", "test -f /tmp/steps-done");
    assert!(
        o.status.success(),
        "the boot steps did not run: {}",
        text(&o)
    );
    let (code, st, err) = lab.status();
    assert_eq!(machine(&st, "pc1")["state"], "running", "{st}");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn lab_switch_killed_shows_dead_and_rerun_names_lost_links() {
    let lab = TestLab::new(
        "lswk",
        &[
            ("lab.conf", "a[0]=A\nb[0]=A\n"),
            ("a.startup", "ip addr add 10.7.0.1/24 dev eth0\n"),
            ("b.startup", "ip addr add 10.7.0.2/24 dev eth0\n"),
        ],
    );
    let o = lab.run("start", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let (code, _, err) = lab.status();
    assert_eq!(code, Some(0), "{err}");

    let sw = lab.state_json()["switches"][0]["pid"].as_u64().unwrap() as u32;
    sp::kill(sw, sp::SIGKILL).unwrap();
    assert!(testkit::wait_until(Duration::from_secs(10), || {
        !sp::process_exists(sw) || sp::is_zombie(sw)
    }));

    let (code, st, err) = lab.status();
    assert_eq!(code, Some(1), "{st}\n{err}");
    assert_eq!(st["domains"][0]["state"], "dead", "{st}");
    assert!(err.contains("switch of domain A is dead"), "{err}");
    assert_eq!(machine(&st, "a")["lost_links"][0], "A", "{st}");
    let human = text(&lab.run("status", &[]));
    assert!(
        human.contains("dead") && human.contains("LINK LOST"),
        "{human}"
    );

    // A rerun restarts the switch but says which machines lost their link.
    let o = lab.run("start", &[]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("lost the link")
            && out.contains("lab restart")
            && out.contains("a (domain A)"),
        "{out}"
    );
    let (code, st, _) = lab.status();
    assert_eq!(st["domains"][0]["state"], "running", "{st}");
    assert_eq!(code, Some(1), "links are still lost: {st}");

    // The fix it names works.
    let o = lab.run("restart", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let (code, st, err) = lab.status();
    assert_eq!(code, Some(0), "{st}\n{err}");
    let o = lab.exec("a", "ping -c 1 -W 3 10.7.0.2");
    assert!(o.status.success(), "{}", text(&o));
}

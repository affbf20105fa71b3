//! A lab folder for end-to-end `umlkit lab` tests: its own temp dir and
//! state root; on drop `umlkit lab clean` runs and any process still naming
//! the state root is killed (by pid), even when the test failed.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use umlkit_sys::process as sp;

/// One lab (files under `dir`) with its own state root `state`.
pub struct TestLab {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub state: PathBuf,
}

/// Processes (other than this one) whose command line contains `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    crate::pids_mentioning(needle)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl TestLab {
    /// A lab folder holding `files` (path relative to the folder, text).
    pub fn new(prefix: &str, files: &[(&str, &str)]) -> TestLab {
        let tmp = crate::short_tempdir(prefix);
        let dir = tmp.path().join("lab");
        let state = tmp.path().join("st");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        TestLab {
            _tmp: tmp,
            dir,
            state,
        }
    }

    /// The lab folder as a string (for argument lists).
    pub fn d(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// `umlkit lab ARGS[0] --state-root STATE ARGS[1..]`, stdin closed.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(crate::umlkit_bin());
        c.arg("lab")
            .arg(args[0])
            .arg("--state-root")
            .arg(&self.state)
            .args(&args[1..])
            .stdin(Stdio::null());
        c
    }

    /// `umlkit lab SUB --state-root STATE DIR REST`.
    pub fn cmd_dir(&self, sub: &str, rest: &[&str]) -> Command {
        let mut a = vec![sub, self.d()];
        a.extend_from_slice(rest);
        self.cmd(&a)
    }

    /// Run [`TestLab::cmd`].
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run umlkit")
    }

    /// Run [`TestLab::cmd_dir`].
    pub fn run_dir(&self, sub: &str, rest: &[&str]) -> Output {
        self.cmd_dir(sub, rest).output().expect("run umlkit")
    }

    /// The whole console log of every guest under the state root whose
    /// kernel panicked: the lines before the panic say why, and the state
    /// root is removed with the test.
    pub fn panicked_consoles(&self) -> String {
        let mut out = String::new();
        let mut stack = vec![self.state.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(p);
                } else if p.file_name().is_some_and(|n| n == "console.log") {
                    let log = std::fs::read_to_string(&p).unwrap_or_default();
                    if log.contains("Kernel panic") {
                        out.push_str(&format!("\n--- {} ---\n{log}", p.display()));
                    }
                }
            }
        }
        out
    }

    /// [`TestLab::run`], which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "umlkit lab {args:?} failed: {}{}",
            text(&o),
            self.panicked_consoles()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// [`TestLab::run_dir`], which must succeed; its stdout.
    pub fn ok_dir(&self, sub: &str, rest: &[&str]) -> String {
        let o = self.run_dir(sub, rest);
        assert!(
            o.status.success(),
            "umlkit lab {sub} {rest:?} failed: {}{}",
            text(&o),
            self.panicked_consoles()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `umlkit lab exec -d DIR MACHINE -- CMD`.
    pub fn exec(&self, machine: &str, cmd: &str) -> Output {
        self.run(&["exec", "-d", self.d(), machine, "--", cmd])
    }

    /// [`TestLab::exec`]: (exit code, stdout then stderr).
    pub fn exec_text(&self, machine: &str, cmd: &str) -> (Option<i32>, String) {
        let o = self.exec(machine, cmd);
        (o.status.code(), text(&o))
    }

    /// [`TestLab::exec`], which must succeed; its stdout.
    pub fn exec_ok(&self, machine: &str, cmd: &str) -> String {
        let o = self.exec(machine, cmd);
        assert!(
            o.status.success(),
            "{machine}: `{cmd}` failed ({:?}): {}",
            o.status.code(),
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Processes still naming this lab's state root.
    pub fn leftovers(&self) -> Vec<u32> {
        pids_mentioning(self.state.to_str().unwrap())
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.run_dir("clean", &[]);
        for pid in self.leftovers() {
            let _ = sp::kill(pid, sp::SIGKILL);
        }
    }
}

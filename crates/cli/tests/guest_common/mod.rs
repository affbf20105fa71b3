//! Shared helpers for the guest end-to-end tests: a private state root per
//! test, the shared image cache under the cargo target dir, and a guard that
//! kills every guest a test started (supervisor by pid, kernel by process
//! group) so nothing outlives a test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub state: PathBuf,
    guests: std::cell::RefCell<Vec<String>>,
}

pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("umlkit-images")
}

impl Env {
    pub fn new(prefix: &str) -> Env {
        let tmp = testkit::short_tempdir(prefix);
        let state = tmp.path().join("s");
        Env {
            tmp,
            state,
            guests: Default::default(),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(testkit::umlkit_bin());
        c.args(args)
            .env("UMLKIT_STATE_DIR", &self.state)
            .env("UMLKIT_CACHE_DIR", cache_dir())
            .env_remove("UMLKIT_KERNEL")
            .stdin(Stdio::null());
        c
    }

    pub fn umlkit(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run umlkit")
    }

    /// Run, expect success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.umlkit(args);
        assert!(
            o.status.success(),
            "umlkit {args:?} failed: {}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The default image (built once into the shared cache).
    pub fn default_image(&self) -> PathBuf {
        PathBuf::from(self.ok(&["image", "default"]).trim())
    }

    /// `umlkit run --detach --wait --name NAME ARGS...`, guarded.
    pub fn start(&self, name: &str, extra: &[&str]) {
        self.guests.borrow_mut().push(name.to_string());
        let mut args = vec!["run", "--detach", "--wait", "--name", name];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    pub fn guard(&self, name: &str) {
        self.guests.borrow_mut().push(name.to_string());
    }

    pub fn state_json(&self, name: &str) -> serde_json::Value {
        let p = self.state.join(name).join("state.json");
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    pub fn ps(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["ps", "--json"])).unwrap()
    }

    pub fn ps_entry(&self, name: &str) -> serde_json::Value {
        self.ps()
            .into_iter()
            .find(|g| g["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in ps"))
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
}

/// Live host processes of a guest (its process group and every process
/// carrying its environment marker, e.g. helpers that left the group).
pub fn leftovers(env: &Env, name: &str) -> Vec<u32> {
    let v = env.state_json(name);
    guest::supervisor::guest_processes(v["pgid"].as_u64().map(|g| g as u32), v["marker"].as_str())
}

impl Drop for Env {
    fn drop(&mut self) {
        for name in self.guests.borrow().iter() {
            let p = self.state.join(name).join("state.json");
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            if let Some(pid) = v["supervisor_pid"].as_u64() {
                let _ = umlkit_sys::process::kill(pid as u32, umlkit_sys::process::SIGKILL);
            }
            let pgid = v["pgid"].as_u64().map(|g| g as u32);
            guest::supervisor::kill_all(pgid, v["marker"].as_str());
        }
    }
}

//! Process identity (issue 8 item 10): a guest is its pid *and* the start
//! time recorded when it was started. A dead guest whose pid the system gave
//! to an unrelated process must show as dead, and `kill`/`rm` must leave that
//! process alone. `prune --uml-dir` removes only UML instance dirs.

mod guest_common;

use std::process::Command;
use std::time::Duration;

use guest_common::Env;
use testkit::ProcGuard;
use umlkit_sys::process as sp;

/// A `sleep` in its own process group, killed when the guard drops.
fn unrelated_sleep() -> ProcGuard {
    let mut c = Command::new("sleep");
    c.arg("300");
    ProcGuard::spawn("sleep", c)
}

/// Write `<state>/<name>/state.json` naming `pid` (as supervisor, kernel and
/// process group) with a start time that is not the process's own.
fn write_reused_pid_state(env: &Env, name: &str, pid: u32) {
    let dir = env.state.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let real = sp::start_time(pid).expect("sleep start time");
    let cfg = guest::GuestConfig::new(name);
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let st = guest::State {
        name: name.into(),
        supervisor_pid: pid,
        supervisor_start: Some(real + 7),
        pid: Some(pid),
        pid_start: Some(real + 7),
        pgid: Some(pid),
        started_unix_ms: 1,
        ready_unix_ms: Some(2),
        boots: 1,
        ended_unix_ms: None,
        ending: None,
        kernel: "/usr/bin/linux.uml".into(),
        cmdline: vec![],
        config: cfg,
        error: None,
        marker: Some(format!("{pid}:{}", dir.display())),
        io: Default::default(),
    };
    st.save(&dir.join("state.json")).unwrap();
}

#[test]
fn reused_pid_is_dead_and_kill_spares_the_unrelated_process() {
    let env = Env::new("ugid");
    let mut sleep = unrelated_sleep();
    let pid = sleep.pid();
    write_reused_pid_state(&env, "ghost", pid);

    let g = env.ps_entry("ghost");
    assert_eq!(g["phase"], "dead", "a reused pid is not the guest: {g}");
    assert!(g["processes"].as_array().unwrap().is_empty());

    let o = env.umlkit(&["kill", "ghost"]);
    assert!(o.status.success(), "{o:?}");
    let o = env.umlkit(&["rm", "ghost"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        sleep.child_mut().try_wait().unwrap().is_none(),
        "umlkit kill/rm hit the unrelated process that reused the guest's pid"
    );
    assert!(sp::ProcessId::of(pid).alive());
}

#[test]
fn state_without_start_times_still_reads() {
    // state.json written before start times were recorded: pid-only check
    let env = Env::new("ugid");
    let dir = env.state.join("old");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = guest::GuestConfig::new("old");
    let mut v = serde_json::json!({
        "name": "old", "supervisor_pid": 999_999_999u32, "pid": 999_999_999u32,
        "pgid": 999_999_999u32, "started_unix_ms": 1, "ready_unix_ms": null,
        "ended_unix_ms": null, "ending": null, "kernel": "/usr/bin/linux.uml",
        "cmdline": [], "error": null,
    });
    v["config"] = serde_json::to_value(&cfg).unwrap();
    std::fs::write(dir.join("state.json"), v.to_string()).unwrap();
    assert_eq!(env.ps_entry("old")["phase"], "dead");
}

#[test]
fn prune_uml_dir_removes_only_stale_uml_instance_dirs() {
    let env = Env::new("ugid");
    let d = env.path().join("uml");
    let mut sleep = unrelated_sleep();
    // a pid that is gone: a child we reaped
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    let dead_pid = dead.id();
    assert!(testkit::wait_until(Duration::from_secs(2), || {
        !sp::process_exists(dead_pid)
    }));

    let mk = |name: &str, pid: u32, extra: Option<&str>| {
        let p = d.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("pid"), format!("{pid}\n")).unwrap();
        if let Some(f) = extra {
            std::fs::write(p.join(f), b"mine").unwrap();
        }
    };
    mk("live-foreign", sleep.pid(), Some("notes.txt"));
    mk("live", sleep.pid(), None);
    mk("dead-foreign", dead_pid, Some("notes.txt"));
    mk("stale", dead_pid, None);
    // a symlinked dir elsewhere is never followed
    let outside = env.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("pid"), format!("{dead_pid}\n")).unwrap();
    std::os::unix::fs::symlink(&outside, d.join("link")).unwrap();

    let out = env.ok(&["prune", "--uml-dir", d.to_str().unwrap()]);
    assert!(out.contains("stale"), "{out}");
    assert!(
        !d.join("stale").exists(),
        "the stale instance dir stays: {out}"
    );
    for kept in ["live-foreign", "live", "dead-foreign"] {
        assert!(
            d.join(kept).join("pid").exists(),
            "prune removed {kept}: {out}"
        );
    }
    assert!(d.join("link").symlink_metadata().is_ok());
    assert!(outside.join("pid").exists());
    assert!(sleep.child_mut().try_wait().unwrap().is_none());
}

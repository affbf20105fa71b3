//! End-to-end: a detached guest from the default image on the real kernel —
//! ps, exec (output, exit codes, stdin, binary data, concurrency), mconsole,
//! disk hot-plug, halt without leftovers, crash detection and cleanup.

mod guest_common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use guest_common::{leftovers, Env};

fn kernel_release(env: &Env, name: &str) -> String {
    // `version` = "Linux <nodename> <release> ..."
    let v = env.ok(&["mconsole", name, "version"]);
    v.split_whitespace().nth(3).unwrap().to_string()
}

#[test]
fn guest_lifecycle_exec_mconsole_disk_halt() {
    let env = Env::new("ugl");
    let img = env.default_image();
    env.start(
        "g1",
        &[
            "--disk",
            img.to_str().unwrap(),
            "--",
            "umlkit.ip.eth9=10.9.9.9/24",
        ],
    );

    // ps shows it running, with its kernel processes
    let g = env.ps_entry("g1");
    assert_eq!(g["phase"], "running");
    let pid = g["pid"].as_u64().unwrap() as u32;
    assert!(g["processes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p.as_u64() == Some(pid as u64)));
    assert!(g["rss_kb"].as_u64().unwrap() > 0);

    // exec: output and exit code
    let out = env.umlkit(&["exec", "g1", "--", "cat", "/proc/cmdline"]);
    assert!(out.status.success());
    let cmdline = String::from_utf8(out.stdout).unwrap();
    assert!(cmdline.contains("umlkit.hostname=g1"), "{cmdline}");
    assert!(cmdline.contains("umlkit.ip.eth9=10.9.9.9/24"), "{cmdline}");
    let uname = env.ok(&["exec", "g1", "--", "uname", "-r"]);
    assert_eq!(uname.trim(), kernel_release(&env, "g1"));
    assert_eq!(env.ok(&["exec", "g1", "--", "hostname"]).trim(), "g1");

    // failing commands keep their status and stderr
    let out = env.umlkit(&["exec", "g1", "--", "sh", "-c", "echo oops >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert!(out.stdout.is_empty());
    let out = env.umlkit(&["exec", "g1", "--", "/no/such/program"]);
    assert_eq!(out.status.code(), Some(127));

    // stdin is forwarded with -i
    let mut c = env.cmd(&["exec", "-i", "g1", "--", "sh", "-c", "tr a-z A-Z; echo end"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut ch = c.spawn().unwrap();
    ch.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = ch.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO\nend\n");

    // binary stdin round-trips too (flow-controlled towards the guest)
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut c = env.cmd(&["exec", "-i", "g1", "--", "cat"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut ch = c.spawn().unwrap();
    let mut input = ch.stdin.take().unwrap();
    let d2 = data.clone();
    let w = std::thread::spawn(move || input.write_all(&d2).unwrap());
    let out = ch.wait_with_output().unwrap();
    w.join().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "stdin bytes changed on the way");

    let out = env.umlkit(&["exec", "g1", "--", "cat", "/bin/busybox"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read("/bin/busybox").unwrap());

    // mconsole answers through our client
    let v = env.ok(&["mconsole", "g1", "version"]);
    assert!(v.starts_with("OK Linux g1 "), "{v}");
    let l = env.ok(&["mconsole", "g1", "proc", "loadavg"]);
    assert!(
        l.starts_with("OK \n") && l.split_whitespace().count() >= 6,
        "{l:?}"
    );

    // hot-plug a second disk; the guest sees /sys/block/ubdb
    let data = env.path().join("data.img");
    env.ok(&["image", "create", data.to_str().unwrap(), "--size", "32M"]);
    assert_eq!(
        env.ok(&["disk", "add", "g1", data.to_str().unwrap()])
            .trim(),
        "ubd1"
    );
    let ls = env.ok(&["exec", "g1", "--", "ls", "/sys/block"]);
    assert!(ls.split_whitespace().any(|d| d == "ubdb"), "{ls}");
    env.ok(&["disk", "remove", "g1", "ubd1"]);
    let ls = env.ok(&["exec", "g1", "--", "ls", "/sys/block"]);
    assert!(!ls.split_whitespace().any(|d| d == "ubdb"), "{ls}");

    // graceful halt: init powers off, nothing is left on the host
    let sup = env.state_json("g1")["supervisor_pid"].as_u64().unwrap() as u32;
    let h = env.ok(&["halt", "g1", "--timeout", "20"]);
    assert_eq!(h.trim(), "g1: halted");
    assert!(
        leftovers(&env, "g1").is_empty(),
        "host processes left: {:?}",
        leftovers(&env, "g1")
    );
    assert!(testkit::wait_until(Duration::from_secs(5), || {
        !umlkit_sys::process::process_exists(sup)
    }));
    let g = env.ps_entry("g1");
    assert_eq!(g["phase"], "halted");
    assert!(!env.state.join("g1/exec.sock").exists());
    // exec on a halted guest fails clearly
    let out = env.umlkit(&["exec", "g1", "--", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));

    env.ok(&["rm", "g1"]);
    assert!(env.ps().is_empty());
    assert!(!env.state.join("g1").exists());
}

#[test]
fn guest_concurrent_execs() {
    let env = Env::new("ugc");
    env.start("gc", &[]);
    let bin = testkit::umlkit_bin();
    let handles: Vec<_> = (1..=6)
        .map(|i| {
            let mut c = env.cmd(&[
                "exec",
                "gc",
                "--",
                "sh",
                "-c",
                &format!(
                    "for n in 1 2 3; do echo {i}-$n; sleep 0.3; done; echo e{i} >&2; exit {i}"
                ),
            ]);
            let _ = &bin;
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            (i, c.spawn().unwrap())
        })
        .collect();
    for (i, h) in handles {
        let out = h.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(i));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{i}-1\n{i}-2\n{i}-3\n")
        );
        assert_eq!(String::from_utf8_lossy(&out.stderr), format!("e{i}\n"));
    }
    env.ok(&["kill", "gc"]);
}

#[test]
fn guest_sigkilled_kernel_shows_crashed_and_is_cleaned() {
    let env = Env::new("ugk");
    env.start("gk", &[]);
    let st = env.state_json("gk");
    let pid = st["pid"].as_u64().unwrap() as u32;
    umlkit_sys::process::kill(pid, umlkit_sys::process::SIGKILL).unwrap();
    assert!(testkit::wait_until(Duration::from_secs(10), || env
        .ps_entry("gk")["phase"]
        == "crashed"));
    let g = env.ps_entry("gk");
    assert_eq!(g["ending"]["signal"], 9);
    assert!(testkit::wait_until(Duration::from_secs(5), || {
        leftovers(&env, "gk").is_empty()
    }));
    let text = env.ok(&["ps"]);
    assert!(text.contains("crashed(signal 9)"), "{text}");
    // a killed kernel leaves its instance dir (pid file, socket) behind
    let uml = env.state.join("gk/u");
    assert!(uml.join("gk/pid").exists());
    let stale = env.ok(&["prune", "-n", "--uml-dir", uml.to_str().unwrap()]);
    assert!(stale.contains("guest gk"), "{stale}");
    assert!(
        stale.contains(&format!("stale {}", uml.join("gk").display())),
        "{stale}"
    );
    env.ok(&["prune", "--uml-dir", uml.to_str().unwrap()]);
    assert!(!env.state.join("gk").exists());
    assert!(env.ps().is_empty());
}

#[test]
fn guest_kill_and_supervisor_loss() {
    let env = Env::new("ugs");
    env.start("gs", &[]);
    let st = env.state_json("gs");
    let pgid = st["pgid"].as_u64().unwrap() as u32;
    let sup = st["supervisor_pid"].as_u64().unwrap() as u32;
    // both supervisor and kernel vanish: ps says dead, rm cleans the stale dir
    umlkit_sys::process::kill(sup, umlkit_sys::process::SIGKILL).unwrap();
    umlkit_sys::process::kill_group(pgid, umlkit_sys::process::SIGKILL).unwrap();
    assert!(testkit::wait_until(Duration::from_secs(10), || {
        !umlkit_sys::process::process_exists(sup) && !umlkit_sys::process::process_exists(pgid)
    }));
    assert_eq!(env.ps_entry("gs")["phase"], "dead");
    // rm of a dead guest also kills what is left of it (helpers outside the group)
    let marker = st["marker"].as_str().unwrap().to_string();
    env.ok(&["rm", "gs"]);
    assert!(guest::supervisor::guest_processes(Some(pgid), Some(&marker)).is_empty());
    // a new guest may take the name of a dead one
    env.start("gs", &[]);
    assert_eq!(env.ps_entry("gs")["phase"], "running");
    env.ok(&["kill", "gs"]);
    assert_eq!(env.ps_entry("gs")["phase"], "killed");
    assert!(
        leftovers(&env, "gs").is_empty(),
        "{:?}",
        leftovers(&env, "gs")
    );
    env.ok(&["rm", "gs"]);
}

#[test]
fn guest_foreground_run_powers_off_via_exec() {
    let env = Env::new("ugf");
    let img = env.default_image();
    let mut c = env.cmd(&["run", "--name", "gf", "--disk", img.to_str().unwrap()]);
    c.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut g = testkit::ProcGuard::spawn("umlkit run", c);
    // exec works in the foreground too (the supervisor runs in-process)
    let mut out = String::new();
    assert!(testkit::wait_until(Duration::from_secs(60), || {
        let o = env.umlkit(&["exec", "gf", "--", "echo", "hi"]);
        out = String::from_utf8_lossy(&o.stdout).into_owned();
        o.status.success()
    }));
    assert_eq!(out, "hi\n");
    let _ = env.umlkit(&["exec", "gf", "--", "poweroff"]);
    let st = g
        .wait_timeout(Duration::from_secs(30))
        .expect("guest powers off");
    assert_eq!(st.code(), Some(0));
    let mut console = String::new();
    use std::io::Read;
    g.child_mut()
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut console)
        .unwrap();
    assert!(console.contains("umlkit: gf up"), "{console}");
    assert_eq!(env.ps_entry("gf")["phase"], "halted");
}

/// Regression: a foreground `umlkit run` ended by SIGTERM (a closed
/// terminal, a CI timeout) left its kernel running with no supervisor;
/// killed by SIGKILL, the same. Now SIGTERM/SIGINT/SIGHUP stop the guest
/// and clean up, and the kernel is tied to `umlkit run`'s life.
#[test]
fn guest_foreground_run_killed_takes_its_guest_with_it() {
    let env = Env::new("ugk");
    let img = env.default_image();
    for (i, sig) in [
        umlkit_sys::process::SIGTERM,
        umlkit_sys::process::SIGINT,
        umlkit_sys::process::SIGKILL,
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("gk{i}");
        let mut c = env.cmd(&["run", "--name", &name, "--disk", img.to_str().unwrap()]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let mut g = testkit::ProcGuard::spawn("umlkit run", c);
        env.guard(&name);
        assert!(testkit::wait_until(Duration::from_secs(60), || {
            env.umlkit(&["exec", &name, "--", "true"]).status.success()
        }));
        let st = env.state_json(&name);
        let marker = st["marker"].as_str().unwrap().to_string();
        let pgid = st["pgid"].as_u64().unwrap() as u32;
        umlkit_sys::process::kill(g.child_mut().id(), sig).unwrap();
        g.wait_timeout(Duration::from_secs(20))
            .expect("umlkit run ends");
        assert!(
            testkit::wait_until(Duration::from_secs(10), || {
                guest::supervisor::guest_processes(Some(pgid), Some(&marker)).is_empty()
            }),
            "signal {sig}: guest processes left: {:?}",
            guest::supervisor::guest_processes(Some(pgid), Some(&marker))
        );
        let phase = env.ps_entry(&name)["phase"].clone();
        if sig == umlkit_sys::process::SIGKILL {
            // nobody was left to record it
            assert_eq!(phase, "dead", "signal {sig}");
        } else {
            assert_eq!(phase, "killed", "signal {sig}");
        }
    }
}

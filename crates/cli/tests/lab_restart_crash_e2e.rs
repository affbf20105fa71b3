//! `lab crash` and `lab restart` on the real kernel (issue 11): crashing one
//! machine kills exactly its processes and forgets it while the other keeps
//! running; restarting a machine boots a new kernel that runs its startup
//! again; crashing the whole lab leaves no process of its state root. The
//! lab guard (testkit) cleans up even when an assertion fails.

use testkit::lab::TestLab;

/// The lab's state.json (one lab per state root).
fn state_json(lab: &TestLab) -> serde_json::Value {
    let d = std::fs::read_dir(&lab.state)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("state.json").is_file())
        .expect("a lab state folder")
        .path();
    serde_json::from_str(&std::fs::read_to_string(d.join("state.json")).unwrap()).unwrap()
}

/// The recorded kernel pid of `machine`, if the state lists it.
fn kernel_pid(lab: &TestLab, machine: &str) -> Option<u32> {
    state_json(lab)["machines"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == machine)?["pid"]
        .as_u64()
        .map(|p| p as u32)
}

fn alive(pid: u32) -> bool {
    umlkit_sys::process::process_exists(pid) && !umlkit_sys::process::is_zombie(pid)
}

fn lab() -> TestLab {
    let startup = |addr: &str| {
        format!("ip addr add {addr} dev eth0\ncat /proc/sys/kernel/random/boot_id > /root/booted\n")
    };
    TestLab::new(
        "labrc",
        &[
            ("lab.conf", "a[0]=A\nb[0]=A\n"),
            ("a.startup", &startup("10.9.0.1/24")),
            ("b.startup", &startup("10.9.0.2/24")),
        ],
    )
}

#[test]
fn lab_crash_one_machine_then_the_whole_lab() {
    let lab = lab();
    lab.ok_dir("start", &[]);
    let (a, b) = (
        kernel_pid(&lab, "a").unwrap(),
        kernel_pid(&lab, "b").unwrap(),
    );
    assert!(alive(a) && alive(b));

    lab.ok_dir("crash", &["b"]);
    assert!(!alive(b), "b's kernel {b} survived lab crash");
    assert_eq!(kernel_pid(&lab, "b"), None, "b still in the state");
    assert!(
        testkit::lab::pids_mentioning("umid=b").iter().all(|&p| {
            // other labs' guests may be named b too: only ours count
            !std::fs::read(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .windows(lab.state.as_os_str().len())
                .any(|w| w == lab.state.as_os_str().as_encoded_bytes())
        }),
        "processes of b left"
    );
    // a is untouched and still answers on the domain's switch
    assert_eq!(kernel_pid(&lab, "a"), Some(a));
    assert!(lab.exec_ok("a", "cat /root/booted").trim().len() >= 32);
    let st = state_json(&lab);
    assert_eq!(st["switches"].as_array().map(Vec::len), Some(1), "{st}");

    lab.ok_dir("crash", &[]);
    assert!(!alive(a), "a's kernel {a} survived lab crash");
    let st = state_json(&lab);
    assert_eq!(st["machines"].as_array().map(Vec::len), Some(0), "{st}");
    assert_eq!(st["switches"].as_array().map(Vec::len), Some(0), "{st}");
    assert!(
        testkit::wait_until(std::time::Duration::from_secs(5), || lab
            .leftovers()
            .is_empty()),
        "left after lab crash: {:?}",
        lab.leftovers()
    );
}

#[test]
fn lab_restart_boots_a_new_kernel_that_runs_startup_again() {
    let lab = lab();
    lab.ok_dir("start", &[]);
    let (a, b) = (
        kernel_pid(&lab, "a").unwrap(),
        kernel_pid(&lab, "b").unwrap(),
    );
    let boot_a = lab.exec_ok("a", "cat /root/booted");
    let boot_b = lab.exec_ok("b", "cat /root/booted");

    let o = lab.run_dir("restart", &["a"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("a stopped"), "{err}");
    let a2 = kernel_pid(&lab, "a").expect("a runs again");
    assert_ne!(a2, a);
    assert!(!alive(a), "the old kernel {a} of a still runs");
    // startup ran in the new kernel (another boot id), b was left alone
    let boot_a2 = lab.exec_ok("a", "cat /root/booted");
    assert_ne!(boot_a2.trim(), boot_a.trim());
    assert_eq!(kernel_pid(&lab, "b"), Some(b));
    assert_eq!(lab.exec_ok("b", "cat /root/booted"), boot_b);
    // and the link works again
    lab.exec_ok("a", "ping -c 1 -W 5 10.9.0.2");
}

/// Ctrl-C during `lab start` (issue 11): no further machine is launched,
/// the start ends at once naming what it had started (ready, still
/// booting) and exits non-zero; `lab clean` (the guard) removes it all.
#[test]
fn lab_start_interrupted_launches_nothing_more_and_names_what_it_started() {
    let lab = TestLab::new(
        "labint",
        &[
            ("lab.conf", "a[0]=A\nh[0]=A\nb[0]=A\n"),
            ("lab.dep", "b: a h\n"),
            // h's boot steps never finish on their own
            ("h.startup", "sleep 600\n"),
        ],
    );
    let mut child = lab
        .cmd_dir("start", &[])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut guard = scopeguard(pid);
    // stderr line by line: `lab start` says when a is ready
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut a_ready = false;
    while let Ok(line) =
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        if line.contains("] a ready in ") {
            a_ready = true;
            break;
        }
    }
    assert!(a_ready, "a never ready");
    // h was launched with a (one wave) and is still booting
    assert!(kernel_pid(&lab, "h").is_some_and(alive));
    umlkit_sys::process::kill(pid, umlkit_sys::process::SIGINT).unwrap();
    let t = std::time::Instant::now();
    let status = child.wait().unwrap();
    guard.0 = None;
    let err = reader.join().unwrap();
    assert!(!status.success(), "{err}");
    assert!(t.elapsed() < std::time::Duration::from_secs(60), "{err}");
    assert!(
        err.contains(
            "interrupted: no further machine was started; ready: a; \
             still booting (their boot steps are not finished): h"
        ),
        "{err}"
    );
    assert_eq!(kernel_pid(&lab, "b"), None, "b was started: {err}");
}

/// Kills `lab start` (by pid) if the test fails before it ended.
struct Kill(Option<u32>);
impl Drop for Kill {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = umlkit_sys::process::kill(p, umlkit_sys::process::SIGKILL);
        }
    }
}
fn scopeguard(pid: u32) -> Kill {
    Kill(Some(pid))
}

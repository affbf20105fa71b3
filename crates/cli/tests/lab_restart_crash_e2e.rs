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

//! End-to-end labs on the real kernel: every lab lives in its own temp dir
//! with its own state root; a guard runs `umlkit lab clean` and kills any
//! leftover process of that state root (by PID) even when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

struct TestLab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    state: PathBuf,
}

fn pids_mentioning(needle: &str) -> Vec<u32> {
    testkit::pids_mentioning(needle)
}

fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            v.push((e.path(), m.len()));
        }
    }
    v.sort();
    v
}

impl TestLab {
    fn new(prefix: &str, files: &[(&str, &str)]) -> TestLab {
        let tmp = testkit::short_tempdir(prefix);
        let dir = tmp.path().join("lab");
        let state = tmp.path().join("st");
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        TestLab {
            _tmp: tmp,
            dir,
            state,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new(testkit::umlkit_bin());
        c.arg("lab")
            .arg(args[0])
            .arg("--state-root")
            .arg(&self.state)
            .args(&args[1..]);
        c.stdin(Stdio::null()).output().expect("run umlkit")
    }

    fn run_dir(&self, sub: &str, rest: &[&str]) -> Output {
        let mut a = vec![sub, self.dir.to_str().unwrap()];
        a.extend_from_slice(rest);
        self.run(&a)
    }

    fn ok(&self, sub: &str, rest: &[&str]) -> String {
        let o = self.run_dir(sub, rest);
        assert!(
            o.status.success(),
            "umlkit lab {sub} {rest:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn exec(&self, machine: &str, cmd: &str) -> Output {
        self.run(&["exec", "-d", self.dir.to_str().unwrap(), machine, "--", cmd])
    }

    fn exec_ok(&self, machine: &str, cmd: &str) -> String {
        let o = self.exec(machine, cmd);
        assert!(
            o.status.success(),
            "{machine}: `{cmd}` failed ({:?}): {}{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn leftovers(&self) -> Vec<u32> {
        pids_mentioning(self.state.to_str().unwrap())
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.run_dir("clean", &[]);
        for pid in self.leftovers() {
            let _ = umlkit_sys::process::kill(pid, umlkit_sys::process::SIGKILL);
        }
    }
}

fn startup(addr: &str, extra: &str) -> String {
    format!("ip addr add {addr} dev eth0\nip link set eth0 up\n{extra}")
}

#[test]
fn lab_two_hosts_ping_and_arping_both_ways() {
    let lab = TestLab::new(
        "lab2h",
        &[
            ("lab.conf", "a[0]=lan\nb[0]=lan\n"),
            ("a.startup", &startup("10.9.0.1/24", "")),
            ("b.startup", &startup("10.9.0.2/24", "")),
        ],
    );
    lab.ok("start", &[]);
    lab.exec_ok("a", "ping -c 2 -W 2 10.9.0.2");
    lab.exec_ok("b", "ping -c 2 -W 2 10.9.0.1");
    // The default image's arping is Habets' (`42 bytes from MAC (IP)`);
    // busybox and iputils print `Unicast reply from IP`.
    let replied = |out: &str, ip: &str| {
        out.contains(&format!("Unicast reply from {ip}"))
            || out.contains(&format!("({ip}): index="))
    };
    let out = lab.exec_ok("a", "arping -c 2 -w 4 -I eth0 10.9.0.2");
    assert!(replied(&out, "10.9.0.2"), "{out}");
    let out = lab.exec_ok("b", "arping -c 2 -w 4 -I eth0 10.9.0.1");
    assert!(replied(&out, "10.9.0.1"), "{out}");
    // The neighbour's MAC is the planned one.
    let info = lab.ok("info", &["--json"]);
    let plan: serde_json::Value = serde_json::from_str(&info).unwrap();
    let b_mac = plan["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "b")
        .unwrap()["interfaces"][0]["mac"]
        .as_str()
        .unwrap()
        .to_string();
    let neigh = lab.exec_ok("a", "ip neigh show 10.9.0.2");
    assert!(neigh.contains(&b_mac), "{neigh} vs {b_mac}");

    // Run-time wiring: plug a into a new domain, then unplug it.
    let o = lab.run(&["connect", "-d", lab.dir.to_str().unwrap(), "a", "extra"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(testkit::wait_until(Duration::from_secs(10), || lab
        .exec("a", "ip link show eth1")
        .status
        .success()));
    let st = lab.ok("status", &["--json"]);
    assert!(st.contains("\"extra\""), "{st}");
    let o = lab.run(&["disconnect", "-d", lab.dir.to_str().unwrap(), "a", "extra"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(testkit::wait_until(Duration::from_secs(10), || !lab
        .exec("a", "ip link show eth1")
        .status
        .success()));

    lab.ok("stop", &[]);
    assert!(lab.leftovers().is_empty(), "stop left processes");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

#[test]
fn lab_router_static_routes_test_status_graph() {
    let lab = TestLab::new("labrt", &[]);
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/labs/demo");
    copy_tree(&demo, &lab.dir);
    lab.ok("start", &[]);
    lab.exec_ok("pc1", "ping -c 2 -W 2 10.0.2.1");
    lab.exec_ok("pc2", "ping -c 2 -W 2 10.0.1.1");
    let tr = lab.exec_ok("pc1", "traceroute -n -w 2 -q 1 10.0.2.1");
    assert!(tr.contains("10.0.1.254"), "goes through r1: {tr}");

    let out = lab.ok("test", &[]);
    assert!(out.contains("0 failed") && !out.contains("FAIL"), "{out}");

    // Failing checks: wrong address, missing route, unreachable host, wrong output.
    std::fs::write(
        lab.dir.join("lab.test.toml"),
        "[[address]]\nmachine=\"pc1\"\ninterface=\"eth0\"\naddress=\"10.0.1.99/24\"\n\
         [[route]]\nmachine=\"pc2\"\ndestination=\"10.7.0.0/16\"\n\
         [[reach]]\nfrom=\"pc1\"\nto=\"10.0.3.1\"\n\
         [[reach]]\nfrom=\"pc1\"\nto=\"10.0.2.1\"\n\
         [[command]]\nmachine=\"r1\"\nrun=\"cat /proc/sys/net/ipv4/ip_forward\"\nstdout=\"0\"\n",
    )
    .unwrap();
    let o = lab.run_dir("test", &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "FAIL address 10.0.1.99/24 on eth0: not configured; interface has: 10.0.1.1/24"
        ),
        "{out}"
    );
    assert!(out.contains("FAIL route 10.7.0.0/16"), "{out}");
    assert!(out.contains("FAIL reaches 10.0.3.1: no reply"), "{out}");
    assert!(out.contains("PASS reaches 10.0.2.1"), "{out}");
    assert!(
        out.contains("FAIL `cat /proc/sys/net/ipv4/ip_forward`: output \"1\", expected \"0\""),
        "{out}"
    );
    assert!(out.contains("1 passed, 4 failed"), "{out}");

    let st: serde_json::Value = serde_json::from_str(&lab.ok("status", &["--json"])).unwrap();
    let r1 = st["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "r1")
        .unwrap();
    assert_eq!(r1["state"], "running");
    assert_eq!(r1["interfaces"][1]["addresses"][0], "10.0.2.254/24");
    assert_eq!(r1["interfaces"][1]["domain"], "lan2");

    let svg = lab.dir.parent().unwrap().join("t.svg");
    let dot = lab.ok("graph", &["--svg", svg.to_str().unwrap()]);
    assert!(dot.is_empty());
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.contains(">r1<") && s.contains(">lan2<"));
}

#[test]
fn lab_machine_with_three_interfaces() {
    let lab = TestLab::new(
        "lab3i",
        &[
            ("lab.conf", "m[0]=A\nm[1]=B\nm[2]=C\np[0]=A\nq[0]=B\nq[1]=C\n"),
            ("m.startup", "ip addr add 10.1.0.1/24 dev eth0\nip addr add 10.2.0.1/24 dev eth1\nip addr add 10.3.0.1/24 dev eth2\nfor i in eth0 eth1 eth2; do ip link set $i up; done\n"),
            ("p.startup", &startup("10.1.0.2/24", "")),
            ("q.startup", "ip addr add 10.2.0.2/24 dev eth0\nip addr add 10.3.0.2/24 dev eth1\nip link set eth0 up\nip link set eth1 up\n"),
        ],
    );
    lab.ok("start", &["-p", "3"]);
    for ip in ["10.1.0.2", "10.2.0.2", "10.3.0.2"] {
        lab.exec_ok("m", &format!("ping -c 1 -W 2 {ip}"));
    }
    let links = lab.exec_ok("m", "ip -o link show");
    for i in ["eth0", "eth1", "eth2"] {
        assert!(links.contains(&format!("{i}:")), "{links}");
    }
    // Each interface landed on its domain: on B and C the only other station
    // is q, so q learns m's eth1 / eth2 MACs (as planned) for those subnets.
    let plan: serde_json::Value = serde_json::from_str(&lab.ok("info", &["--json"])).unwrap();
    let m = plan["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "m")
        .unwrap();
    for (ip, idx) in [("10.2.0.1", 1), ("10.3.0.1", 2)] {
        lab.exec_ok("q", &format!("ping -c 1 -W 2 {ip}"));
        let neigh = lab.exec_ok("q", &format!("ip neigh show {ip}"));
        let mac = m["interfaces"][idx]["mac"].as_str().unwrap();
        assert!(
            neigh.contains(mac),
            "{ip}: {neigh} should show eth{idx} {mac}"
        );
    }
}

#[test]
fn lab_dep_order_shared_startup_and_netkit_folders() {
    let lab = TestLab::new(
        "labdep",
        &[
            ("lab.conf", "machines=\"slow fast\"\nslow[0]=net\nfast[0]=net\n"),
            ("lab.dep", "fast: slow\n"),
            // slow configures its address only after 2 s: fast can only reach it
            // at boot if lab.dep made fast wait for slow.
            ("slow.startup", &startup("10.5.0.1/24", "").replace("ip addr", "sleep 2\nip addr")),
            ("fast.startup", &startup("10.5.0.2/24", "if ping -c 1 -W 2 10.5.0.1; then echo up > /root/dep; else echo down > /root/dep; fi\n")),
            ("shared.startup", "hostname > /root/shared_ran\n"),
            ("shared/etc/lab_motd", "from shared\n"),
            ("slow/etc/only_slow", "slow file\n"),
            ("slow/etc/lab_motd", "slow overrides shared\n"),
        ],
    );
    let o = lab.run_dir("start", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("dialect: netkit"), "{err}");
    assert!(err.contains("2 waves"), "{err}");
    assert_eq!(lab.exec_ok("fast", "cat /root/dep").trim(), "up");
    assert_eq!(lab.exec_ok("fast", "cat /root/shared_ran").trim(), "fast");
    assert_eq!(lab.exec_ok("slow", "cat /root/shared_ran").trim(), "slow");
    assert_eq!(
        lab.exec_ok("fast", "cat /etc/lab_motd").trim(),
        "from shared"
    );
    assert_eq!(
        lab.exec_ok("slow", "cat /etc/lab_motd").trim(),
        "slow overrides shared"
    );
    assert_eq!(
        lab.exec_ok("slow", "cat /etc/only_slow").trim(),
        "slow file"
    );
    assert!(!lab.exec("fast", "test -e /etc/only_slow").status.success());
    // Netkit collision domains are hubs.
    let st: serde_json::Value = serde_json::from_str(&lab.ok("status", &["--json"])).unwrap();
    assert_eq!(st["domains"][0]["hub"], true);
    // Netkit _test/ signatures: write, then compare.
    std::fs::create_dir_all(lab.dir.join("_test")).unwrap();
    // (run with bash, as startup files are: `[[` is bash-only)
    std::fs::write(
        lab.dir.join("_test/fast.test"),
        "cat /root/dep\n[[ -n $BASH_VERSION ]] && echo under-bash\n",
    )
    .unwrap();
    lab.ok("test", &["--write-signatures"]);
    let sig = std::fs::read_to_string(lab.dir.join("_test/signatures/fast.user")).unwrap();
    assert!(sig.ends_with("under-bash\n"), "{sig}");
    let out = lab.ok("test", &[]);
    assert!(
        out.contains("fast: PASS _test user") && out.contains("slow: PASS _test default"),
        "{out}"
    );
    lab.exec_ok("fast", "echo changed > /root/dep");
    let o = lab.run_dir("test", &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !o.status.success() && out.contains("fast: FAIL _test user: line 1"),
        "{out}"
    );
}

#[test]
fn lab_kathara_defaults_and_shutdown_scripts() {
    let lab = TestLab::new(
        "labkat",
        &[
            ("lab.conf", "LAB_DESCRIPTION=\"k\"\nr[0]=a\nr[sysctl]=net.ipv4.tcp_syncookies=0\nr[env]=GREETING=hello\nr[exec]=echo $GREETING > /root/exec_ran\n"),
            ("shared/data.txt", "shared data\n"),
            ("r.shutdown", "echo r > /hostlab/shutdown_order\n"),
            ("shared.shutdown", "echo shared >> /hostlab/shutdown_order\n"),
        ],
    );
    // Shutdown scripts write back to the lab folder: only a trusted lab
    // (--host-access, live hostfs) may do that.
    lab.ok("start", &["--host-access"]);
    assert_eq!(
        lab.exec_ok("r", "cat /proc/sys/net/ipv4/ip_forward").trim(),
        "1"
    );
    assert_eq!(
        lab.exec_ok("r", "cat /proc/sys/net/ipv4/conf/all/rp_filter")
            .trim(),
        "0"
    );
    assert_eq!(
        lab.exec_ok("r", "cat /proc/sys/net/ipv4/icmp_ratelimit")
            .trim(),
        "0"
    );
    assert_eq!(
        lab.exec_ok("r", "cat /proc/sys/net/ipv4/tcp_syncookies")
            .trim(),
        "0"
    );
    assert_eq!(lab.exec_ok("r", "cat /root/exec_ran").trim(), "hello");
    assert_eq!(
        lab.exec_ok("r", "cat /shared/data.txt").trim(),
        "shared data"
    );
    let v6 = lab.exec_ok(
        "r",
        "cat /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null || echo 1",
    );
    assert_eq!(v6.trim(), "1");
    // exit status and stderr pass through exec
    let o = lab.exec("r", "echo oops >&2; exit 3");
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), "oops");
    lab.ok("stop", &[]);
    let order = std::fs::read_to_string(lab.dir.join("shutdown_order")).unwrap();
    assert_eq!(order, "r\nshared\n");
}

#[test]
fn lab_clean_after_interrupted_start_leaves_nothing() {
    let lab = TestLab::new(
        "labcln",
        &[
            ("lab.conf", "a[0]=x\nb[0]=x\nc[0]=y\n"),
            ("a.startup", "sleep 1\n"),
        ],
    );
    let before = listing(&lab.dir);
    let mut c = Command::new(testkit::umlkit_bin());
    c.args(["lab", "start", "-p", "1"])
        .arg(&lab.dir)
        .arg("--state-root")
        .arg(&lab.state)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut g = testkit::ProcGuard::spawn("umlkit lab start", c);
    // Interrupt as soon as the first guest process is recorded.
    assert!(testkit::wait_until(Duration::from_secs(60), || {
        std::fs::read_dir(&lab.state)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path().join("state.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .is_some_and(|v| {
                        v["machines"]
                            .as_array()
                            .is_some_and(|ms| ms.iter().any(|m| m["pgid"].is_u64()))
                    })
            })
    }));
    let leader = g.pid();
    let _ = umlkit_sys::process::kill(leader, umlkit_sys::process::SIGKILL);
    let _ = g.wait_timeout(Duration::from_secs(5));
    if lab.leftovers().is_empty() {
        // Diagnostics: what did the interrupted start leave behind?
        let mut info = String::new();
        for e in std::fs::read_dir(&lab.state)
            .into_iter()
            .flatten()
            .flatten()
        {
            info.push_str(
                &std::fs::read_to_string(e.path().join("state.json")).unwrap_or_default(),
            );
            for m in ["a", "b", "c"] {
                let log = e.path().join("m").join(m).join("console.log");
                info.push_str(&std::fs::read_to_string(log).unwrap_or_default());
            }
        }
        panic!("nothing running after the interrupted start:\n{info}");
    }
    lab.ok("clean", &[]);
    assert!(
        testkit::wait_until(Duration::from_secs(10), || lab.leftovers().is_empty()),
        "processes left: {:?}",
        lab.leftovers()
    );
    assert!(!lab.state.exists(), "state root removed");
    assert_eq!(listing(&lab.dir), before, "lab folder unchanged");
    // Start it fully, clean again: still nothing left.
    lab.ok("start", &[]);
    lab.ok("clean", &[]);
    assert!(lab.leftovers().is_empty());
    assert!(!lab.state.exists());
    assert_eq!(listing(&lab.dir), before);
}

#[test]
fn lab_bad_lab_conf_fails_cleanly() {
    let lab = TestLab::new("labbad", &[("lab.conf", "a[0]=x\nA-b[0]=x\n")]);
    let o = lab.run_dir("start", &["--dialect", "kathara"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("lab.conf:2:") && err.contains("[a-z0-9_]{1,30}"),
        "{err}"
    );
    assert!(!lab.state.exists(), "nothing started");
}

#[test]
fn lab_bridge_inside_a_guest() {
    let lab = TestLab::new("labbr", &[]);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/labs/bridge");
    copy_tree(&src, &lab.dir);
    let o = lab.run_dir("start", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    lab.exec_ok("pc1", "ping -c 2 -W 2 192.168.10.2");
    lab.exec_ok("pc2", "ping -c 2 -W 2 192.168.10.1");
    // pc1 and pc2 are on different collision domains: only the bridge joins them.
    let ports = lab.exec_ok("sw", "ls /sys/class/net/br0/brif");
    assert_eq!(
        ports.split_whitespace().collect::<Vec<_>>(),
        ["eth0", "eth1"]
    );
    lab.exec_ok("sw", "brctl delif br0 eth1");
    lab.exec_ok("pc1", "ip neigh flush dev eth0");
    assert!(!lab
        .exec("pc1", "ping -c 1 -W 1 192.168.10.2")
        .status
        .success());
    lab.exec_ok("sw", "brctl addif br0 eth1");
    lab.exec_ok("pc1", "ping -c 2 -W 2 192.168.10.2");
    let out = lab.ok("test", &[]);
    assert!(out.contains("3 passed, 0 failed"), "{out}");
}

#[test]
fn lab_two_labs_same_names_never_collide() {
    let files = [
        ("lab.conf", "a[0]=lan\nb[0]=lan\n"),
        (
            "a.startup",
            "ip addr add 10.4.0.1/24 dev eth0\nip link set eth0 up\n",
        ),
        (
            "b.startup",
            "ip addr add 10.4.0.2/24 dev eth0\nip link set eth0 up\n",
        ),
    ];
    let one = TestLab::new("lab2a", &files);
    // The second lab shares the first one's state root.
    let mut two = TestLab::new("lab2b", &files);
    two.state = one.state.clone();
    one.ok("start", &[]);
    two.ok("start", &[]);
    let mac = |l: &TestLab| {
        l.exec_ok("a", "cat /sys/class/net/eth0/address")
            .trim()
            .to_string()
    };
    assert_ne!(mac(&one), mac(&two), "per-lab MACs");
    one.exec_ok("a", "ping -c 1 -W 2 10.4.0.2");
    two.exec_ok("a", "ping -c 1 -W 2 10.4.0.2");
    // b of lab one only ever sees lab one's a.
    let neigh = one.exec_ok(
        "b",
        "ping -c 1 -W 2 10.4.0.1 >/dev/null; ip neigh show 10.4.0.1",
    );
    assert!(
        neigh.contains(&mac(&one)) && !neigh.contains(&mac(&two)),
        "{neigh}"
    );
    one.ok("clean", &[]);
    two.exec_ok("b", "ping -c 1 -W 2 10.4.0.1");
    let st: serde_json::Value = serde_json::from_str(&two.ok("status", &["--json"])).unwrap();
    assert!(st["machines"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["state"] == "running"));
}

/// Regression: public Kathará labs configure addresses with `ip address add`
/// only and rely on the interfaces being up already; they were left down.
#[test]
fn lab_interfaces_are_up_before_startup_scripts() {
    let lab = TestLab::new(
        "labup",
        &[
            ("lab.conf", "pc1[0]=\"A\"\npc2[0]=\"A\"\n"),
            ("pc1.startup", "ip address add 195.11.14.5/24 dev eth0\n"),
            ("pc2.startup", "ip address add 195.11.14.6/24 dev eth0\n"),
        ],
    );
    lab.ok("start", &[]);
    let out = lab.exec_ok("pc1", "ip link show eth0");
    assert!(out.contains(",UP"), "{out}");
    lab.exec_ok("pc1", "ping -c 2 -W 2 195.11.14.6");
    lab.exec_ok("pc2", "ping -c 2 -W 2 195.11.14.5");
    lab.ok("stop", &[]);
    assert!(lab.leftovers().is_empty(), "stop left processes");
}

/// Issue 10.3: Netkit-era labs ask for 16 or 32 MiB. Raised silently to 40,
/// guests were OOM-killed while copying their folder (measured: 4 of 4
/// three-machine starts failed at 40 MiB). The measured floor applies, `lab
/// start` says so once, and every machine boots, copies its 4 MiB folder and
/// runs its startup.
#[test]
fn lab_netkit_mem_16_boots_copies_folder_and_runs_startup() {
    let mut files: Vec<(String, String)> = vec![(
        "lab.conf".into(),
        "pc1[0]=A\npc1[mem]=16\npc2[0]=A\npc2[M]=16\npc3[0]=A\npc3[mem]=32\n".into(),
    )];
    for (i, m) in ["pc1", "pc2", "pc3"].iter().enumerate() {
        files.push((
            format!("{m}.startup"),
            format!(
                "ifconfig eth0 10.7.0.{} netmask 255.255.255.0 up\ncat /data/* > /dev/null && echo started > /root/startup-ran\n",
                i + 1
            ),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let lab = TestLab::new("labmem", &refs);
    // 4 MiB of incompressible data per machine folder.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for m in ["pc1", "pc2", "pc3"] {
        let d = lab.dir.join(m).join("data");
        std::fs::create_dir_all(&d).unwrap();
        for f in 0..4 {
            let bytes: Vec<u8> = (0..1 << 20)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            std::fs::write(d.join(format!("f{f}")), bytes).unwrap();
        }
    }
    let o = lab.run_dir("start", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("dialect: netkit"), "{err}");
    assert_eq!(err.matches("floor of 64 MiB").count(), 1, "{err}");
    assert!(err.contains("pc1 (16), pc2 (16), pc3 (32)"), "{err}");
    for m in ["pc1", "pc2", "pc3"] {
        let out = lab.exec_ok(
            m,
            &format!(
                "for f in 0 1 2 3; do cmp /data/f$f /hostlab/{m}/data/f$f || exit 1; done; cat /root/startup-ran"
            ),
        );
        assert_eq!(out.trim(), "started", "{m}");
    }
    let st: serde_json::Value = serde_json::from_str(&lab.ok("status", &["--json"])).unwrap();
    for m in st["machines"].as_array().unwrap() {
        assert_eq!(m["mem_mb"], 64, "{m}");
    }
    lab.ok("stop", &[]);
    assert!(lab.leftovers().is_empty(), "stop left processes");
}

/// Issue 8.7: an untrusted lab folder wrote anywhere on the host: a startup
/// script mounted hostfs with `-o ../../..` (hostfs= only prefixes the path)
/// and `lab test --write-signatures` followed a symlink out of the folder.
/// Now machines get a read-only copy of the folder and no hostfs at all.
#[test]
fn lab_untrusted_folder_hostfs_escape_and_signature_symlink() {
    let lab = TestLab::new(
        "labesc",
        &[
            ("lab.conf", "pc1[0]=A\n"),
            (
                "pc1.startup",
                "mkdir -p /mnt/a /mnt/b /mnt/c\n\
                 mount -t hostfs none /mnt/a -o ../../../../../../..\n\
                 mount -t hostfs none /mnt/b\n\
                 mount -t hostfs none /mnt/c -o /etc\n\
                 echo escaped > /hostlab/written_from_guest\n\
                 true\n",
            ),
            ("_test/pc1.test", "echo user-signature\n"),
        ],
    );
    // A host file outside the lab folder the guest must not see or change.
    let outside = lab.dir.parent().unwrap().join("outside-secret");
    std::fs::write(&outside, "host secret\n").unwrap();
    std::fs::create_dir_all(lab.dir.join("_test/signatures")).unwrap();
    std::os::unix::fs::symlink(&outside, lab.dir.join("_test/signatures/pc1.user")).unwrap();
    lab.ok("start", &[]);
    let mounts = lab.exec_ok("pc1", "cat /proc/mounts");
    assert!(
        !mounts.contains("hostfs"),
        "a hostfs mount succeeded:\n{mounts}"
    );
    assert!(
        mounts.contains("/hostlab ext4 ro"),
        "lab folder not a read-only disk:\n{mounts}"
    );
    let o = lab.exec(
        "pc1",
        &format!("cat /mnt/a{0} /mnt/b{0} /mnt/c/passwd", outside.display()),
    );
    assert!(!o.status.success());
    assert!(!String::from_utf8_lossy(&o.stdout).contains("secret"));
    // The copy is read-only and the host folder is untouched.
    assert!(!lab.dir.join("written_from_guest").exists());
    assert!(lab.exec("pc1", "touch /hostlab/x").status.code() != Some(0));
    assert_eq!(
        lab.exec_ok("pc1", "cat /hostlab/_test/pc1.test"),
        "echo user-signature\n"
    );
    // The startup's failed write is reported as a startup error.
    let st = lab.ok("status", &[]);
    assert!(st.contains("startup errors"), "{st}");
    assert!(st.contains("written_from_guest"), "{st}");
    // The signature symlink is not followed.
    let o = lab.run_dir("test", &["--write-signatures"]);
    assert!(!o.status.success(), "wrote through a symlink");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("symlink"), "{err}");
    assert!(err.contains("pc1.user"), "{err}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "host secret\n");
    // ... nor read: comparing against it is a failure naming the link.
    let o = lab.run_dir("test", &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success());
    assert!(
        out.contains("FAIL _test user") && out.contains("outside the lab folder"),
        "{out}"
    );
    assert!(!out.contains("host secret"), "{out}");
    // A symlinked signatures folder leading out is refused too.
    std::fs::remove_dir_all(lab.dir.join("_test/signatures")).unwrap();
    let out_dir = lab.dir.parent().unwrap().join("outside-dir");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::os::unix::fs::symlink(&out_dir, lab.dir.join("_test/signatures")).unwrap();
    let o = lab.run_dir("test", &["--write-signatures"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("outside the lab folder"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
    lab.ok("stop", &[]);
}

/// Issue 8.7: `pc1[append]="hostfs=/"` was passed to the kernel.
#[test]
fn lab_append_host_kernel_args_refused() {
    for (arg, line) in [
        ("hostfs=/", 3),
        ("ubd1=/etc/shadow", 3),
        ("con1=port:9999", 3),
    ] {
        let lab = TestLab::new(
            "labapp",
            &[(
                "lab.conf",
                &format!("pc1[0]=A\npc1[mem]=64\npc1[append]=\"{arg}\"\n"),
            )],
        );
        let o = lab.run_dir("start", &[]);
        assert!(!o.status.success(), "{arg} accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("lab.conf:{line}")) && err.contains(arg),
            "{arg}: {err}"
        );
        assert!(err.contains("--host-access"), "{err}");
        assert!(!lab.state.join("g").exists() || lab.leftovers().is_empty());
    }
    // lab.toml's kernel_args likewise, with the line of the argument.
    let lab = TestLab::new(
        "labapptoml",
        &[(
            "lab.toml",
            "[lab]\nname = \"t\"\n\n[machines.pc1]\nkernel_args = [\"quiet\", \"eth1=mcast\"]\n",
        )],
    );
    let o = lab.run_dir("start", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("lab.toml:5") && err.contains("eth1=mcast"),
        "{err}"
    );
    // A trusted lab (--host-access) may pass host-side arguments.
    let lab = TestLab::new(
        "labapptrust",
        &[("lab.conf", "pc1[0]=A\npc1[append]=\"con1=null\"\n")],
    );
    lab.ok("start", &["--host-access"]);
    let mounts = lab.exec_ok("pc1", "cat /proc/mounts");
    assert!(mounts.contains("/hostlab hostfs"), "{mounts}");
    lab.ok("stop", &[]);
}

/// Issue 8.7: the symlink check was lexical: `pc1/x -> ../hop` with
/// `hop -> /etc` at the lab root passed.
#[test]
fn lab_symlink_chain_out_of_the_folder_refused() {
    let lab = TestLab::new(
        "labchain",
        &[("lab.conf", "pc1[0]=A\n"), ("pc1/etc/motd", "hi\n")],
    );
    std::os::unix::fs::symlink("/etc", lab.dir.join("hop")).unwrap();
    std::os::unix::fs::symlink("../hop", lab.dir.join("pc1/x")).unwrap();
    let o = lab.run_dir("start", &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pc1/x") && err.contains("outside the lab folder"),
        "{err}"
    );
    // lab.conf itself as a link out of the folder is refused too.
    let lab2 = TestLab::new("labchain2", &[]);
    let real = lab2.dir.parent().unwrap().join("real.conf");
    std::fs::write(&real, "pc1[0]=A\n").unwrap();
    std::os::unix::fs::symlink(&real, lab2.dir.join("lab.conf")).unwrap();
    let o = lab2.run_dir("info", &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("outside the lab folder"));
}

/// Issue 10: a startup leaving a daemon that holds its stdout (`sleep 600 &`)
/// made the machine never ready, and a startup printing hundreds of MB went
/// through the exec pipe into `lab start`'s memory (1.1 GiB RSS for 600 MB).
#[test]
fn lab_startup_background_job_and_big_output() {
    let lab = TestLab::new(
        "labbg",
        &[
            ("lab.conf", "pc1[0]=A\n"),
            (
                "pc1.startup",
                "sleep 600 &\nnc -l -p 5000 &\nhead -c 67108864 /dev/zero | tr '\\0' x\necho done-startup\necho startup-problem >&2\n",
            ),
        ],
    );
    let t = std::time::Instant::now();
    let o = lab.run_dir("start", &[]);
    let took = t.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(took < Duration::from_secs(90), "lab start took {took:?}");
    let rss_kb = umlkit_sys::process::children_max_rss_kb().unwrap();
    assert!(rss_kb < 64 * 1024, "lab start peak RSS {rss_kb} KiB");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("startup errors") && err.contains("startup-problem"),
        "{err}"
    );
    assert!(err.contains("lab logs"), "{err}");
    let size = lab.exec_ok("pc1", "wc -c < /var/log/startup.log");
    assert!(size.trim().parse::<u64>().unwrap() > 64 << 20, "{size}");
    let logs = lab.run(&["logs", "-d", lab.dir.to_str().unwrap(), "pc1"]);
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    // 64 MiB + the error file, through `lab logs`
    assert!(
        logs.stdout.len() > 64 << 20,
        "{} bytes; {}",
        logs.stdout.len(),
        String::from_utf8_lossy(&logs.stderr)
    );
    assert!(
        String::from_utf8_lossy(&logs.stdout[logs.stdout.len() - 4096..])
            .contains("startup-problem")
    );
    lab.ok("stop", &[]);
}

/// Issue 10: a machine whose boot steps failed was reported ready (the
/// steps' status was ignored). A machine folder that cannot be copied into
/// the root (here into /proc; in the report 100k files exhausting the
/// guest's inodes, see the slow test below) now fails the machine.
#[test]
fn lab_failed_boot_step_machine_failed_not_ready() {
    let lab = TestLab::new(
        "labstep",
        &[
            (
                "lab.conf",
                "pc1[0]=A
",
            ),
            ("pc1/proc/umlkit-cannot-create", "x\n"),
        ],
    );
    let o = lab.run_dir("start", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "reported ready: {err}");
    assert!(err.contains("boot step failed: copy pc1/ into /"), "{err}");
    // status shows the failure and, since a machine failed, exits 1
    let o = lab.run_dir("status", &[]);
    let st = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{st}");
    assert!(st.contains("pc1              failed"), "{st}");
    assert!(st.contains("umlkit-cannot-create"), "{st}");
    // Starting again does not call the failed machine "already running".
    let o = lab.run_dir("start", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("boot steps failed"), "{err}");
}

/// Issue 10 as reported: 40k files in a machine folder exhaust the default
/// image's inodes (32k); the lab said ready. Slow (cp of 31k files in UML
/// takes ~3.5 min on 2 busy cores), so ignored by default.
#[test]
#[ignore = "slow: about 3.5 minutes"]
fn lab_too_many_files_machine_failed_not_ready() {
    let lab = TestLab::new("labinodes", &[("lab.conf", "pc1[0]=A\n")]);
    let d = lab.dir.join("pc1/many");
    std::fs::create_dir_all(&d).unwrap();
    for i in 0..40_000 {
        std::fs::write(d.join(i.to_string()), b"").unwrap();
    }
    let o = lab.run_dir("start", &["--timeout", "300"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "reported ready: {err}");
    assert!(err.contains("copy pc1/ into /"), "{err}");
    let st = lab.run_dir("status", &[]);
    let out = String::from_utf8_lossy(&st.stdout);
    assert!(!out.contains("running"), "{out}");
}

#[test]
fn lab_ipv6_kathara_on_off_and_netkit_ipv6_module_loaded() {
    let lab = TestLab::new(
        "labv6",
        &[
            (
                "lab.conf",
                "LAB_DESCRIPTION=\"v6\"\npc1[0]=lan\npc1[ipv6]=true\npc2[0]=lan\npc2[ipv6]=true\npc3[0]=lan\n",
            ),
            ("pc1.startup", "ip -6 addr add 2001:db8::1/64 dev eth0\n"),
            ("pc2.startup", "ip -6 addr add 2001:db8::2/64 dev eth0\n"),
        ],
    );
    lab.ok("start", &[]);
    // The address is usable once duplicate address detection is done.
    assert!(
        testkit::wait_until(Duration::from_secs(20), || lab
            .exec("pc1", "ping -6 -c 1 -W 2 2001:db8::2")
            .status
            .success()),
        "pc1 cannot ping pc2 over IPv6: {}",
        lab.exec_ok("pc1", "ip -6 addr; cat /var/log/startup.err")
    );
    lab.exec_ok("pc2", "ping -6 -c 2 -W 2 2001:db8::1");
    for (k, v) in [
        ("conf/all/forwarding", "1"),
        ("conf/all/accept_ra", "0"),
        ("icmp/ratelimit", "0"),
        ("conf/eth0/disable_ipv6", "0"),
    ] {
        let got = lab.exec_ok("pc1", &format!("cat /proc/sys/net/ipv6/{k}"));
        assert_eq!(got.trim(), v, "pc1 net.ipv6.{k}");
    }
    // Kathara's default: IPv6 off, even once a bridge pulls the module in.
    let v6 = lab.exec_ok(
        "pc3",
        "ip link add br0 type bridge && ip link set br0 up && \
         for c in all default eth0 br0; do cat /proc/sys/net/ipv6/conf/$c/disable_ipv6; done; \
         ip -6 addr show | grep -c inet6 || true",
    );
    assert_eq!(
        v6.split_whitespace().collect::<Vec<_>>(),
        ["1", "1", "1", "1", "0"],
        "{v6}"
    );

    // Netkit (`machines=` is Netkit-only): IPv6 available.
    let nk = TestLab::new(
        "labv6n",
        &[
            ("lab.conf", "machines=\"a b\"\na[0]=lan\nb[0]=lan\n"),
            ("a.startup", "ip addr add 2001:db8::a/64 dev eth0\n"),
            ("b.startup", "ip addr add 2001:db8::b/64 dev eth0\n"),
        ],
    );
    nk.ok("start", &[]);
    assert!(
        testkit::wait_until(Duration::from_secs(20), || nk
            .exec("a", "ping -6 -c 1 -W 2 2001:db8::b")
            .status
            .success()),
        "a cannot ping b over IPv6: {}",
        nk.exec_ok("a", "ip -6 addr; cat /var/log/startup.err")
    );
}

#[test]
fn lab_mac_change_in_startup_on_an_up_link() {
    let lab = TestLab::new(
        "labmac",
        &[
            ("lab.conf", "a[0]=lan\nb[0]=lan\nc[0]=lan\n"),
            (
                "a.startup",
                "ip link set dev eth0 address 02:00:00:00:aa:01\nip addr add 10.7.0.1/24 dev eth0\n",
            ),
            (
                "b.startup",
                "ifconfig eth0 hw ether 02:00:00:00:aa:02\nifconfig eth0 10.7.0.2 netmask 255.255.255.0 up\n",
            ),
            ("c.startup", "ip addr add 10.7.0.3/24 dev eth0\n"),
        ],
    );
    lab.ok("start", &[]);
    for (m, mac) in [("a", "02:00:00:00:aa:01"), ("b", "02:00:00:00:aa:02")] {
        let link = lab.exec_ok(m, "ip link show eth0");
        assert!(link.contains(mac), "{m}: {link}");
        assert!(link.contains(",UP"), "{m}: eth0 not up again: {link}");
        let err = lab.exec_ok(m, "cat /var/log/startup.err 2>/dev/null || true");
        assert!(!err.contains("busy"), "{m}: {err}");
    }
    lab.exec_ok("c", "ping -c 2 -W 2 10.7.0.1");
    lab.exec_ok("c", "ping -c 2 -W 2 10.7.0.2");
    let neigh = lab.exec_ok("c", "ip neigh show dev eth0");
    assert!(neigh.contains("02:00:00:00:aa:01"), "{neigh}");
    assert!(neigh.contains("02:00:00:00:aa:02"), "{neigh}");
}

#[test]
fn lab_kathara_frr_and_www_ownership_after_folder_copy() {
    // The image has no frr user: the machine folder brings one (as an
    // FRR image would have it).
    let lab = TestLab::new(
        "labown",
        &[
            ("lab.conf", "LAB_DESCRIPTION=\"own\"\nr[0]=lan\n"),
            (
                "r/etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nfrr:x:92:92:frr:/nonexistent:/bin/false\n",
            ),
            ("r/etc/group", "root:x:0:\nfrr:x:92:\n"),
            ("r/etc/frr/frr.conf", "hostname r\n"),
            ("r/var/www/html/index.html", "hi\n"),
        ],
    );
    lab.ok("start", &[]);
    let out = lab.exec_ok(
        "r",
        "stat -c '%u:%g %a' /etc/frr /etc/frr/frr.conf /var/www/html /var/www/html/index.html",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["92:92 755", "92:92 640", "0:0 777", "0:0 777"],
        "{out}"
    );
}

//! A lab.toml domain's `link` emulation applied by `umlkit lab start`: the
//! lab's `umlkit switch` gets the settings on every port and a console.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use testkit::lab::TestLab;

const LAB: &str = r#"
[lab]
dialect = "kathara"
[machines.a]
[[machines.a.interfaces]]
domain = "lan"
addresses = ["10.7.0.1/24"]
[machines.b]
[[machines.b.interfaces]]
domain = "lan"
addresses = ["10.7.0.2/24"]
[domains.lan]
link = { delay_ms = 15.0 }
"#;

#[test]
fn lab_domain_link_delay_is_applied_at_start() {
    let _one = serial();
    let lab = TestLab::new("lablk", &[("lab.toml", LAB)]);
    let dir = lab.dir.clone();
    let d = dir.to_str().unwrap();
    lab.ok(&["start", d]);
    let out = lab.ok(&[
        "exec",
        "-d",
        d,
        "a",
        "--",
        "ping -c 10 -i 0.05 -W 2 10.7.0.2",
    ]);
    let rtts: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.trim_end_matches(" ms").trim().parse().ok())
        .collect();
    assert!(rtts.len() >= 9, "{out}");
    // each way crosses one delayed link: +30 ms per round trip
    let mut s = rtts.clone();
    s.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let med = s[s.len() / 2];
    assert!((29.0..40.0).contains(&med), "median {med} ms: {out}");
    // the switch's console is in the plan; it shows the settings
    let info: serde_json::Value = serde_json::from_str(&lab.ok(&["info", "--json", d])).unwrap();
    let mgmt = info["switches"][0]["mgmt"].as_str().unwrap().to_string();
    let o = Command::new(testkit::umlkit_bin())
        .args(["link", "show", &mgmt])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("out delay=15ms"), "{text}");

    // changed at run time for the whole domain
    let out = lab.ok(&["link", "-d", d, "lan", "delay=2ms"]);
    assert!(out.contains("domain lan: delay=2ms on"), "{out}");
    let out = lab.ok(&[
        "exec",
        "-d",
        d,
        "a",
        "--",
        "ping -c 5 -i 0.05 -W 2 10.7.0.2",
    ]);
    assert!(out.contains(" 0% packet loss"), "{out}");
    assert!(lab.ok(&["link", "-d", d, "lan"]).contains("out delay=2ms"));
    let st = lab.ok(&["status", d]);
    assert!(st.contains("    link: out delay=2ms on "), "{st}");

    // capture one machine's interface while a pings b
    let file = lab.state.parent().unwrap().join("b.pcapng");
    let mut cap = Command::new(testkit::umlkit_bin());
    cap.args(["lab", "capture", "--state-root"])
        .arg(&lab.state)
        .args(["-d", d, "lan", "--machine", "b:eth0", "-c", "4", "-w"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut cap = testkit::ProcGuard::spawn("lab capture", cap);
    assert!(testkit::wait_until(
        std::time::Duration::from_secs(20),
        || {
            lab.run(&["exec", "-d", d, "a", "--", "ping -c 2 -i 0.2 -W 1 10.7.0.2"]);
            cap.child_mut().try_wait().unwrap().is_some()
        }
    ));
    let o = Command::new("tshark")
        .args([
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
        ])
        .args(["-e", "ip.src"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.lines().count(), 4, "{text}");
    let ports: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(ports.len(), 1, "one interface only: {text}");
    assert!(
        text.contains("10.7.0.1") && text.contains("10.7.0.2"),
        "{text}"
    );
    // one machine's interface (its port found by its MAC), both directions
    let out = lab.ok(&["link", "-d", d, "b:eth0", "delay=25ms"]);
    assert!(out.contains("b:eth0: delay=25ms on port "), "{out}");
    let out = lab.ok(&[
        "exec",
        "-d",
        d,
        "a",
        "--",
        "ping -c 5 -i 0.05 -W 2 10.7.0.2",
    ]);
    let r: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.trim_end_matches(" ms").trim().parse().ok())
        .collect();
    // b's port: 25 ms each way (its "out" replaced the domain's 2 ms);
    // a's port still adds 2 ms to the replies
    // (the median: one reply late by a busy host says nothing of the link)
    assert!(
        r.len() >= 4 && (51.0..70.0).contains(&median(&r)) && r.iter().all(|&t| t >= 51.0),
        "{out}"
    );
    let shown = lab.ok(&["link", "-d", d, "b:eth0"]);
    assert!(
        shown.contains("in  delay=25ms") && shown.contains("out delay=25ms"),
        "{shown}"
    );
    // a machine or domain that is not there: clear errors
    let o = lab.run(&["capture", "-d", d, "lan", "--machine", "zz:eth0", "-c", "1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no machine zz"));
    let o = lab.run(&["link", "-d", d, "nowhere", "delay=1ms"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no collision domain nowhere"));
    lab.ok(&["stop", d]);
}

const IFACE_LAB: &str = r#"
[lab]
dialect = "kathara"
[machines.a]
[[machines.a.interfaces]]
domain = "lan"
addresses = ["10.8.0.1/24"]
link = { delay_ms = 20.0 }
[machines.b]
[[machines.b.interfaces]]
domain = "lan"
addresses = ["10.8.0.2/24"]
capture = true
[machines.c]
[[machines.c.interfaces]]
domain = "lan"
addresses = ["10.8.0.3/24"]
[domains.lan]
capture = true
"#;

fn rtts(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.trim_end_matches(" ms").trim().parse().ok())
        .collect()
}

/// The tests of this file measure delays on a 2-core machine: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|x, y| x.partial_cmp(y).unwrap());
    s[s.len() / 2]
}

/// Issue 12: a lab.toml interface's `link` is applied to its planned switch
/// port before its first frame (the machine asks for that port), only there;
/// `lab link M:IF` finds the port without traffic; `capture = true` on the
/// domain records from `lab start` to `lab stop` into a complete pcapng with
/// the interfaces named after the machines; status and graph show both.
#[test]
fn lab_interface_link_and_domain_capture_apply_from_start() {
    let _one = serial();
    let lab = TestLab::new("lablk", &[("lab.toml", IFACE_LAB)]);
    let dir = lab.dir.clone();
    let d = dir.to_str().unwrap();
    let o = lab.run(&["start", d]);
    let out = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && out.contains("capture lan -> "),
        "{out}"
    );
    // c has sent nothing yet: its port is the planned one all the same
    let out = lab.ok(&["link", "-d", d, "c:eth0"]);
    assert!(!out.contains("delay"), "c has no settings: {out}");
    let o = lab.run(&["link", "-d", d, "c:eth0", "none"]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("on port 3"),
        "{o:?}"
    );

    // a's frames are delayed 20 ms from the first one (its ARP request too)
    let out = lab.ok(&[
        "exec",
        "-d",
        d,
        "a",
        "--",
        "ping -c 20 -i 0.05 -W 2 10.8.0.2",
    ]);
    let r = rtts(&out);
    assert!(r.len() >= 19, "{out}");
    assert!(r[0] >= 19.0, "first ping {} ms: {out}", r[0]);
    let med = median(&r);
    // the others' link is not shaped: its median is the path's own time
    let out2 = lab.ok(&[
        "exec",
        "-d",
        d,
        "b",
        "--",
        "ping -c 10 -i 0.05 -W 2 10.8.0.3",
    ]);
    let r2 = rtts(&out2);
    assert!(r2.len() >= 9 && median(&r2) < 5.0, "{out2}");
    // the delay on top of that path: within 10% of 20 ms
    let extra = med - median(&r2);
    assert!(
        (18.0..=22.0).contains(&extra),
        "median {med} ms, unshaped {} ms: {out}",
        median(&r2)
    );

    // status, capture --list, graph
    let st = lab.ok(&["status", d]);
    assert!(st.contains("port 1: in delay=20ms"), "{st}");
    assert!(st.contains("capture lan") && st.contains("running"), "{st}");
    let js: serde_json::Value = serde_json::from_str(&lab.ok(&["status", "--json", d])).unwrap();
    let a = js["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["machine"] == "a")
        .unwrap()
        .clone();
    assert_eq!(a["port"], 1, "{js}");
    assert_eq!(a["link"], "in delay=20ms", "{js}");
    assert_eq!(a["planned"], "in delay=20ms", "{js}");
    assert_eq!(js["captures"][0]["state"], "running", "{js}");
    // lab link --json: link show's objects, with the port's owner
    let lj: serde_json::Value =
        serde_json::from_str(&lab.ok(&["link", "--json", "-d", d, "lan"])).unwrap();
    let a_in = lj
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["port"] == 1 && o["dir"] == "in")
        .unwrap_or_else(|| panic!("{lj}"));
    assert_eq!(a_in["spec"], "delay=20ms", "{lj}");
    assert_eq!(
        (&a_in["domain"], &a_in["machine"], &a_in["interface"]),
        (&"lan".into(), &"a".into(), &"eth0".into()),
        "{lj}"
    );
    assert!(a_in["passed"].as_u64().unwrap() >= 19, "{lj}");
    let one: serde_json::Value =
        serde_json::from_str(&lab.ok(&["link", "--json", "-d", d, "a:eth0"])).unwrap();
    assert!(
        one.as_array()
            .unwrap()
            .iter()
            .all(|o| o["port"] == 1 && o["machine"] == "a"),
        "{one}"
    );
    let list = lab.ok(&["capture", "-d", d, "--list"]);
    assert!(list.contains("lan") && list.contains("running"), "{list}");
    let dot = lab.ok(&["graph", d]);
    assert!(dot.contains("sends: delay=20ms"), "{dot}");
    assert!(dot.contains("(switch)\\ncaptured"), "{dot}");

    lab.ok(&["stop", d]);
    // the captures ended with the lab (nothing of it runs any more)
    let st = lab.state.to_str().unwrap().to_string();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let c = std::fs::read(e.path().join("cmdline")).ok()?;
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            c.contains(&st).then_some(c)
        })
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
    let file: PathBuf = js["captures"][0]["file"].as_str().unwrap().into();
    let list = lab.ok(&["capture", "-d", d, "--list"]);
    assert!(list.contains("stopped"), "{list}");
    let o = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "_ws.col.Protocol",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for want in [
        "a:eth0\tARP",
        "b:eth0\tARP",
        "a:eth0\tICMP",
        "b:eth0\tICMP",
        "c:eth0\tICMP",
    ] {
        assert!(text.lines().any(|l| l == want), "{want}: {text}");
    }
    // complete: the statistics block written at the end is there
    let o = Command::new("capinfos").arg(&file).output().unwrap();
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(info.contains("Number of stat entries = 1"), "{info}");
    // b's own capture: its port only, both directions
    let b = js["captures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "b:eth0")
        .expect("b:eth0 capture");
    assert!(b["file"]
        .as_str()
        .unwrap()
        .ends_with("/capture/b-eth0.pcapng"));
    let o = Command::new("tshark")
        .arg("-r")
        .arg(b["file"].as_str().unwrap())
        .args(["-Y", "icmp", "-T", "fields", "-e", "frame.interface_name"])
        .args(["-e", "icmp.type"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let seen: std::collections::BTreeSet<&str> = text.lines().collect();
    assert_eq!(
        seen,
        ["b:eth0\t0", "b:eth0\t8"].into_iter().collect(),
        "{text}"
    );
}

/// Regression: `lab connect` used the daemon transport, which takes the
/// lowest free switch port: the planned port of a machine not started yet.
/// That machine then shared its port with the added interface, and the
/// switch never forwards a frame back to the port it came from, so the two
/// could not reach each other. Added interfaces now ask for a port above
/// the planned ones.
#[test]
fn lab_connect_never_takes_the_planned_port_of_a_machine_started_later() {
    let _one = serial();
    let lab = TestLab::new(
        "lablk",
        &[(
            "lab.toml",
            r#"
[machines.a]
[[machines.a.interfaces]]
domain = "x"
[machines.b]
[[machines.b.interfaces]]
domain = "lan"
addresses = ["10.6.0.2/24"]
[machines.c]
[[machines.c.interfaces]]
domain = "lan"
addresses = ["10.6.0.3/24"]
"#,
        )],
    );
    let dir = lab.dir.clone();
    let d = dir.to_str().unwrap();
    // b has port 1 of lan, c port 2; c is not started yet
    lab.ok(&["start", d, "a", "b"]);
    lab.ok(&["connect", "-d", d, "a", "lan"]);
    assert!(testkit::wait_until(
        std::time::Duration::from_secs(10),
        || lab
            .run(&["exec", "-d", d, "a", "--", "ip link show eth1"])
            .status
            .success()
    ));
    lab.ok(&[
        "exec",
        "-d",
        d,
        "a",
        "--",
        "ip addr add 10.6.0.1/24 dev eth1 && ip link set eth1 up",
    ]);
    lab.ok(&["start", d, "c"]);
    let out = lab.ok(&["exec", "-d", d, "c", "--", "ping -c 2 -W 2 10.6.0.1"]);
    assert!(out.contains(" 0% packet loss"), "{out}");
    let out = lab.ok(&["exec", "-d", d, "c", "--", "ping -c 2 -W 2 10.6.0.2"]);
    assert!(out.contains(" 0% packet loss"), "{out}");
    lab.ok(&["stop", d]);
}

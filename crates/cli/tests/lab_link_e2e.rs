//! A lab.toml domain's `link` emulation applied by `umlkit lab start`: the
//! lab's `umlkit switch` gets the settings on every port and a console.

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
    assert!(
        r.len() >= 4 && r.iter().all(|&t| (51.0..70.0).contains(&t)),
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

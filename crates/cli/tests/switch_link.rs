//! Link emulation wired into the switch: real `umlkit switch`, raw VDE
//! clients, the console, `umlkit link ...`, `-f` rc files and `--link`.

mod switch_common;

use std::process::Command;
use std::time::{Duration, Instant};

use switch_common::*;

fn umlkit(args: &[&str]) -> std::process::Output {
    Command::new(testkit::umlkit_bin())
        .args(args)
        .output()
        .expect("run umlkit")
}

/// Two clients on ports 1 and 2 that know each other's MAC (learned).
fn pair(sw: &Sw) -> (Client, Client) {
    let a = Client::vde(&sw.dir, 1).unwrap();
    let b = Client::vde(&sw.dir, 2).unwrap();
    let bcast = [0xff; 6];
    b.send(&frame(bcast, mac(2), b"hello from b"));
    assert!(a.recv_one().is_some(), "a hears b's broadcast");
    a.send(&frame(bcast, mac(1), b"hello from a"));
    assert!(b.recv_one().is_some(), "b hears a's broadcast");
    (a, b)
}

/// Time for one unicast frame a -> b.
fn one_way(a: &Client, b: &Client, tag: u8) -> Duration {
    let t0 = Instant::now();
    a.send(&frame(mac(2), mac(1), &[tag; 60]));
    let f = b.recv_one().expect("frame through the link");
    assert_eq!(f[14], tag);
    t0.elapsed()
}

#[test]
fn link_flag_delays_outbound_frames() {
    let sw = Sw::start(&["--link", "2:out:delay=150ms"]);
    let (a, b) = pair(&sw);
    let d = one_way(&a, &b, 7);
    assert!(d >= Duration::from_millis(150), "{d:?}");
    assert!(d < Duration::from_millis(1000), "{d:?}");
    // the other direction is not shaped
    let t0 = Instant::now();
    b.send(&frame(mac(1), mac(2), b"back"));
    assert!(a.recv_one().is_some());
    assert!(t0.elapsed() < Duration::from_millis(100));
    let show = sw.mgmt("link/show 2");
    assert!(show.contains("Port 0002 out delay=150ms"), "{show}");
    assert!(show.contains("1000 Success"), "{show}");
    assert!(show.contains("delayed 2"), "{show}"); // the broadcast and the unicast
}

#[test]
fn link_inbound_delay_and_runtime_change() {
    let sw = Sw::start(&[]);
    let (a, b) = pair(&sw);
    let r = sw.mgmt("link/set 1 in delay=120ms");
    assert!(r.contains("1000 Success"), "{r}");
    assert!(one_way(&a, &b, 1) >= Duration::from_millis(120));
    // changed at run time without reconnecting: shorter, then none
    let r = sw.mgmt("link/set 1 in delay=10ms");
    assert!(r.contains("1000 Success"), "{r}");
    let d = one_way(&a, &b, 2);
    assert!(
        d >= Duration::from_millis(10) && d < Duration::from_millis(110),
        "{d:?}"
    );
    let r = sw.mgmt("link/clear 1");
    assert!(r.contains("1000 Success"), "{r}");
    assert!(one_way(&a, &b, 3) < Duration::from_millis(100));
    let show = sw.mgmt("link/show 1");
    assert!(show.contains("Port 0001 in  none"), "{show}");
}

#[test]
fn link_loss_all_drops_and_counts() {
    let sw = Sw::start(&[]);
    let (a, b) = pair(&sw);
    let mgmt = sw.mgmt.to_str().unwrap();
    let out = umlkit(&["link", "set", mgmt, "2", "--dir", "in", "--loss", "100%"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for _ in 0..10 {
        b.send(&frame(mac(1), mac(2), b"lost"));
    }
    // a still answers b: the frames a sends arrive
    a.send(&frame(mac(2), mac(1), b"not lost"));
    assert!(b.recv_one().is_some());
    // the counters show when all ten went through the link (no waiting
    // for silence)
    let mut text = String::new();
    let counted = testkit::wait_until(WAIT, || {
        let out = umlkit(&["link", "show", mgmt, "2"]);
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success() && text.contains("offered 10 ")
    });
    assert!(counted, "{text}");
    assert!(text.contains("Port 0002 in  loss=100%"), "{text}");
    assert!(text.contains("offered 10 passed 0 lost 10"), "{text}");
    let out = umlkit(&["link", "clear", mgmt, "2"]);
    assert!(out.status.success());
    b.send(&frame(mac(1), mac(2), b"found"));
    // b's frames go in order: a "lost" one let through would come first
    assert_eq!(
        a.recv_one().map(|f| f[14..].to_vec()),
        Some(b"found".to_vec()),
        "frames crossed a 100% loss link"
    );
}

#[test]
fn link_cli_refuses_bad_settings_and_ports() {
    let sw = Sw::start(&["-n", "8"]);
    let mgmt = sw.mgmt.to_str().unwrap();
    let out = umlkit(&["link", "set", mgmt, "1", "--delay", "20"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("delay") && err.contains("unit"), "{err}");
    let out = umlkit(&["link", "set", mgmt, "8", "delay=1ms"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Invalid argument"), "{err}");
    let out = umlkit(&["link", "show", mgmt, "3"]);
    assert!(!out.status.success());
    let out = umlkit(&["link", "show", "/nonexistent/mgmt"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/mgmt"), "{err}");
    // flags and a string combine; show writes the canonical form
    let out = umlkit(&[
        "link", "set", mgmt, "3", "loss=1%", "--rate", "10mbit", "--queue", "64k",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = umlkit(&["link", "show", mgmt, "3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Port 0003 out loss=1%,rate=10mbit,queue=64k"),
        "{text}"
    );
    let help = sw.mgmt("help link");
    assert!(
        help.contains("link/set") && help.contains("link/clear"),
        "{help}"
    );
}

#[test]
fn rcfile_runs_commands_at_start() {
    let tmp = testkit::short_tempdir("rc");
    let rc = tmp.path().join("switch.rc");
    std::fs::write(
        &rc,
        "# vde_switch rc file\n\nport/create 5\nlink/set 5 out delay=30ms,loss=2%\nvlan/create 12\n",
    )
    .unwrap();
    let sw = Sw::start(&["-f", rc.to_str().unwrap()]);
    let show = sw.mgmt("link/show 5");
    assert!(show.contains("Port 0005 out delay=30ms,loss=2%"), "{show}");
    let vl = sw.mgmt("vlan/print 12");
    assert!(vl.contains("VLAN 0012"), "{vl}");
}

#[test]
fn rcfile_bad_line_names_file_and_line() {
    let tmp = testkit::short_tempdir("rc");
    let rc = tmp.path().join("bad.rc");
    std::fs::write(&rc, "vlan/create 12\n# fine\nlink/set 1 delay=fast\n").unwrap();
    let out = umlkit(&[
        "switch",
        "-s",
        tmp.path().join("sw").to_str().unwrap(),
        "-f",
        rc.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.rc, line 3"), "{err}");
    assert!(err.contains("Invalid argument"), "{err}");
    // the sockets it made are gone again
    assert!(!tmp.path().join("sw").join("ctl").exists());
    let out = umlkit(&[
        "switch",
        "-s",
        tmp.path().join("sw2").to_str().unwrap(),
        "--link",
        "1:delay=20",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("delay"), "{err}");
}

//! VXLAN between switches on two "hosts" (issue 13.3): network namespaces
//! this test makes itself (ip netns, a veth pair, addresses on it, never
//! any other address). Two umlkit switches joined by VXLAN carry a guest's
//! ping; then a Linux vxlan device takes the far switch's place and a guest
//! pings its address through the umlkit switch.
#![allow(clippy::disallowed_macros)] // eprintln! in tests: the harness captures stderr

mod guest_common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testkit::ProcGuard;

/// A network namespace made by the test, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let o = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, prog: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(prog);
        c
    }

    fn ip(&self, args: &[&str]) {
        let o = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "ip {args:?}: {o:?}");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn is_root() -> bool {
    umlkit_sys::net::euid() == 0
}

fn switch_in(ns: &Netns, dir: &Path, vxlan: &str) -> ProcGuard {
    let mut c = ns.exec(&testkit::umlkit_bin());
    c.args(["switch", "-s"])
        .arg(dir)
        .args(["--vxlan", vxlan])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let g = ProcGuard::spawn("umlkit switch", c);
    assert!(testkit::wait_until(Duration::from_secs(10), || dir
        .join("ctl")
        .exists()));
    g
}

/// `umlkit ARGS` inside `ns`, with the test's state and image cache.
fn umlkit_in(env: &guest_common::Env, ns: &Netns, args: &[&str]) -> Output {
    let mut c = ns.exec(&testkit::umlkit_bin());
    c.args(args)
        .env("UMLKIT_STATE_DIR", &env.state)
        .env("UMLKIT_CACHE_DIR", guest_common::cache_dir())
        .stdin(Stdio::null());
    c.output().unwrap()
}

#[test]
fn vxlan_joins_switches_across_namespaces_and_a_linux_vxlan_device() {
    if !is_root() {
        eprintln!("skipped: needs root for ip netns");
        return;
    }
    testkit::require("ip", "iproute2");
    let env = guest_common::Env::new("vxl");
    let img = env.default_image();
    let tag = std::process::id() % 100_000;
    let (a, b) = (
        Netns::new(format!("umlkit-vxa-{tag}")),
        Netns::new(format!("umlkit-vxb-{tag}")),
    );
    let (va, vb) = (format!("vxa{tag}"), format!("vxb{tag}"));
    let o = Command::new("ip")
        .args([
            "link", "add", &va, "netns", &a.0, "type", "veth", "peer", "name", &vb, "netns", &b.0,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    a.ip(&["addr", "add", "192.168.251.1/24", "dev", &va]);
    b.ip(&["addr", "add", "192.168.251.2/24", "dev", &vb]);
    a.ip(&["link", "set", &va, "up"]);
    b.ip(&["link", "set", &vb, "up"]);

    let (da, db) = (env.path().join("swa"), env.path().join("swb"));
    let _swa = switch_in(&a, &da, "vni=4242,remote=192.168.251.2");
    let swb = switch_in(&b, &db, "vni=4242,remote=192.168.251.1");
    for (ns, name, dir, ip) in [(&a, "ga", &da, "10.77.0.1"), (&b, "gb", &db, "10.77.0.2")] {
        env.guard(name);
        let ipk = format!("umlkit.ip.eth0={ip}/24");
        let o = umlkit_in(
            &env,
            ns,
            &[
                "run",
                "--detach",
                "--wait",
                "--name",
                name,
                "--disk",
                img.to_str().unwrap(),
                "--net",
                dir.to_str().unwrap(),
                "--",
                &ipk,
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = env.ok(&[
        "exec",
        "ga",
        "--",
        "ping",
        "-c",
        "3",
        "-W",
        "5",
        "10.77.0.2",
    ]);
    assert!(o.contains(" 0% packet loss"), "{o}");

    // a Linux vxlan device takes switch b's place (same VNI, same port)
    env.ok(&["halt", "gb"]);
    drop(swb);
    b.ip(&[
        "link",
        "add",
        "vx4242",
        "type",
        "vxlan",
        "id",
        "4242",
        "remote",
        "192.168.251.1",
        "dstport",
        "4789",
        "dev",
        &vb,
    ]);
    b.ip(&["addr", "add", "10.77.0.3/24", "dev", "vx4242"]);
    b.ip(&["link", "set", "vx4242", "up"]);
    let mut ok = false;
    for _ in 0..3 {
        let o = env.umlkit(&[
            "exec",
            "ga",
            "--",
            "ping",
            "-c",
            "3",
            "-W",
            "3",
            "10.77.0.3",
        ]);
        if String::from_utf8_lossy(&o.stdout).contains(" 0% packet loss") {
            ok = true;
            break;
        }
    }
    assert!(ok, "no reply from the Linux vxlan device");
    // and the Linux side sees the guest's MAC behind our VTEP
    let fdb = Command::new("bridge")
        .args(["-n", &b.0, "fdb", "show", "dev", "vx4242"])
        .output()
        .unwrap();
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(fdb.contains("dst 192.168.251.1"), "{fdb}");
    env.ok(&["halt", "ga"]);
}

#[test]
fn bad_vxlan_specs_are_refused_at_start() {
    let tmp = testkit::short_tempdir("vxb");
    let dir = tmp.path().join("sw").display().to_string();
    for (spec, want) in [
        ("remote=192.0.2.1", "vni=N is required"),
        ("vni=99999999,remote=192.0.2.1", "24 bits"),
        ("vni=1", "at least one remote"),
        ("vni=1,group=192.0.2.1", "not a multicast address"),
        (
            "vni=1,remote=192.0.2.1,local=203.0.113.77",
            "cannot bind UDP",
        ),
    ] {
        let o = Command::new(testkit::umlkit_bin())
            .args(["switch", "-s", &dir, "--vxlan", spec])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{spec}: {err}");
        assert!(err.contains(want), "{spec}: {err}");
        assert!(!tmp.path().join("sw/ctl").exists(), "{spec}: socket left");
    }
}

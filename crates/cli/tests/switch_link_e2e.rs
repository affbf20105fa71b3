//! End to end: two real UML guests (default image, exec agent) on one
//! `umlkit switch`; link emulation measured with ping and a TCP transfer,
//! changed at run time, and captured with `umlkit capture` read by tshark.

mod guest_common;
mod switch_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use guest_common::Env;
use switch_common::*;
use testkit::ProcGuard;

/// RTTs (ms) of the replies in busybox ping output.
fn rtts(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.trim_end_matches(" ms").trim().parse().ok())
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Lab {
    env: Env,
    sw: Sw,
}

impl Lab {
    fn exec(&self, guest: &str, sh: &str) -> String {
        let o = self.env.umlkit(&["exec", guest, "--", "sh", "-c", sh]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    fn link(&self, args: &[&str]) {
        let mut a = vec!["link"];
        a.extend_from_slice(args);
        let o = Command::new(testkit::umlkit_bin())
            .args(&a)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{a:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn mgmt_path(&self) -> &str {
        self.sw.mgmt.to_str().unwrap()
    }

    /// Frames offered so far to port 2's outbound link.
    fn offered_out2(&self) -> u64 {
        let show = self.sw.mgmt("link/show 2");
        let mut lines = show.lines().skip_while(|l| !l.starts_with("Port 0002 out"));
        lines
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    fn ping_rtts(&self, count: u32) -> Vec<f64> {
        let out = self.exec("lka", &format!("ping -c {count} -i 0.01 -W 2 10.0.0.2"));
        let r = rtts(&out);
        assert!(r.len() as u32 >= count * 9 / 10, "{out}");
        r
    }

    /// Seconds to push `kb` KiB from lka to lkb over TCP; checks all arrived.
    fn transfer(&self, kb: u32) -> f64 {
        let mut rx = self.env.cmd(&[
            "exec",
            "lkb",
            "--",
            "sh",
            "-c",
            "sleep 8 | nc -l -p 5001 | wc -c",
        ]);
        rx.stdout(Stdio::piped());
        let mut rx = ProcGuard::spawn("receiver", rx);
        assert!(testkit::wait_until(WAIT, || self
            .exec(
                "lkb",
                "netstat -ltn 2>/dev/null | grep -q ':5001' && echo UP"
            )
            .contains("UP")));
        let t0 = Instant::now();
        let out = self.exec(
            "lka",
            &format!("dd if=/dev/zero bs=1k count={kb} 2>/dev/null | nc 10.0.0.2 5001; echo SENT"),
        );
        let secs = t0.elapsed().as_secs_f64();
        assert!(out.contains("SENT"), "{out}");
        rx.wait_timeout(Duration::from_secs(30));
        let mut got = String::new();
        use std::io::Read;
        rx.child_mut()
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got.trim(), (kb * 1024).to_string(), "bytes received");
        secs
    }
}

/// The tests of this file measure time (delays, rates) on a 2-core
/// machine: a bulk transfer of one test inflates the other's RTTs, so
/// they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn lab() -> Lab {
    let env = Env::new("lke");
    let sw = Sw::start(&[]);
    for (name, port, ip) in [("lka", 1, "10.0.0.1/24"), ("lkb", 2, "10.0.0.2/24")] {
        let net = format!("{},port={port}", sw.dir.display());
        let ip = format!("umlkit.ip.eth0={ip}");
        env.start(name, &["--net", &net, "--", &ip]);
    }
    let l = Lab { env, sw };
    let out = l.exec("lka", "ping -c 3 -W 2 10.0.0.2");
    assert!(out.contains(" 0% packet loss"), "{out}");
    l
}

#[test]
fn link_delay_loss_and_runtime_change_with_real_guests() {
    let _one = serial();
    let l = lab();
    let m = l.mgmt_path();
    let base = median(l.ping_rtts(40));
    for delay in [20.0, 50.0] {
        l.link(&[
            "set",
            m,
            "2",
            "--dir",
            "out",
            "--delay",
            &format!("{delay}ms"),
        ]);
        let med = median(l.ping_rtts(40));
        let extra = med - base;
        assert!(
            (extra - delay).abs() <= delay * 0.1,
            "delay {delay} ms: median {med:.3} ms, baseline {base:.3} ms"
        );
    }
    // loss 20% over 200 pings: 160 replies expected, sd 5.7: allow 4 sd
    l.link(&["set", m, "2", "--dir", "out", "loss=20%"]);
    let out = l.exec("lka", "ping -c 200 -i 0.01 -W 1 10.0.0.2");
    let got = rtts(&out).len() as f64;
    assert!((got - 160.0).abs() <= 23.0, "{got} replies of 200: {out}");
    let show = l.sw.mgmt("link/show 2");
    assert!(show.contains("Port 0002 out loss=20%"), "{show}");

    // changed while a ping runs: no reply lost, the RTTs follow
    l.link(&["clear", m, "2"]);
    let mut ping = l.env.cmd(&[
        "exec", "lka", "--", "ping", "-c", "150", "-i", "0.02", "10.0.0.2",
    ]);
    ping.stdout(Stdio::piped());
    let mut ping = ProcGuard::spawn("ping", ping);
    let start = l.offered_out2();
    assert!(testkit::wait_until(WAIT, || l.offered_out2() >= start + 40));
    l.link(&["set", m, "2", "--dir", "out", "--delay", "30ms"]);
    assert!(testkit::wait_until(WAIT, || l.offered_out2() >= start + 90));
    l.link(&["clear", m, "2", "--dir", "out"]);
    assert!(ping.wait_timeout(Duration::from_secs(30)).is_some());
    let mut out = String::new();
    use std::io::Read;
    ping.child_mut()
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains("150 packets received"), "{out}");
    let r = rtts(&out);
    let slow = r.iter().filter(|&&t| t >= 30.0).count();
    let fast = r.iter().filter(|&&t| t < 10.0).count();
    assert!(slow >= 20 && fast >= 60, "slow {slow} fast {fast}: {out}");
}

#[test]
fn link_rate_bounds_a_transfer_and_capture_sees_arp_with_real_guests() {
    let _one = serial();
    let l = lab();
    let m = l.mgmt_path();
    let plain = l.transfer(2000);
    l.link(&["set", m, "2", "--dir", "out", "--rate", "8mbit"]);
    let shaped = l.transfer(2000);
    // 2000 KiB at 8 Mbit/s: 2.05 s on the wire, minus what the socket
    // buffers hold when the sender ends
    assert!(shaped >= 1.5, "shaped {shaped:.2} s, plain {plain:.2} s");
    assert!(shaped <= 6.0, "shaped {shaped:.2} s");
    assert!(
        plain < shaped / 2.0,
        "shaped {shaped:.2} s, plain {plain:.2} s"
    );
    l.link(&["clear", m, "2"]);

    // capture an arping into pcapng, read it with tshark
    let file = l.env.path().join("arp.pcapng");
    let mut cap = Command::new(testkit::umlkit_bin());
    cap.args(["capture", m, "-w", file.to_str().unwrap()])
        .stderr(std::fs::File::create(l.env.path().join("cap.err")).unwrap());
    let mut cap = ProcGuard::spawn("capture", cap);
    assert!(testkit::wait_until(WAIT, || l
        .sw
        .log()
        .contains("capture started")));
    let out = l.exec("lka", "arping -c 2 -w 3 -I eth0 10.0.0.2");
    assert!(out.contains("Received 2 response"), "{out}");
    umlkit_sys::process::kill(cap.pid(), umlkit_sys::process::SIGINT).unwrap();
    assert!(cap.wait_timeout(Duration::from_secs(10)).is_some());
    let o = Command::new("tshark")
        .args(["-r", file.to_str().unwrap(), "-Y", "arp", "-T", "fields"])
        .args([
            "-e",
            "frame.interface_name",
            "-e",
            "arp.opcode",
            "-e",
            "arp.src.proto_ipv4",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("port1\t1\t10.0.0.1"), "{text}");
    assert!(text.contains("port2\t2\t10.0.0.2"), "{text}");

    // a capture client that stops reading: forwarding goes on, it reports drops
    let file = l.env.path().join("stalled.pcapng");
    let err = l.env.path().join("stalled.err");
    let mut cap = Command::new(testkit::umlkit_bin());
    cap.args(["capture", m, "--port", "2", "-w", file.to_str().unwrap()])
        .stderr(std::fs::File::create(&err).unwrap());
    let mut cap = ProcGuard::spawn("capture", cap);
    let n = l.sw.log().matches("capture started").count();
    assert!(testkit::wait_until(WAIT, || l
        .sw
        .log()
        .matches("capture started")
        .count()
        > n));
    umlkit_sys::process::kill(cap.pid(), umlkit_sys::process::SIGSTOP).unwrap();
    l.transfer(16000);
    let out = l.exec("lka", "ping -c 5 -i 0.2 -W 2 10.0.0.2");
    assert!(out.contains(" 0% packet loss"), "{out}");
    umlkit_sys::process::kill(cap.pid(), umlkit_sys::process::SIGCONT).unwrap();
    // a ping after resuming brings the drop report along
    l.exec("lka", "ping -c 2 -W 2 10.0.0.2");
    umlkit_sys::process::kill(cap.pid(), umlkit_sys::process::SIGINT).unwrap();
    assert!(cap.wait_timeout(Duration::from_secs(20)).is_some());
    let msg = std::fs::read_to_string(&err).unwrap();
    let dropped: u64 = msg
        .split(" frames captured, ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(dropped > 0, "{msg}");
    let o = Command::new("capinfos").arg(&file).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

//! The kernel's vector transport (`vecN:transport=bess,dst=DIR/vec`)
//! served by `umlkit switch --vector` (issue 13.1): raw SOCK_SEQPACKET
//! clients beside a VDE client, real guests on vector, daemon and vde
//! transports on one switch, hangups freeing ports, bad starts.

mod guest_common;
mod switch_common;

use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;

use net_proto::ctl::SockAddrUn;
use switch_common::*;
use umlkit_sys::net::{self as sys, SockKind};

/// A raw vector client, as the kernel's bess transport is: connect, then
/// one frame per message.
struct Vec0(OwnedFd);

impl Vec0 {
    fn connect(sw: &Sw) -> Vec0 {
        let s = sys::unix_socket(SockKind::SeqPacket, false).unwrap();
        let a = SockAddrUn::from_path(&sw.dir.join("vec")).unwrap();
        sys::connect_raw(s.as_fd(), a.as_bytes()).unwrap();
        Vec0(s)
    }

    fn send(&self, f: &[u8]) {
        sys::send_to_raw(self.0.as_fd(), f, None).unwrap();
    }

    /// The next frame carrying `payload`, within WAIT.
    fn recv_payload(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + WAIT;
        let mut b = sys::RecvBatch::new(1, 2048);
        while std::time::Instant::now() < deadline {
            match b.recv(self.0.as_fd(), false) {
                Ok(1) => {
                    let f = b.frame(0).to_vec();
                    if f.windows(payload.len()).any(|w| w == payload) {
                        return Some(f);
                    }
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        None
    }
}

fn active_ports(sw: &Sw) -> usize {
    sw.mgmt("port/print").matches(" ACTIVE - ").count()
}

fn wait_ports(sw: &Sw, n: usize) {
    assert!(
        testkit::wait_until(WAIT, || active_ports(sw) == n),
        "{}",
        sw.mgmt("port/print")
    );
}

#[test]
fn vector_clients_switch_frames_with_a_vde_client_and_hangup_frees_the_port() {
    let sw = Sw::start(&["--vector"]);
    let a = Vec0::connect(&sw);
    let b = Vec0::connect(&sw);
    let c = Client::vde(&sw.dir, 0).unwrap();
    wait_ports(&sw, 3);
    let ports = sw.mgmt("port/print");
    assert_eq!(ports.matches("module vector").count(), 2, "{ports}");
    assert!(ports.contains(": UML vector user=root pid="), "{ports}");
    // broadcast from a vector client reaches the other and the VDE client
    let bc = frame([0xff; 6], mac(0x51), b"vector broadcast");
    a.send(&bc);
    assert_eq!(b.recv_payload(b"vector broadcast").unwrap(), bc);
    let mut buf = [0u8; 2048];
    let n = c.data.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], &bc[..]);
    // unicast back from VDE to the learned vector MAC
    let uc = frame(mac(0x51), mac(0x53), b"to the vector client");
    c.data.send(&uc).unwrap();
    assert_eq!(a.recv_payload(b"to the vector client").unwrap(), uc);
    // a hangup frees the port at once (no control connection to wait for)
    drop(b);
    wait_ports(&sw, 2);
    drop(a);
    wait_ports(&sw, 1);
    assert!(sw.log().contains("(client pid "), "{}", sw.log());
}

#[test]
fn vector_start_errors_are_clear_and_leave_nothing() {
    let tmp = testkit::short_tempdir("vse");
    let run = switch_status;
    let ctl = tmp.path().join("u.ctl").display().to_string();
    let (code, err) = run(&["-u", &ctl, "--vector"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--vector needs a switch directory"), "{err}");
    // a regular file where the socket goes is not removed
    let dir = tmp.path().join("sw");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(dir.join("vec"), b"precious").unwrap();
    let (code, err) = run(&["-s", &dir.display().to_string(), "--vector"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not a socket is in the way"), "{err}");
    assert_eq!(std::fs::read(dir.join("vec")).unwrap(), b"precious");
}

/// The proof: guests on the vector transport ping and pass a TCP
/// transfer through umlkit switch, on one switch with a daemon-transport
/// and a vde-transport guest.
#[test]
fn vector_guests_mixed_with_daemon_and_vde_guests_on_one_switch() {
    let env = guest_common::Env::new("vgm");
    let img = env.default_image();
    let sw = Sw::start(&["--vector"]);
    let dir = sw.dir.display().to_string();
    // (name, --net, address); v1 and v2 on `DIR,vector`: the kernel's
    // vec0, renamed eth0 at boot, configured like any eth0
    let guests = [
        ("v1", format!("{dir},vector"), "10.6.0.1"),
        (
            "v2",
            format!("{dir},vector,mac=02:00:00:00:07:02"),
            "10.6.0.2",
        ),
        ("d3", dir.clone(), "10.6.0.3"),
        ("e4", format!("{dir},vde"), "10.6.0.4"),
    ];
    for (name, net, ip) in &guests {
        let ipk = format!("umlkit.ip.eth0={ip}/24");
        env.start(
            name,
            &["--disk", img.to_str().unwrap(), "--net", net, "--", &ipk],
        );
    }
    let links = env.ok(&["exec", "v2", "--", "ip", "-o", "link"]);
    assert!(
        links.contains(" eth0: ") && links.contains("02:00:00:00:07:02") && !links.contains("vec0"),
        "{links}"
    );
    for (name, _, _) in &guests {
        for (_, _, ip) in &guests {
            let o = env.ok(&["exec", name, "--", "ping", "-c", "2", "-W", "5", ip]);
            assert!(o.contains(" 0% packet loss"), "{name} -> {ip}: {o}");
        }
    }
    let ports = sw.mgmt("port/print");
    assert_eq!(ports.matches("module vector").count(), 2, "{ports}");
    // a TCP transfer between the two vector guests: 4 MiB, every byte
    // (busybox nc -l ends at its stdin's EOF: `sleep` keeps it open)
    let mut c = env.cmd(&[
        "exec",
        "v2",
        "--",
        "sh",
        "-c",
        "sleep 8 | nc -l -p 5001 | wc -c",
    ]);
    c.stdout(Stdio::piped());
    let mut rx = testkit::ProcGuard::spawn("nc -l", c);
    assert!(testkit::wait_until(WAIT, || env
        .umlkit(&[
            "exec",
            "v2",
            "--",
            "sh",
            "-c",
            "netstat -ltn | grep -q :5001"
        ])
        .status
        .success()));
    env.ok(&[
        "exec",
        "v1",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero bs=64k count=64 2>/dev/null | nc 10.6.0.2 5001",
    ]);
    rx.wait_timeout(std::time::Duration::from_secs(30));
    let mut got = String::new();
    use std::io::Read;
    rx.child_mut()
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    assert_eq!(got.trim(), (64 * 65536).to_string());
    // a halted vector guest frees its port
    env.ok(&["halt", "v1"]);
    assert!(testkit::wait_until(WAIT, || sw
        .mgmt("port/print")
        .matches("module vector")
        .count()
        == 1));
}

/// Jumbo frames: vector guests booted with `mtu=9000` on a `--mtu 9000`
/// switch pass 8000-byte pings (one frame each: the MTU is 9000); the same guests on a usual
/// switch (MTU 1500) lose them (the switch drops the giant frames)
/// while small frames pass.
#[test]
fn vector_guests_with_jumbo_mtu_need_a_jumbo_switch() {
    let env = guest_common::Env::new("vgj");
    let img = env.default_image();
    for (mtu_flag, jumbo_passes) in [(Some("9000"), true), (None, false)] {
        let mut args = vec!["--vector"];
        if let Some(m) = mtu_flag {
            args.extend(["--mtu", m]);
        }
        let sw = Sw::start(&args);
        let net = format!("{},vector,mtu=9000", sw.dir.display());
        let tag = if jumbo_passes { "a" } else { "b" };
        for i in 1..=2 {
            let ipk = format!("umlkit.ip.eth0=10.7.0.{i}/24");
            env.start(
                &format!("j{tag}{i}"),
                &["--disk", img.to_str().unwrap(), "--net", &net, "--", &ipk],
            );
        }
        let link = env.ok(&[
            "exec",
            &format!("j{tag}1"),
            "--",
            "ip",
            "-o",
            "link",
            "show",
            "eth0",
        ]);
        assert!(link.contains(" mtu 9000 "), "{link}");
        let small = env.ok(&[
            "exec",
            &format!("j{tag}1"),
            "--",
            "ping",
            "-c",
            "2",
            "-W",
            "5",
            "10.7.0.2",
        ]);
        assert!(small.contains(" 0% packet loss"), "{small}");
        let big = env.umlkit(&[
            "exec",
            &format!("j{tag}1"),
            "--",
            "ping",
            "-c",
            "3",
            "-W",
            "2",
            "-s",
            "8000",
            "10.7.0.2",
        ]);
        let out = String::from_utf8_lossy(&big.stdout);
        if jumbo_passes {
            assert!(out.contains(" 0% packet loss"), "{out}");
        } else {
            assert!(out.contains(" 100% packet loss"), "{out}");
        }
        for i in 1..=2 {
            env.ok(&["kill", &format!("j{tag}{i}")]);
        }
    }
}

//! uml_switch protocol over real sockets: learning/flooding as verified on
//! the C uml_switch, hub mode, UML's daemon transport on DIR/ctl, bad
//! clients, and the `uml_switch` multi-call drop-in.

mod switch_common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

use switch_common::*;
use testkit::ProcGuard;

fn payloads(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    frames.iter().map(|f| f[14..].to_vec()).collect()
}

/// uml-switch-daemon.md §3's verified table with three v3 clients.
#[test]
fn uml_v3_clients_learn_and_flood_like_uml_switch() {
    let sw = Sw::start(&[]);
    let a = Client::uml(&sw.uml).unwrap();
    let b = Client::uml(&sw.uml).unwrap();
    let c = Client::uml(&sw.uml).unwrap();
    // the reply is one 110-byte abstract sockaddr, the same for everyone
    assert_eq!(a.reply.len(), 110);
    assert_eq!(&a.reply[..3], &[1, 0, 0]);
    assert_eq!(a.reply, b.reply);

    a.send(&frame([0xff; 6], mac(1), b"bcast"));
    assert_eq!(
        b.recv_one().map(|f| f[14..].to_vec()),
        Some(b"bcast".to_vec())
    );
    assert_eq!(
        c.recv_one().map(|f| f[14..].to_vec()),
        Some(b"bcast".to_vec())
    );
    // not back to its sender
    assert!(fence(&b, None, &[&a])[0].is_empty());

    a.send(&frame(mac(2), mac(1), b"unknown"));
    let got = fence(&a, None, &[&b, &c]);
    assert_eq!(payloads(&got[0]), vec![b"unknown".to_vec()]);
    assert_eq!(payloads(&got[1]), vec![b"unknown".to_vec()]);

    b.send(&frame(mac(1), mac(2), b"to-a"));
    let got = fence(&b, None, &[&a, &c]);
    assert_eq!(payloads(&got[0]), vec![b"to-a".to_vec()]);
    assert!(got[1].is_empty());

    a.send(&frame(mac(2), mac(1), b"to-b"));
    let got = fence(&a, None, &[&b, &c]);
    assert_eq!(payloads(&got[0]), vec![b"to-b".to_vec()]);
    assert!(got[1].is_empty());

    let hash = sw.mgmt("hash/print");
    assert!(hash.contains("Addr: 02:00:00:00:00:01 VLAN 0000"), "{hash}");
    assert!(hash.contains("Addr: 02:00:00:00:00:02 VLAN 0000"), "{hash}");
}

#[test]
fn hub_floods_learned_unicast() {
    let sw = Sw::start(&["--hub"]);
    let a = Client::uml(&sw.uml).unwrap();
    let b = Client::uml(&sw.uml).unwrap();
    let c = Client::uml(&sw.uml).unwrap();
    b.send(&frame([0xff; 6], mac(2), b"hello"));
    a.recv_one().unwrap();
    c.recv_one().unwrap();
    a.send(&frame(mac(2), mac(1), b"to-b"));
    let got = fence(&a, None, &[&b, &c]);
    assert_eq!(payloads(&got[0]), vec![b"to-b".to_vec()]);
    assert_eq!(payloads(&got[1]), vec![b"to-b".to_vec()]);
    assert!(sw.mgmt("port/showinfo").contains("HUB=true"));
}

/// One fabric: UML daemon transport on DIR/ctl (per-port socket), a
/// uml_switch client on -u (shared socket) and a VDE client.
#[test]
fn daemon_transport_on_dir_ctl_and_uml_socket_share_one_fabric() {
    let sw = Sw::start(&[]);
    let d = Client::uml(&sw.dir.join("ctl")).unwrap();
    // vde_switch answers a named path DIR/NNN.FD
    let reply = net_proto::SockAddrUn::from_raw(&d.reply);
    assert!(reply.path().unwrap().starts_with(&sw.dir), "{reply:?}");
    let u = Client::uml(&sw.uml).unwrap();
    let v = Client::vde(&sw.dir, 0).unwrap();
    d.send(&frame([0xff; 6], mac(1), b"from-daemon"));
    assert_eq!(u.recv_one().unwrap()[14..], *b"from-daemon");
    assert_eq!(v.recv_one().unwrap()[14..], *b"from-daemon");
    u.send(&frame(mac(1), mac(2), b"from-uml"));
    assert_eq!(d.recv_one().unwrap()[14..], *b"from-uml");
    assert!(fence(&u, None, &[&v])[0].is_empty());
    v.send(&frame(mac(2), mac(3), b"from-vde"));
    assert_eq!(u.recv_one().unwrap()[14..], *b"from-vde");
    assert!(fence(&v, None, &[&d])[0].is_empty());
    let ports = sw.mgmt("port/print");
    assert!(ports.contains("module daemon      : "), "{ports}");
    assert!(ports.contains("module uml_switch  : "), "{ports}");
    assert!(
        ports.contains("module unix prog   : test client"),
        "{ports}"
    );
}

fn raw_request(path: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.write_all(bytes);
    if bytes.is_empty() {
        // nothing to say: EOF
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn malformed_requests_and_vanishing_clients_do_not_stop_the_switch() {
    let sw = Sw::start(&["-n", "8"]);
    let good = net_proto::ctl::uml_v3_request(&net_proto::SockAddrUn::abstract_name(b"x"));
    for path in [sw.uml.clone(), sw.dir.join("ctl")] {
        // each is answered by closing the connection, without a reply
        assert!(raw_request(&path, b"").is_empty());
        assert!(raw_request(&path, b"\xce\xfa\xed\xfe\x03").is_empty());
        assert!(raw_request(&path, &good[..100]).is_empty());
        let mut v2 = good.clone();
        v2[4] = 2;
        assert!(raw_request(&path, &v2).is_empty());
        let mut v9 = good.clone();
        v9[4] = 9;
        assert!(raw_request(&path, &v9).is_empty());
        let mut bad_type = good.clone();
        bad_type[8] = 7;
        assert!(raw_request(&path, &bad_type).is_empty());
        assert!(raw_request(&path, &[0x55; 256]).is_empty());
    }
    {
        // VDE: a named client socket that does not exist is refused
        let path = sw.dir.join("ctl");
        let missing = net_proto::ctl::Request::V3 {
            kind: net_proto::ctl::RequestKind::NewControl,
            port: 0,
            addr: net_proto::SockAddrUn::from_path(Path::new("/nonexistent/sock")).unwrap(),
            descr: String::new(),
        };
        assert!(raw_request(&path, &missing.to_bytes()).is_empty());
    }
    // connect and vanish, many times, mid-handshake and after
    for _ in 0..50 {
        drop(UnixStream::connect(&sw.uml).unwrap());
        drop(UnixStream::connect(sw.dir.join("ctl")).unwrap());
    }
    for _ in 0..20 {
        drop(Client::vde(&sw.dir, 0).unwrap());
        drop(Client::uml(&sw.uml).unwrap());
    }
    // still switching, ports were given back
    let a = Client::uml(&sw.uml).unwrap();
    let b = Client::vde(&sw.dir, 0).unwrap();
    a.send(&frame([0xff; 6], mac(1), b"alive"));
    assert_eq!(b.recv_one().unwrap()[14..], *b"alive");
    assert!(sw.guard.group_alive());
    let log = sw.log();
    assert!(log.contains("control request refused"), "{log}");
}

#[test]
fn connection_flood_past_the_port_limit_is_refused_at_once() {
    let sw = Sw::start(&["-n", "4"]);
    // ports 1..3 are auto-allocatable
    let mut held: Vec<Client> = (0..3).map(|_| Client::uml(&sw.uml).unwrap()).collect();
    for _ in 0..30 {
        assert!(Client::uml(&sw.uml).is_err());
        assert!(Client::vde(&sw.dir, 0).is_err());
    }
    // explicit port requests out of range or taken
    assert!(Client::vde(&sw.dir, 4).is_err());
    assert!(Client::vde(&sw.dir, 99).is_err());
    // a port is reused once its client leaves
    held.pop();
    assert!(testkit::wait_until(WAIT, || Client::vde(&sw.dir, 0)
        .map(|c| held.push(c))
        .is_ok()));
    let ports = sw.mgmt("port/print");
    assert_eq!(ports.matches("ACTIVE - Unnamed").count(), 3, "{ports}");
}

#[test]
fn runt_and_giant_frames_are_dropped_and_counted() {
    let sw = Sw::start(&[]);
    let a = Client::vde(&sw.dir, 1).unwrap();
    let b = Client::vde(&sw.dir, 2).unwrap();
    a.send(&[0xff; 13]);
    a.send(&vec![0xff; 1519]);
    a.send(&vec![0xff; 9000]);
    a.send(&frame([0xff; 6], mac(1), b"")); // 14 bytes is fine
                                            // sent last on the same socket: a bad frame let through comes first
    assert_eq!(b.recv_one(), Some(frame([0xff; 6], mac(1), b"")));
    let stats = sw.mgmt("port/stats 1");
    assert!(
        stats.contains("Port 0001 in_pkts=1 in_bytes=14 in_drops=3"),
        "{stats}"
    );
}

/// A peer that never reads: its frames are dropped and counted, the
/// switch never blocks and keeps serving others.
#[test]
fn full_peer_buffer_drops_and_never_blocks() {
    use std::os::unix::fs::MetadataExt;
    let sw = Sw::start(&[]);
    let a = Client::vde(&sw.dir, 1).unwrap();
    let sleepy = Client::vde(&sw.dir, 2).unwrap();
    let c = Client::uml(&sw.uml).unwrap();
    let d = Client::uml(&sw.uml).unwrap();
    sleepy.send(&frame([0xff; 6], mac(2), b"i am here"));
    d.send(&frame([0xff; 6], mac(4), b"d here"));
    // both broadcasts reach a and c (the switch learns both addresses)
    a.recv_n(2);
    c.recv_n(2);
    // blocking sends: the switch keeps reading, so these all go in, more
    // than any socket buffer towards the sleepy peer holds
    let mut sent = 0u64;
    let big = frame(mac(2), mac(1), &[0u8; 1400]);
    let small = frame(mac(4), mac(1), &[0u8; 50]);
    for _ in 0..12000 {
        a.send(&big);
        sent += 1;
    }
    // the uml_switch-socket peer d also never reads
    for _ in 0..2000 {
        a.send(&small);
    }
    assert!(sent > 0);
    // still forwarding to others
    a.send(&frame([0xff; 6], mac(1), b"still alive"));
    let mut seen = false;
    while let Some(f) = c.recv_one() {
        if f[14..] == *b"still alive" {
            seen = true;
            break;
        }
    }
    assert!(seen);
    let stats = sw.mgmt("port/stats");
    let line2 = stats
        .lines()
        .find(|l| l.starts_with("Port 0002"))
        .unwrap()
        .to_string();
    let drops: u64 = line2.rsplit("out_drops=").next().unwrap().parse().unwrap();
    assert!(drops > 0, "{stats}");
    // the port's counters add up to what came in for it
    let out: u64 = line2
        .split("out_pkts=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // every frame for it is accounted for: d's and the last broadcast + ours
    assert_eq!(out + drops, sent + 2, "{stats}");
    // the console names the client that stopped reading
    let who = format!(
        "(client pid {} uid {}): socket full",
        std::process::id(),
        std::fs::metadata("/proc/self").unwrap().uid()
    );
    let mut stats = String::new();
    assert!(
        testkit::wait_until(WAIT, || {
            stats = sw.mgmt("port/stats 2");
            stats
                .lines()
                .any(|l| l.starts_with(" -- endpoint ") && l.contains(&who))
        }),
        "{stats}"
    );
    drop(sleepy);
}

/// `uml_switch` multi-call: messages, stale socket replacement, live socket
/// refusal, usage and -tap errors, SIGINT cleanup.
#[test]
fn uml_switch_dropin_behaves_like_the_c_tool() {
    let tmp = testkit::short_tempdir("swu");
    let link = tmp.path().join("uml_switch");
    std::os::unix::fs::symlink(testkit::umlkit_bin(), &link).unwrap();
    let ctl = tmp.path().join("uml.ctl");
    let start = |extra: &[&str], out: &str| {
        let mut cmd = Command::new(&link);
        cmd.args(extra)
            .arg("-unix")
            .arg(&ctl)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(tmp.path().join(out)).unwrap())
            .stderr(Stdio::null());
        ProcGuard::spawn("uml_switch", cmd)
    };
    let read = |f: &str| std::fs::read_to_string(tmp.path().join(f)).unwrap_or_default();
    let attached = format!("uml_switch attached to unix socket '{}'\n", ctl.display());

    let mut first = start(&["-hub"], "out1");
    assert!(testkit::wait_until(WAIT, || read("out1").contains(&attached)));
    assert!(read("out1").starts_with("uml_switch will be a hub instead of a switch\n"));
    // a v3 client works
    let a = Client::uml(&ctl).unwrap();
    let b = Client::uml(&ctl).unwrap();
    a.send(&frame([0xff; 6], mac(1), b"hi"));
    assert_eq!(b.recv_one().unwrap()[14..], *b"hi");
    drop(a);
    drop(b);
    assert!(testkit::wait_until(WAIT, || read("out1")
        .matches("Disconnect")
        .count()
        == 2));
    assert_eq!(read("out1").matches("New connection").count(), 2);

    // a live socket is refused with uml_switch's words
    let out = Command::new(&link).arg("-unix").arg(&ctl).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let p = ctl.display();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("The control socket '{p}' has another server attached to it\nYou can either\n\tremove '{p}'\n\tor rerun with a different, unused filename for a socket\n")
    );

    // killed without cleanup: the stale socket is replaced silently
    first.kill();
    assert!(ctl.exists());
    let mut second = start(&[], "out2");
    assert!(testkit::wait_until(WAIT, || read("out2") == attached));
    assert!(Client::uml(&ctl).is_ok());

    // SIGINT: message, socket removed, death by the signal
    umlkit_sys::process::kill(second.pid(), umlkit_sys::process::SIGINT).unwrap();
    let st = second
        .wait_timeout(WAIT)
        .expect("uml_switch exits on SIGINT");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(2));
    assert!(read("out2").ends_with("Caught signal 2, cleaning up and exiting\n"));
    assert!(!ctl.exists());

    // usage and unsupported options
    let out = Command::new(&link).arg("-bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("Usage : uml_switch [ -unix control-socket ]"));
    let out = Command::new(&link).args(["-tap", "tap0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-tap is not supported"));
}

/// The real UML v0/v1 layouts are accepted by the uml_switch socket.
#[test]
fn uml_switch_socket_accepts_v1_and_v0_requests() {
    use std::os::linux::net::SocketAddrExt;
    let sw = Sw::start(&[]);
    let peer = Client::uml(&sw.uml).unwrap();
    for v in [0, 1] {
        let mut name = format!("umlkit-v{v}-{}", std::process::id()).into_bytes();
        name.resize(107, 0);
        let me = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let data = std::os::unix::net::UnixDatagram::bind_addr(&me).unwrap();
        let addr = net_proto::SockAddrUn::abstract_name(&name);
        let req = if v == 0 {
            net_proto::ctl::Request::V0 { mac: mac(9), addr }
        } else {
            net_proto::ctl::Request::V1 {
                mac: mac(9),
                addr,
                descr: String::new(),
            }
        };
        let mut ctl = UnixStream::connect(&sw.uml).unwrap();
        ctl.write_all(&req.to_bytes()).unwrap();
        if v == 1 {
            let mut reply = [0u8; 110];
            ctl.read_exact(&mut reply).unwrap();
            assert_eq!(reply.to_vec(), peer.reply);
        }
        let sw_addr = std::os::unix::net::SocketAddr::from_abstract_name(&peer.reply[3..]).unwrap();
        // v0 sends no reply; wait until the port exists, then talk
        assert!(testkit::wait_until(WAIT, || sw
            .mgmt("port/print")
            .matches("module uml_switch")
            .count()
            == 2));
        data.send_to_addr(&frame([0xff; 6], mac(9), b"old"), &sw_addr)
            .unwrap();
        assert_eq!(peer.recv_one().unwrap()[14..], *b"old");
        drop(ctl);
        assert!(testkit::wait_until(WAIT, || sw
            .mgmt("port/print")
            .matches("module uml_switch")
            .count()
            == 1));
    }
}

/// A slow but live reader gets flow control instead of loss: the switch
/// holds frames back and pauses the sender's socket until it drains.
#[test]
fn slow_reader_gets_every_frame_through_flow_control() {
    let sw = Sw::start(&[]);
    let a = Client::vde(&sw.dir, 1).unwrap();
    let b = Client::vde(&sw.dir, 2).unwrap();
    b.send(&frame([0xff; 6], mac(2), b"hello"));
    a.recv_n(1);
    let total = 30_000u32;
    let reader = std::thread::spawn(move || {
        let mut got = 0u32;
        let mut buf = [0u8; 2048];
        b.data.set_read_timeout(Some(WAIT)).unwrap();
        while got < total {
            match b.data.recv(&mut buf) {
                Ok(_) => got += 1,
                Err(_) => break,
            }
            if got.is_multiple_of(2000) {
                // a reader that keeps pausing
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        (got, b)
    });
    let payload = [0u8; 1000];
    for i in 0..total {
        let mut f = frame(mac(2), mac(1), &payload);
        f[14..18].copy_from_slice(&i.to_be_bytes());
        a.send(&f);
    }
    let (got, _b) = reader.join().unwrap();
    assert_eq!(got, total, "{}", sw.mgmt("port/stats"));
    let stats = sw.mgmt("port/stats 2");
    assert!(stats.contains("out_drops=0"), "{stats}");
}

/// A client that connects and never sends its request is closed after the
/// handshake timeout (10 s), so idle connections cannot pile up.
#[test]
fn idle_control_connection_is_closed() {
    let sw = Sw::start(&[]);
    let mut idle = UnixStream::connect(sw.dir.join("ctl")).unwrap();
    idle.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(idle.read(&mut buf).unwrap(), 0);
    assert!(sw.log().contains("sent no request in time"));
}

/// A refused request and a closed port name the client process (pid and
/// uid from SO_PEERCRED) in the log.
#[test]
fn peer_errors_name_the_client_pid_and_uid() {
    use std::os::unix::fs::MetadataExt;
    let sw = Sw::start(&[]);
    let who = format!(
        "(client pid {} uid {})",
        std::process::id(),
        std::fs::metadata("/proc/self").unwrap().uid()
    );
    assert!(raw_request(&sw.uml, &[0x55; 256]).is_empty());
    let c = Client::vde(&sw.dir, 5).unwrap();
    drop(c);
    let refused = "control request refused: ";
    assert!(
        testkit::wait_until(WAIT, || {
            let log = sw.log();
            log.lines()
                .any(|l| l.contains(refused) && l.ends_with(&who))
                && log.lines().any(|l| {
                    l.contains("port 5: endpoint ") && l.ends_with(&format!("closed {who}"))
                })
        }),
        "{}",
        sw.log()
    );
}

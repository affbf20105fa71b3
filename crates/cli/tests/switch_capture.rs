//! `umlkit capture` against a real `umlkit switch` with raw VDE clients:
//! pcapng read back by tshark, text output, a capture client that stops
//! reading (forwarding goes on, drops are counted and reported).

mod switch_common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use net_proto::capture::{self as cap, CapMsg};
use switch_common::*;
use testkit::ProcGuard;

fn capture_cmd(sw: &Sw, args: &[&str], out: Stdio) -> ProcGuard {
    let mut cmd = Command::new(testkit::umlkit_bin());
    cmd.arg("capture")
        .arg(&sw.mgmt)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(std::fs::File::create(sw.tmp.path().join("capture.err")).unwrap());
    ProcGuard::spawn("umlkit-capture", cmd)
}

/// Send `f` from `c` until `done` holds (the capture may start a little
/// after it was spawned), at most 10 s.
fn send_until(c: &Client, f: &[u8], mut done: impl FnMut() -> bool) {
    let ok = testkit::wait_until(WAIT, || {
        c.send(f);
        done()
    });
    assert!(ok, "condition not reached while sending");
}

#[test]
fn capture_pcapng_has_one_interface_per_port_and_reads_in_tshark() {
    let sw = Sw::start(&[]);
    let a = Client::vde(&sw.dir, 1).unwrap();
    let b = Client::vde(&sw.dir, 2).unwrap();
    let file = sw.tmp.path().join("cap.pcapng");
    let mut g = capture_cmd(
        &sw,
        &["-w", file.to_str().unwrap(), "-c", "6"],
        Stdio::null(),
    );
    let bcast = [0xff; 6];
    let mut n = 0;
    send_until(&a, &frame(bcast, mac(1), b"from a"), || {
        n += 1;
        b.send(&frame(bcast, mac(2), b"from b"));
        g.child_mut().try_wait().unwrap().is_some()
    });
    let err = std::fs::read_to_string(sw.tmp.path().join("capture.err")).unwrap();
    assert!(err.contains("6 frames captured, 0 dropped"), "{err}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let out = Command::new("tshark")
        .args(["-r", file.to_str().unwrap(), "-T", "fields"])
        .args([
            "-e",
            "frame.interface_name",
            "-e",
            "frame.interface_description",
        ])
        .args(["-e", "eth.src", "-e", "frame.p2p_dir"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(text.contains("port1\tswitch port 1: test client"), "{text}");
    assert!(text.contains("port2\tswitch port 2: test client"), "{text}");
    assert!(text.contains("02:00:00:00:00:01"), "{text}");
    assert!(text.contains("02:00:00:00:00:02"), "{text}");
    // the statistics blocks at the end: capinfos reads the whole file
    let out = Command::new("capinfos").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn capture_port_filter_sees_both_directions_as_text() {
    let sw = Sw::start(&[]);
    let a = Client::vde(&sw.dir, 1).unwrap();
    let b = Client::vde(&sw.dir, 2).unwrap();
    let out = sw.tmp.path().join("cap.txt");
    let mut g = capture_cmd(
        &sw,
        &["--port", "2", "-c", "4"],
        Stdio::from(std::fs::File::create(&out).unwrap()),
    );
    let bcast = [0xff; 6];
    send_until(&a, &frame(bcast, mac(1), b"to b"), || {
        b.send(&frame(bcast, mac(2), b"from b"));
        g.child_mut().try_wait().unwrap().is_some()
    });
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.lines().all(|l| l.contains("port 2 ")), "{text}");
    assert!(
        text.contains("port 2 in  ") && text.contains("port 2 out "),
        "{text}"
    );
    assert!(
        text.contains("02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff type 0x88b5"),
        "{text}"
    );
}

#[test]
fn capture_stalled_reader_does_not_stop_forwarding_and_drops_are_reported() {
    let sw = Sw::start(&[]);
    let a = Client::vde(&sw.dir, 1).unwrap();
    let b = Client::vde(&sw.dir, 2).unwrap();
    let bcast = [0xff; 6];
    b.send(&frame(bcast, mac(2), b"learn b"));
    assert!(a.recv_one().is_some());
    // a capture client that never reads
    let mut s = UnixStream::connect(&sw.mgmt).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    read_until_prompt(&mut s);
    s.write_all(b"capture/start port=2\n").unwrap();
    let r = read_until_prompt(&mut s);
    assert!(r.contains("1000 Success"), "{r}");
    // ~24 MB through port 2: far more than the capture queue (4 MiB) and
    // the socket buffers hold
    let payload = vec![0x5a; 1200];
    let (mut sent, mut got) = (0u64, 0u64);
    for _ in 0..200 {
        for _ in 0..100 {
            a.send(&frame(mac(2), mac(1), &payload));
            sent += 1;
        }
        for _ in 0..100 {
            if b.recv_one().is_some() {
                got += 1;
            }
        }
    }
    assert_eq!(got, sent, "forwarding lost frames while a capture stalled");
    // now read the whole stream: packets plus the drop report
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut data = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let (mut packets, mut dropped) = (0u64, 0u64);
    let mut off = 0;
    while let Some((m, used)) = cap::decode(&data[off..]).unwrap() {
        match m {
            CapMsg::Packet { port, .. } => {
                assert_eq!(port, 2);
                packets += 1;
            }
            CapMsg::Drops { port, total } => {
                assert_eq!(port, 2);
                dropped = total;
            }
            CapMsg::Interface { .. } => {}
        }
        off += used;
    }
    assert!(dropped > 0, "no drops reported ({packets} packets)");
    assert!(packets > 1000, "{packets}");
    // every frame to port 2 was either captured or counted as dropped
    assert_eq!(
        packets + dropped,
        sent,
        "packets {packets} dropped {dropped}"
    );
    // the switch still answers its console
    assert!(sw.mgmt("port/stats 2").contains("1000 Success"));
}

#[test]
fn capture_refuses_bad_port_and_symlinked_file() {
    let sw = Sw::start(&["-n", "4"]);
    let out = Command::new(testkit::umlkit_bin())
        .args([
            "capture",
            sw.mgmt.to_str().unwrap(),
            "--port",
            "9",
            "-c",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Invalid argument"), "{err}");
    let target = sw.tmp.path().join("victim");
    std::fs::write(&target, "keep").unwrap();
    let link = sw.tmp.path().join("cap.pcapng");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = Command::new(testkit::umlkit_bin())
        .args(["capture", sw.mgmt.to_str().unwrap(), "-c", "1", "-w"])
        .arg(&link)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cap.pcapng"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
}

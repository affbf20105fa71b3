//! Capture files written by `net_proto::pcap` read back by Wireshark's
//! `tshark` (skipped, saying so, when tshark is not installed).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use net_proto::pcap::{
    pcap_header, pcap_record, Direction, Interface, Packet, PcapngWriter, Stats, LINKTYPE_ETHERNET,
    SNAPLEN,
};

const TSHARK: &str = "/usr/bin/tshark";

fn tshark(args: &[&str]) -> Option<String> {
    if !Path::new(TSHARK).exists() {
        eprintln!("SKIP: {TSHARK} not installed");
        return None;
    }
    let out = Command::new(TSHARK)
        .args(args)
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

fn frame(n: u8) -> Vec<u8> {
    let mut f = vec![
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, n, 0x88, 0xb5,
    ];
    f.extend(std::iter::repeat_n(n, 46));
    f
}

#[test]
fn pcapng_read_back_by_tshark_names_interfaces() {
    let mut w = PcapngWriter::new();
    let mut out = Vec::new();
    w.section_header(&mut out, "umlkit test").unwrap();
    let pc1 = w
        .add_interface(
            &mut out,
            &Interface::ethernet("pc1:eth0", "lab demo, pc1 eth0 on A"),
        )
        .unwrap();
    let r1 = w
        .add_interface(
            &mut out,
            &Interface::ethernet("r1:eth1", "lab demo, r1 eth1 on A"),
        )
        .unwrap();
    let t0 = Duration::new(1_764_000_000, 0);
    for i in 0..5u8 {
        w.packet(
            &mut out,
            &Packet {
                interface: if i % 2 == 0 { pc1 } else { r1 },
                ts: t0 + Duration::from_millis(i as u64 * 10),
                data: &frame(i),
                direction: Some(if i % 2 == 0 {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                }),
                comment: (i == 3).then_some("duplicated by link emulation"),
            },
        )
        .unwrap();
    }
    for (id, n) in [(pc1, 3), (r1, 2)] {
        w.stats(
            &mut out,
            id,
            t0 + Duration::from_secs(1),
            &Stats {
                received: Some(n + 1),
                if_drop: Some(1),
                capture_drop: Some(0),
                delivered: Some(n),
            },
        )
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lab.pcapng");
    std::fs::write(&path, &out).unwrap();
    let Some(text) = tshark(&[
        "-r",
        path.to_str().unwrap(),
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "frame.interface_id",
        "-e",
        "frame.interface_name",
        "-e",
        "frame.interface_description",
        "-e",
        "frame.packet_flags_direction",
        "-e",
        "frame.comment",
        "-e",
        "frame.time_epoch",
    ]) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for (i, l) in lines.iter().enumerate() {
        let f: Vec<&str> = l.split('|').collect();
        let (id, name, descr) = if i % 2 == 0 {
            ("0", "pc1:eth0", "lab demo, pc1 eth0 on A")
        } else {
            ("1", "r1:eth1", "lab demo, r1 eth1 on A")
        };
        assert_eq!(&f[..3], &[id, name, descr], "{l}");
        let dir = if i % 2 == 0 {
            "0x00000001"
        } else {
            "0x00000002"
        };
        assert_eq!(f[3], dir, "{l}");
        assert_eq!(
            f[4],
            if i == 3 {
                "duplicated by link emulation"
            } else {
                ""
            }
        );
        assert!(f[5].starts_with(&format!("1764000000.0{i}")), "{l}");
    }
    // capinfos reads the interface statistics blocks (drop counts)
    if Path::new("/usr/bin/capinfos").exists() {
        let out = Command::new("/usr/bin/capinfos")
            .arg(&path)
            .output()
            .expect("run capinfos");
        let info = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{info}");
        assert_eq!(
            info.matches("Number of stat entries = 1").count(),
            2,
            "{info}"
        );
    }
}

#[test]
fn classic_pcap_read_back_by_tshark() {
    let mut out = Vec::new();
    pcap_header(&mut out, SNAPLEN, LINKTYPE_ETHERNET);
    for i in 0..7u8 {
        pcap_record(
            &mut out,
            Duration::new(1_764_000_000, i as u32 * 1000),
            &frame(i),
            SNAPLEN,
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("port.pcap");
    std::fs::write(&path, &out).unwrap();
    let Some(text) = tshark(&[
        "-r",
        path.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.len",
        "-e",
        "eth.src",
    ]) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert_eq!(lines[6], "60\t02:00:00:00:00:06");
}

//! Management console: real unixterm, and byte comparison with the real
//! vde_switch for a deterministic command sequence.

mod switch_common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use switch_common::*;
use testkit::ProcGuard;

const SEQUENCE: &[&str] = &[
    "port/showinfo",
    "hash/showinfo",
    "vlan/create 10",
    "vlan/create 10",
    "vlan/create 4095",
    "vlan/print",
    "vlan/allprint",
    "port/create 5",
    "port/create 5",
    "port/allprint 5",
    "port/print 5",
    "port/print 99",
    "port/remove 7",
    "port/setnumports 0",
    "bogus",
    "",
    "# a comment",
    "port/setvlan 5 10",
    "vlan/addport 10 6",
    "vlan/addport 10 5",
    "vlan/allprint",
    "vlan/print 10",
    "vlan/remove 10",
    "port/setvlan 5 0",
    "vlan/delport 10 5",
    "vlan/remove 10",
    "vlan/print 10",
    "port/setvlan 5 33",
    "port/remove 5",
    "port/createauto",
    "hash/print",
    "port/resetcounter",
    "port/resetcounter 9",
    "port/create 3",
    "vlan/allprint",
    "vlan/delport 0 3",
    "vlan/create 20",
    "vlan/addport 20 3",
    "vlan/allprint 20",
    "port/setvlan 3 4095",
    "port/allprint 3",
    "port/remove 3",
    "port/setnumports 4",
    "port/create 4",
    "port/create 3",
    "port/setnumports 2",
    "port/allprint",
    "port/sethub 1",
    "port/showinfo",
    "vlan/print 4095",
    "hash/find 02:00:00:00:00:01",
    "help port/setn",
    "ds/showinfo",
];

fn session(path: &std::path::Path) -> String {
    let mut conn = None;
    testkit::wait_until(WAIT, || {
        conn = UnixStream::connect(path).ok();
        conn.is_some()
    });
    let mut s = conn.expect("connect to the management socket");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut out = read_until_prompt(&mut s);
    for c in SEQUENCE {
        s.write_all(format!("{c}\n").as_bytes()).unwrap();
        out.push_str(&format!("[{c}]"));
        out.push_str(&read_until_prompt(&mut s));
    }
    s.write_all(b"logout\n").unwrap();
    out.push_str(&read_until_prompt(&mut s));
    out
}

/// Mask what differs between two switches by nature (directory names).
/// Also drops our extra `uml_switch ctl` line of ds/showinfo.
fn mask(s: &str, dir: &str) -> String {
    s.replace(dir, "<DIR>")
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("uml_switch ctl "))
        .collect()
}

#[test]
fn mgmt_output_matches_vde_switch_byte_for_byte() {
    testkit::require("vde_switch", "vde2");
    let sw = Sw::start(&[]);
    let ours = mask(&session(&sw.mgmt), &sw.dir.display().to_string());

    let tmp = testkit::short_tempdir("swv");
    let dir = tmp.path().join("sw");
    let mgmt = tmp.path().join("mgmt");
    let mut cmd = Command::new("vde_switch");
    cmd.arg("-s")
        .arg(&dir)
        .arg("-M")
        .arg(&mgmt)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut g = ProcGuard::spawn("vde_switch", cmd);
    let _stdin = g.child_mut().stdin.take();
    assert!(testkit::wait_until(WAIT, || mgmt.exists()));
    let theirs = mask(&session(&mgmt), &dir.display().to_string());
    assert!(ours.len() > 2000, "suspiciously short transcript: {ours}");
    if ours != theirs {
        for (a, b) in ours.lines().zip(theirs.lines()) {
            if a != b {
                panic!("first difference:\n ours:   {a:?}\n theirs: {b:?}\n\nfull ours:\n{ours}");
            }
        }
        panic!("transcripts differ in length:\n{ours}\n----\n{theirs}");
    }
    assert!(ours.ends_with("9999 END OF SESSION"));
}

#[test]
fn unixterm_drives_the_console_and_shutdown_stops_the_switch() {
    testkit::require("unixterm", "vde2");
    let mut sw = Sw::start(&[]);
    // one command per line, waiting for the prompt in between, as unixterm
    // users type them; the final shutdown ends the switch
    let script = "sleep 0.3; echo port/showinfo; sleep 0.3; echo 'port/stats'; sleep 0.3; \
                  echo showinfo; sleep 0.3; echo shutdown; sleep 0.5";
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("({script}) | unixterm {}", sw.mgmt.display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("VDE switch V.2.3.2\n"), "{text}");
    assert!(
        text.contains("Numports=32\nHUB=false\ncounters=true\n.\n1000 Success\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("mgmt {} perm 0600", sw.mgmt.display())),
        "{text}"
    );
    // (unixterm exits on the hangup, it may not show "9999 END OF SESSION")
    let st = sw
        .guard
        .wait_timeout(WAIT)
        .expect("switch exits after shutdown");
    assert!(st.success());
    assert!(!sw.dir.exists(), "switch directory removed at shutdown");
    assert!(!sw.mgmt.exists());
}

#[test]
fn console_survives_garbage_and_oversized_lines() {
    let sw = Sw::start(&[]);
    let mut s = UnixStream::connect(&sw.mgmt).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    read_until_prompt(&mut s);
    s.write_all(&[0xff, 0xfe, 0x00, b'\n']).unwrap();
    assert!(read_until_prompt(&mut s).contains("1038 Function not implemented"));
    s.write_all(&[b'x'; 100]).unwrap();
    let r = read_until_prompt(&mut s);
    assert!(r.contains("1038"), "{r}");
    drop(s);
    // a client that connects and vanishes
    for _ in 0..20 {
        drop(UnixStream::connect(&sw.mgmt).unwrap());
    }
    assert!(sw.mgmt("port/showinfo").contains("Numports=32"));
}

/// vdeterm (a line editor that needs a terminal, given one by `script`)
/// recognises our prompt, runs a command and shows its filtered output.
#[test]
fn vdeterm_runs_commands() {
    testkit::require("vdeterm", "vde2");
    testkit::require("script", "bsdutils");
    let sw = Sw::start(&[]);
    let feed = "sleep 1; printf 'port/showinfo\\r'; sleep 1; printf 'logout\\r'; sleep 0.5";
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "({feed}) | script -qfc 'vdeterm {}' /dev/null",
            sw.mgmt.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut g = ProcGuard::spawn("vdeterm", cmd);
    let mut out = String::new();
    use std::io::Read;
    g.child_mut()
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    g.wait_timeout(WAIT);
    assert!(
        out.contains(&format!("vde[{}]: ", sw.mgmt.display())),
        "{out}"
    );
    assert!(out.contains("Numports=32"), "{out}");
    assert!(out.contains("HUB=false"), "{out}");
    assert!(out.contains("Success"), "{out}");
}

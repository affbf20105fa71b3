//! Management console: real unixterm, and byte comparison with the real
//! vde_switch for a deterministic command sequence.

mod switch_common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

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

/// An interactive console client (unixterm, vdeterm under `script`)
/// driven line by line: each command is typed once the output shows the
/// previous one was answered (no sleeps).
struct Driven {
    guard: ProcGuard,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Driven {
    fn start(name: &str, mut cmd: Command) -> Driven {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut guard = ProcGuard::spawn(name, cmd);
        let stdin = guard.child_mut().stdin.take();
        let mut stdout = guard.child_mut().stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    return;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Driven { guard, stdin, out }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Wait (bounded) until `needle` shows `n` times in the output.
    fn wait_for(&self, needle: &str, n: usize) {
        assert!(
            testkit::wait_until(WAIT, || self.text().matches(needle).count() >= n),
            "waiting for {n} x {needle:?} in:\n{}",
            self.text()
        );
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
}

#[test]
fn unixterm_drives_the_console_and_shutdown_stops_the_switch() {
    testkit::require("unixterm", "vde2");
    let mut sw = Sw::start(&[]);
    // one command per line, each once the previous one is answered, as
    // unixterm users type them; the final shutdown ends the switch
    let mut cmd = Command::new("unixterm");
    cmd.arg(&sw.mgmt);
    let mut term = Driven::start("unixterm", cmd);
    term.wait_for("vde$ ", 1);
    for (i, line) in ["port/showinfo", "port/stats", "showinfo"]
        .iter()
        .enumerate()
    {
        term.type_line(&format!("{line}\n"));
        term.wait_for("1000 Success", i + 1);
        term.wait_for("vde$ ", i + 2);
    }
    term.type_line("shutdown\n");
    // (unixterm exits on the hangup, it may not show "9999 END OF SESSION")
    let st = sw
        .guard
        .wait_timeout(WAIT)
        .expect("switch exits after shutdown");
    assert!(st.success());
    term.stdin = None;
    term.guard.wait_timeout(WAIT);
    let text = term.text();
    assert!(text.starts_with("VDE switch V.2.3.2\n"), "{text}");
    assert!(
        text.contains("Numports=32\nHUB=false\ncounters=true\n.\n1000 Success\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("mgmt {} perm 0600", sw.mgmt.display())),
        "{text}"
    );
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
    let mut cmd = Command::new("script");
    cmd.arg("-qfc")
        .arg(format!("vdeterm {}", sw.mgmt.display()))
        .arg("/dev/null");
    let mut term = Driven::start("vdeterm", cmd);
    let prompt = format!("vde[{}]: ", sw.mgmt.display());
    term.wait_for(&prompt, 1);
    term.type_line("port/showinfo\r");
    term.wait_for("Success", 1);
    term.type_line("logout\r");
    term.stdin = None;
    term.guard.wait_timeout(WAIT);
    let out = term.text();
    assert!(
        out.contains(&format!("vde[{}]: ", sw.mgmt.display())),
        "{out}"
    );
    assert!(out.contains("Numports=32"), "{out}");
    assert!(out.contains("HUB=false"), "{out}");
    assert!(out.contains("Success"), "{out}");
}

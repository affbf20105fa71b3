//! `umlkit plug` and the `vde_plug` drop-in (issue 13, cables): stream
//! clients side by side with the C vde_plug, a dpipe cable from an umlkit
//! switch to the C vde_switch through `umlkit plug`, a real guest on UML's
//! vde transport through umlkit's `vde_plug`, and bad input.

mod guest_common;
mod switch_common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;

use switch_common::*;
use testkit::ProcGuard;

/// A stream client (C `vde_plug URL` or `umlkit plug URL`): frames with
/// 2-byte big-endian lengths on its stdin/stdout.
struct Stream {
    guard: ProcGuard,
    stdin: Option<ChildStdin>,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl Stream {
    fn spawn(what: &str, mut cmd: Command) -> Stream {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut guard = ProcGuard::spawn(what, cmd);
        let stdin = guard.child_mut().stdin.take();
        let mut out = guard.child_mut().stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut dec = net_proto::stream::Decoder::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = match out.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                dec.push(&chunk[..n]);
                while let Some(f) = dec.next() {
                    if tx.send(f.unwrap()).is_err() {
                        return;
                    }
                }
            }
        });
        Stream { guard, stdin, rx }
    }

    fn umlkit(url: &str) -> Stream {
        let mut c = Command::new(testkit::umlkit_bin());
        c.args(["plug", "--descr", "umlkit-plug-test", url]);
        Stream::spawn("umlkit plug", c)
    }

    fn c(url: &str) -> Stream {
        let mut c = Command::new("vde_plug");
        c.arg(url);
        Stream::spawn("vde_plug", c)
    }

    fn send(&mut self, f: &[u8]) {
        let s = self.stdin.as_mut().unwrap();
        s.write_all(&net_proto::stream::encode(f).unwrap()).unwrap();
        s.flush().unwrap();
    }

    /// The next frame carrying `payload` (others, e.g. a guest's, skipped).
    fn recv_payload(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let f = self.rx.recv_timeout(left).ok()?;
            if f.windows(payload.len()).any(|w| w == payload) {
                return Some(f);
            }
        }
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
fn umlkit_plug_and_c_vde_plug_exchange_frames_both_ways() {
    testkit::require("vde_plug", "vdeplug4");
    let sw = Sw::start(&[]);
    let dir = sw.dir.display().to_string();
    let mut ours = Stream::umlkit(&format!("vde://{dir}[5]"));
    let mut theirs = Stream::c(&dir);
    wait_ports(&sw, 2);
    let ports = sw.mgmt("port/print");
    assert!(ports.contains("Port 0005 "), "{ports}");
    assert!(
        ports.contains(": umlkit-plug-test user=root pid="),
        "{ports}"
    );
    let a = frame([0xff; 6], mac(0x21), b"broadcast from umlkit plug");
    ours.send(&a);
    assert_eq!(theirs.recv_payload(b"from umlkit plug").unwrap(), a);
    let b = frame(mac(0x21), mac(0x22), b"unicast from the C plug");
    theirs.send(&b);
    assert_eq!(ours.recv_payload(b"from the C plug").unwrap(), b);
    // a full-size frame (1514 bytes) crosses intact
    let mut big = frame(mac(0x21), mac(0x22), b"big");
    big.resize(1514, 0x5a);
    theirs.send(&big);
    assert_eq!(ours.recv_payload(b"big").unwrap(), big);

    // stdin EOF ends the plug with status 0 and frees its port
    drop(ours.stdin.take());
    let st = ours
        .guard
        .wait_timeout(WAIT)
        .expect("umlkit plug ends on stdin EOF");
    assert!(st.success(), "{st}");
    wait_ports(&sw, 1);
}

#[test]
fn dpipe_cable_from_umlkit_plug_to_the_c_vde_switch() {
    testkit::require("vde_switch", "vde2");
    testkit::require("dpipe", "vdeplug4");
    testkit::require("vde_plug", "vdeplug4");
    let sw = Sw::start(&[]);
    let tmp = testkit::short_tempdir("plc");
    let cdir = tmp.path().join("csw");
    let mut cmd = Command::new("vde_switch");
    cmd.arg("-s")
        .arg(&cdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut csw = ProcGuard::spawn("vde_switch", cmd);
    let _keep_stdin = csw.child_mut().stdin.take();
    assert!(testkit::wait_until(WAIT, || cdir.join("ctl").exists()));
    let umlkit = testkit::umlkit_bin();
    let mut cable = Command::new("dpipe");
    cable
        .arg(&umlkit)
        .args(["plug", &sw.dir.display().to_string(), "="])
        .args(["vde_plug", &cdir.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut cable = ProcGuard::spawn("dpipe", cable);
    wait_ports(&sw, 1);
    assert!(sw.mgmt("port/print").contains(": vdeplug: user=root"));
    let mut near = Stream::umlkit(&sw.dir.display().to_string());
    let far = Stream::c(&cdir.display().to_string());
    wait_ports(&sw, 2);
    // the far plug may join the C switch a moment later: resend until seen
    let hello = frame([0xff; 6], mac(0x31), b"across the cable");
    let mut got = None;
    for _ in 0..50 {
        near.send(&hello);
        if let Ok(f) = far.rx.recv_timeout(std::time::Duration::from_millis(200)) {
            got = Some(f);
            break;
        }
    }
    assert_eq!(got.as_deref(), Some(&hello[..]));
    // ending the cable frees the port on our switch
    let _ = umlkit_sys::process::kill(cable.pid(), umlkit_sys::process::SIGTERM);
    cable.wait_timeout(WAIT);
    wait_ports(&sw, 1);
}

/// UML's `ethN=vde,DIR` runs the first `vde_plug` in PATH as
/// `vde_plug --descr 'UML vde_transport' --mod2 0700 seqpacket://FD DIR`:
/// with umlkit's drop-in first, a guest on the vde transport pings a
/// guest on the daemon transport and no C vde_plug runs.
#[test]
fn guest_on_the_vde_transport_through_umlkit_vde_plug() {
    let env = guest_common::Env::new("plg");
    let img = env.default_image();
    let sw = Sw::start(&[]);
    let bin = env.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(testkit::umlkit_bin(), bin.join("vde_plug")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dir = sw.dir.display().to_string();
    for (name, net, ip) in [
        ("pv", format!("{dir},vde"), "10.7.0.1/24"),
        ("pd", dir.clone(), "10.7.0.2/24"),
    ] {
        env.guard(name);
        let ip = format!("umlkit.ip.eth0={ip}");
        let o = env
            .cmd(&[
                "run",
                "--detach",
                "--wait",
                "--name",
                name,
                "--disk",
                img.to_str().unwrap(),
                "--net",
                &net,
                "--",
                &ip,
            ])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = env.ok(&["exec", "pv", "--", "ping", "-c", "3", "-W", "5", "10.7.0.2"]);
    assert!(o.contains(" 0% packet loss"), "{o}");
    let ports = sw.mgmt("port/print");
    assert!(
        ports.contains(": UML vde_transport user=root pid="),
        "{ports}"
    );
    // the helper is umlkit, not the C vde_plug
    let pid: u32 = ports
        .split("UML vde_transport user=root pid=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, testkit::umlkit_bin().canonicalize().unwrap());
    env.ok(&["halt", "pv"]);
    // the guest's end closes the seqpacket: the helper leaves and frees its port
    assert!(testkit::wait_until(WAIT, || !Path::new(&format!(
        "/proc/{pid}"
    ))
    .exists()
        || umlkit_sys::process::is_zombie(pid)));
    wait_ports(&sw, 1);
    env.ok(&["halt", "pd"]);
}

#[test]
fn bad_plug_input_is_refused_with_a_clear_message() {
    let sw = Sw::start(&[]);
    let tmp = testkit::short_tempdir("plb");
    let run = |args: &[&str], argv0: Option<&str>| {
        let mut c = match argv0 {
            Some(name) => {
                let link = tmp.path().join(name);
                if !link.exists() {
                    std::os::unix::fs::symlink(testkit::umlkit_bin(), &link).unwrap();
                }
                Command::new(link)
            }
            None => {
                let mut c = Command::new(testkit::umlkit_bin());
                c.arg("plug");
                c
            }
        };
        let o = c.args(args).stdin(Stdio::null()).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["/nonexistent/switch"], None);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("vde_open /nonexistent/switch") && err.contains("No such file"),
        "{err}"
    );
    let (code, err) = run(&["udp://192.0.2.1:5000"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("unsupported scheme 'udp://'"), "{err}");
    let (code, err) = run(&["/tmp/x[../../etc]"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad port"), "{err}");
    let (code, err) = run(&["--mod", "999", "/tmp/x"], None);
    assert_ne!(code, Some(0));
    assert!(err.contains("not an octal mode"), "{err}");
    // vde_plug: fd 0 is /dev/null here, not a seqpacket socket
    let dir = sw.dir.display().to_string();
    let (code, err) = run(&["seqpacket://0", &dir], Some("vde_plug"));
    assert_eq!(code, Some(1));
    assert!(err.contains("not a SOCK_SEQPACKET socket"), "{err}");
    let (code, err) = run(&["seqpacket://99", &dir], Some("vde_plug"));
    assert_eq!(code, Some(1));
    assert!(err.contains("vde_open seqpacket://99"), "{err}");
    let (code, err) = run(&[&dir, &dir], Some("vde_plug"));
    assert_eq!(code, Some(1));
    assert!(err.contains("seqpacket://FD URL"), "{err}");
    let (code, err) = run(&[&dir, "=", "cat"], Some("vde_plug"));
    assert_eq!(code, Some(1));
    assert!(err.contains("dpipe umlkit plug"), "{err}");
    // nothing of ours left in the switch dir, and the switch still serves
    let left: Vec<_> = std::fs::read_dir(&sw.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "ctl")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(active_ports(&sw), 0);
}

/// Start the C vde_switch on `dir` (stdin kept open: it reads commands there).
fn c_switch(dir: &Path) -> (ProcGuard, Option<ChildStdin>) {
    let mut cmd = Command::new("vde_switch");
    cmd.arg("-s")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut g = ProcGuard::spawn("vde_switch", cmd);
    let stdin = g.child_mut().stdin.take();
    assert!(testkit::wait_until(WAIT, || dir.join("ctl").exists()));
    (g, stdin)
}

/// Resend `f` from `from` until `to` sees it (the far end may still be
/// joining); true when it arrived.
fn crosses(from: &mut Stream, to: &Stream, f: &[u8], tries: usize) -> bool {
    for _ in 0..tries {
        from.send(f);
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match to.rx.recv_timeout(left) {
                Ok(g) if g == f => return true,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    false
}

#[test]
fn uplink_cables_two_switches_and_redials_when_the_far_one_restarts() {
    testkit::require("vde_switch", "vde2");
    testkit::require("vde_plug", "vdeplug4");
    let tmp = testkit::short_tempdir("plu");
    let cdir = tmp.path().join("csw");
    let (csw, keep) = c_switch(&cdir);
    let sw = Sw::start(&["--uplink", &cdir.display().to_string()]);
    wait_ports(&sw, 1);
    let ports = sw.mgmt("port/print");
    assert!(ports.contains(": umlkit uplink to "), "{ports}");
    let mut near = Stream::umlkit(&sw.dir.display().to_string());
    let mut far = Stream::c(&cdir.display().to_string());
    let hello = frame([0xff; 6], mac(0x41), b"over the uplink");
    assert!(crosses(&mut near, &far, &hello, 50));
    let back = frame([0xff; 6], mac(0x42), b"and back");
    assert!(crosses(&mut far, &near, &back, 50));

    // the far switch restarts: the uplink's port goes, then comes back
    drop(far);
    drop(keep);
    drop(csw);
    wait_ports(&sw, 1); // only `near` is left
    let (_csw, _keep) = c_switch(&cdir);
    assert!(
        testkit::wait_until(std::time::Duration::from_secs(30), || active_ports(&sw)
            == 2),
        "the uplink did not come back: {}",
        sw.mgmt("port/print")
    );
    let far = Stream::c(&cdir.display().to_string());
    let again = frame([0xff; 6], mac(0x41), b"after the restart");
    assert!(crosses(&mut near, &far, &again, 50));
    assert!(sw.log().contains("uplink to"), "{}", sw.log());
}

#[test]
fn bad_uplinks_are_refused_at_start() {
    let tmp = testkit::short_tempdir("plv");
    let run = switch_status;
    let dir = tmp.path().join("sw").display().to_string();
    let (code, err) = run(&["-s", &dir, "--uplink", "udp://192.0.2.1:4789"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--uplink udp://192.0.2.1:4789: unsupported scheme"),
        "{err}"
    );
    let ctl = tmp.path().join("uml.ctl").display().to_string();
    let (code, err) = run(&["-u", &ctl, "--uplink", "/tmp/x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("needs a switch directory"), "{err}");
    // nothing left behind by the refused starts
    assert!(!tmp.path().join("sw/ctl").exists());
    assert!(!tmp.path().join("uml.ctl").exists());
}

//! VDE side with the real tools: vde_plug stream clients, a dpipe cable
//! to the C vde_switch, port refusal, socket lifecycle, modes, VLANs.

mod switch_common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use switch_common::*;
use testkit::ProcGuard;

/// A `vde_plug URL` stream client: frames with 2-byte big-endian lengths.
struct Plug {
    _guard: ProcGuard,
    stdin: ChildStdin,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl Plug {
    fn start(url: &str) -> Plug {
        let mut cmd = Command::new("vde_plug");
        cmd.arg(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut guard = ProcGuard::spawn("vde_plug", cmd);
        let stdin = guard.child_mut().stdin.take().unwrap();
        let stdout = guard.child_mut().stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || reader(stdout, tx));
        Plug {
            _guard: guard,
            stdin,
            rx,
        }
    }

    fn send(&mut self, f: &[u8]) {
        let mut b = (f.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(f);
        self.stdin.write_all(&b).unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next frame that is not a fence marker (up to WAIT).
    fn recv(&self) -> Option<Vec<u8>> {
        loop {
            let f = self.rx.recv_timeout(WAIT).ok()?;
            if !is_fence(&f) {
                return Some(f);
            }
        }
    }

    /// Frames received before fence marker `id` (see `fence`).
    fn until_fence(&self, id: u32) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        loop {
            let f = self
                .rx
                .recv_timeout(WAIT)
                .unwrap_or_else(|e| panic!("fence {id} did not arrive: {e}"));
            if is_fence(&f) {
                if f.ends_with(&id.to_be_bytes()) {
                    return v;
                }
                continue;
            }
            v.push(f);
        }
    }
}

fn reader(mut out: ChildStdout, tx: mpsc::Sender<Vec<u8>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match out.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 2 {
            let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
            if buf.len() < 2 + len {
                break;
            }
            let f = buf[2..2 + len].to_vec();
            buf.drain(..2 + len);
            if tx.send(f).is_err() {
                return;
            }
        }
    }
}

fn wait_ports(sw: &Sw, n: usize) {
    assert!(
        testkit::wait_until(WAIT, || sw.mgmt("port/print").matches(" ACTIVE - ").count()
            == n),
        "{}",
        sw.mgmt("port/print")
    );
}

#[test]
fn vde_plug_stream_clients_exchange_frames() {
    testkit::require("vde_plug", "vdeplug4");
    let sw = Sw::start(&[]);
    let dir = sw.dir.display().to_string();
    let mut a = Plug::start(&dir);
    let mut b = Plug::start(&format!("vde://{dir}[7]"));
    let c = Plug::start(&format!("{dir}[0]"));
    wait_ports(&sw, 3);
    let ports = sw.mgmt("port/print");
    assert!(
        ports.contains("Port 0000 ")
            && ports.contains("Port 0001 ")
            && ports.contains("Port 0007 "),
        "{ports}"
    );
    assert!(ports.contains(": vdeplug: user=root pid="), "{ports}");

    let bc = frame([0xff; 6], mac(1), b"broadcast from a");
    a.send(&bc);
    assert_eq!(b.recv().unwrap(), bc);
    assert_eq!(c.recv().unwrap(), bc);
    let uni = frame(mac(1), mac(2), b"unicast b->a");
    b.send(&uni);
    assert_eq!(a.recv().unwrap(), uni);
    // a marker b sends after: c sees it, and nothing before it
    let (id, f) = fence_frame(None);
    b.send(&f);
    assert!(
        c.until_fence(id).is_empty(),
        "learned unicast must not be flooded"
    );
    // a 19-byte frame is forwarded unchanged (no padding)
    let tiny = frame(mac(2), mac(1), b"abcde");
    a.send(&tiny);
    assert_eq!(b.recv().unwrap(), tiny);

    // a client leaving frees its port socket file
    drop(a);
    wait_ports(&sw, 2);
    let files: Vec<String> = std::fs::read_dir(&sw.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!files.iter().any(|f| f.starts_with("001.")), "{files:?}");
    assert!(files.iter().any(|f| f.starts_with("007.")), "{files:?}");
}

/// vde_switch 2.3.2 leaves such clients hanging forever; we close the
/// control connection so vde_plug fails at once.
#[test]
fn refused_port_requests_fail_promptly() {
    testkit::require("vde_plug", "vdeplug4");
    let sw = Sw::start(&["-n", "4"]);
    let dir = sw.dir.display().to_string();
    for url in [format!("{dir}[99]"), format!("{dir}[4]")] {
        let mut cmd = Command::new("vde_plug");
        cmd.arg(&url)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut g = ProcGuard::spawn("vde_plug", cmd);
        let st = g
            .wait_timeout(WAIT)
            .unwrap_or_else(|| panic!("vde_plug {url} hangs"));
        assert!(!st.success(), "{url}");
    }
    // fill the switch (ports 1..3), the next automatic request fails too
    let _held: Vec<Plug> = (0..3).map(|_| Plug::start(&dir)).collect();
    wait_ports(&sw, 3);
    let mut cmd = Command::new("vde_plug");
    cmd.arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut g = ProcGuard::spawn("vde_plug", cmd);
    let st = g
        .wait_timeout(WAIT)
        .expect("vde_plug on a full switch hangs");
    assert!(!st.success());
    assert!(sw.log().contains("port request refused"));
}

/// A cable between an umlkit switch and the C vde_switch: frames cross both ways.
#[test]
fn dpipe_cable_to_c_vde_switch() {
    testkit::require("vde_switch", "vde2");
    testkit::require("dpipe", "vdeplug4");
    let sw = Sw::start(&[]);
    let tmp = testkit::short_tempdir("swc");
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
    let ours = sw.dir.display().to_string();
    let theirs = cdir.display().to_string();
    let mut cmd = Command::new("dpipe");
    cmd.args(["vde_plug", &ours, "=", "vde_plug", &theirs])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _cable = ProcGuard::spawn("dpipe", cmd);
    wait_ports(&sw, 1);
    let mut a = Plug::start(&ours);
    let mut b = Plug::start(&theirs);
    wait_ports(&sw, 2);
    // vde_switch has no mgmt here: retry the first broadcast until the
    // far side is plugged in
    let hello = frame([0xff; 6], mac(0xb), b"hello from the C switch");
    let mut got = None;
    for _ in 0..20 {
        b.send(&hello);
        if let Ok(f) = a.rx.recv_timeout(Duration::from_millis(500)) {
            got = Some(f);
            break;
        }
    }
    assert_eq!(got.unwrap(), hello);
    let back = frame(mac(0xb), mac(0xa), b"hello from umlkit");
    a.send(&back);
    let f = loop {
        let f = b.recv().expect("frame across the cable");
        if f != hello {
            break f;
        }
    };
    assert_eq!(f, back);
    let hash = sw.mgmt("hash/print");
    assert!(
        hash.contains("Addr: 02:00:00:00:00:0b VLAN 0000 to port: 001"),
        "{hash}"
    );
}

#[test]
fn stale_socket_replaced_live_refused_sigterm_cleans_up() {
    let mut sw = Sw::start(&[]);
    // a live switch directory is refused (vde_switch exits 255)
    let out = Command::new(testkit::umlkit_bin())
        .arg("switch")
        .arg("-s")
        .arg(&sw.dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "Could not bind to socket '{}'",
            sw.dir.join("ctl").display()
        )),
        "{err}"
    );
    let _c = Client::vde(&sw.dir, 0).unwrap();
    // SIGTERM: clean exit, sockets and the directory removed
    umlkit_sys::process::kill(sw.guard.pid(), umlkit_sys::process::SIGTERM).unwrap();
    let st = sw.guard.wait_timeout(WAIT).expect("exit on SIGTERM");
    assert!(st.success());
    assert!(!sw.dir.exists(), "switch directory left behind");
    assert!(!sw.mgmt.exists() && !sw.uml.exists());

    // SIGKILL leaves stale sockets; the next switch replaces them
    let mut sw2 = Sw::start(&[]);
    sw2.guard.kill();
    assert!(sw2.dir.join("ctl").exists());
    // ... which a status check can tell from a live switch: connect refused
    // (issue 8.10: `lab status` relies on this)
    assert_eq!(
        std::os::unix::net::UnixStream::connect(sw2.dir.join("ctl"))
            .unwrap_err()
            .kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    let mut cmd = Command::new(testkit::umlkit_bin());
    cmd.arg("switch")
        .arg("-s")
        .arg(&sw2.dir)
        .arg("-u")
        .arg(&sw2.uml)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let _g = ProcGuard::spawn("umlkit-switch", cmd);
    assert!(testkit::wait_until(WAIT, || Client::vde(&sw2.dir, 0).is_ok()));
    assert!(Client::uml(&sw2.uml).is_ok());
}

/// A regular file where the control socket should be is never deleted.
#[test]
fn a_regular_file_in_the_way_is_not_removed() {
    let tmp = testkit::short_tempdir("swf");
    let ctl = tmp.path().join("uml.ctl");
    std::fs::write(&ctl, "precious").unwrap();
    let out = Command::new(testkit::umlkit_bin())
        .arg("switch")
        .arg("-u")
        .arg(&ctl)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&ctl.display().to_string()) && err.contains("not a socket"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&ctl).unwrap(), "precious");
}

fn mode_of(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn socket_and_directory_modes_follow_vde_switch() {
    let sw = Sw::start(&[]);
    assert_eq!(mode_of(&sw.dir), 0o2700);
    assert_eq!(mode_of(&sw.dir.join("ctl")), 0o600);
    assert_eq!(mode_of(&sw.mgmt), 0o600);
    let sw = Sw::start(&["-m", "0660", "-g", "0", "--mgmtmode", "0640"]);
    // vde_switch: 02770; we add the sticky bit to a group/other-writable
    // directory so group members cannot replace `ctl`
    assert_eq!(mode_of(&sw.dir), 0o3770);
    assert_eq!(mode_of(&sw.dir.join("ctl")), 0o660);
    assert_eq!(mode_of(&sw.mgmt), 0o640);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&sw.dir).unwrap().gid(), 0);
    // an unknown group is a clear error
    let out = Command::new(testkit::umlkit_bin())
        .args([
            "switch",
            "-s",
            "/tmp/never-created-umlkit",
            "-g",
            "no-such-group-x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such group 'no-such-group-x'"));
}

/// vde.md §4's verified VLAN example: ports 11 untagged VLAN 0; 12
/// untagged VLAN 10; 13 untagged VLAN 0 + tagged VLAN 10.
#[test]
fn vlan_table_like_vde_switch() {
    let sw = Sw::start(&[]);
    let a = Client::vde(&sw.dir, 11).unwrap();
    let b = Client::vde(&sw.dir, 12).unwrap();
    let c = Client::vde(&sw.dir, 13).unwrap();
    // and a pure trunk: port 14 only tagged in VLAN 10
    let d = Client::vde(&sw.dir, 14).unwrap();
    for cmd in [
        "vlan/create 10",
        "port/setvlan 12 10",
        "vlan/addport 10 13",
        "vlan/addport 10 14",
        "port/setvlan 14 4095",
    ] {
        assert!(sw.mgmt(cmd).starts_with("1000 Success"), "{cmd}");
    }
    let bc = [0xff; 6];
    let (ma, mb, mc) = (mac(1), mac(2), mac(3));
    // each check ends with a fence: a marker frame sent after the frame
    // under test, from a client that reaches the one watched (in VLAN 0
    // untagged, or tagged 10), instead of waiting for silence
    let none: Vec<Vec<u8>> = Vec::new();
    a.send(&frame(bc, ma, b"fromA"));
    assert_eq!(c.recv_one(), Some(frame(bc, ma, b"fromA")));
    // seen at c: every copy of it is out; c's marker comes after them
    assert_eq!(
        fence(&c, Some(10), &[&b, &d]),
        vec![none.clone(), none.clone()]
    );
    b.send(&frame(bc, mb, b"fromB"));
    let got = fence(&b, None, &[&c, &d]);
    assert_eq!(got[0], vec![tagged(bc, mb, 10, b"fromB")]);
    assert_eq!(got[1], vec![tagged(bc, mb, 10, b"fromB")]);
    assert_eq!(fence(&c, None, &[&a]), vec![none.clone()]);
    c.send(&tagged(bc, mc, 10, b"fromC"));
    let got = fence(&c, Some(10), &[&b, &d]);
    assert_eq!(got[0], vec![frame(bc, mc, b"fromC")]);
    assert_eq!(got[1], vec![tagged(bc, mc, 10, b"fromC")]);
    assert_eq!(fence(&c, None, &[&a]), vec![none.clone()]);
    // untagged frames on the NOVLAN trunk are dropped
    d.send(&frame(bc, mac(4), b"untagged on trunk"));
    let got = fence(&d, Some(10), &[&b, &c]);
    assert_eq!(got, vec![none.clone(), none.clone()]);
    assert_eq!(fence(&c, None, &[&a]), vec![none.clone()]);
    c.send(&tagged(mb, mc, 10, b"C->B"));
    assert_eq!(fence(&c, Some(10), &[&b])[0], vec![frame(mb, mc, b"C->B")]);
    b.send(&frame(mc, mb, b"B->C"));
    assert_eq!(fence(&b, None, &[&c])[0], vec![tagged(mc, mb, 10, b"B->C")]);
    let v = sw.mgmt("vlan/print 10");
    assert!(v.contains("VLAN 0010\n -- Port 0012 tagged=0 active=1 status=Forwarding\n -- Port 0013 tagged=1 active=1 status=Forwarding\n -- Port 0014 tagged=1 active=1 status=Forwarding\n"), "{v}");
}

/// `-d -p PIDFILE`: the foreground process returns at once, the daemon
/// serves and writes its pid; SIGTERM to that pid cleans everything up.
#[test]
fn daemon_mode_writes_pidfile_and_cleans_up() {
    let tmp = testkit::short_tempdir("swd");
    let dir = tmp.path().join("sw");
    let pidfile = tmp.path().join("sw.pid");
    let mut cmd = Command::new(testkit::umlkit_bin());
    cmd.arg("switch")
        .arg("-s")
        .arg(&dir)
        .arg("-d")
        .arg("-p")
        .arg(&pidfile)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut g = ProcGuard::spawn("umlkit-switch-d", cmd);
    let st = g.wait_timeout(WAIT).expect("foreground part returns");
    assert!(st.success());
    assert!(testkit::wait_until(WAIT, || std::fs::read_to_string(
        &pidfile
    )
    .is_ok_and(|s| s.ends_with('\n'))));
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // make sure the daemon is killed even if an assertion fails
    struct KillPid(u32);
    impl Drop for KillPid {
        fn drop(&mut self) {
            let _ = umlkit_sys::process::kill(self.0, umlkit_sys::process::SIGKILL);
        }
    }
    let _k = KillPid(pid);
    assert!(umlkit_sys::process::process_exists(pid));
    let a = Client::vde(&dir, 0).unwrap();
    let b = Client::vde(&dir, 0).unwrap();
    a.send(&frame([0xff; 6], mac(1), b"from a daemon"));
    assert_eq!(b.recv_one().unwrap()[14..], *b"from a daemon");
    drop((a, b));
    umlkit_sys::process::kill(pid, umlkit_sys::process::SIGTERM).unwrap();
    assert!(testkit::wait_until(WAIT, || {
        !umlkit_sys::process::process_exists(pid)
    }));
    assert!(!dir.exists());
    assert!(!pidfile.exists());
}

/// One management command on the console socket `path` (ours or the C
/// vde_switch's).
fn mgmt_at(path: &std::path::Path, line: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    read_until_prompt(&mut s);
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    read_until_prompt(&mut s)
}

/// `from` sends a fence marker (untagged or tagged `vlan`); each of `to`
/// returns the frames it got before it (see switch_common's `fence`).
fn plug_fence(from: &mut Plug, vlan: Option<u16>, to: &[&Plug]) -> Vec<Vec<Vec<u8>>> {
    let (id, f) = fence_frame(vlan);
    from.send(&f);
    to.iter().map(|p| p.until_fence(id)).collect()
}

/// Three `vde_plug` clients on the switch at `dir` (console `mgmt`):
/// port 1 access VLAN 0, port 2 access VLAN 10, port 3 trunk (untagged
/// VLAN 0, tagged member of 10). Returns what each plug got per step, and
/// the plugs for more.
fn vlan_scenario(dir: &str, mgmt: &std::path::Path) -> (Vec<Vec<Vec<u8>>>, [Plug; 3]) {
    let mut p1 = Plug::start(&format!("{dir}[1]"));
    let mut p2 = Plug::start(&format!("{dir}[2]"));
    let mut p3 = Plug::start(&format!("{dir}[3]"));
    assert!(
        testkit::wait_until(WAIT, || mgmt_at(mgmt, "port/print")
            .matches(" ACTIVE - ")
            .count()
            == 3),
        "{}",
        mgmt_at(mgmt, "port/print")
    );
    for cmd in ["vlan/create 10", "port/setvlan 2 10", "vlan/addport 10 3"] {
        let r = mgmt_at(mgmt, cmd);
        assert!(r.contains("1000 Success"), "{cmd}: {r}");
    }
    let bc = [0xff; 6];
    let (m1, m2, m3) = (mac(0x11), mac(0x12), mac(0x13));
    let mut got = Vec::new();
    // trunk, tagged 10: to the access port of 10 untagged, not to VLAN 0
    p3.send(&tagged(bc, m3, 10, b"trunk tagged 10"));
    got.extend(plug_fence(&mut p3, Some(10), &[&p2]));
    got.extend(plug_fence(&mut p3, None, &[&p1]));
    // access port of 10: to the trunk tagged, not to VLAN 0
    p2.send(&frame(bc, m2, b"access 10"));
    got.extend(plug_fence(&mut p2, None, &[&p3]));
    got.extend(plug_fence(&mut p3, None, &[&p1]));
    // VLAN 0: to the trunk untagged, not to VLAN 10
    p1.send(&frame(bc, m1, b"access 0"));
    got.extend(plug_fence(&mut p1, None, &[&p3]));
    got.extend(plug_fence(&mut p3, Some(10), &[&p2]));
    // learned unicast within VLAN 10, through the trunk
    p3.send(&tagged(m2, m3, 10, b"trunk to m2"));
    got.extend(plug_fence(&mut p3, Some(10), &[&p2]));
    p2.send(&frame(m3, m2, b"m2 to trunk"));
    got.extend(plug_fence(&mut p2, None, &[&p3]));
    (got, [p1, p2, p3])
}

/// VLANs with real `vde_plug` clients, access and trunk ports, compared
/// with the C vde_switch in the same test; a tagged runt frame from the
/// trunk is dropped and counted, never forwarded still tagged to the
/// access port.
#[test]
fn vlan_access_and_trunk_with_vde_plug_like_c_vde_switch_and_tagged_runt_dropped() {
    testkit::require("vde_plug", "vdeplug4");
    testkit::require("vde_switch", "vde2");
    let sw = Sw::start(&[]);
    let (ours, plugs) = vlan_scenario(&sw.dir.display().to_string(), &sw.mgmt);
    let bc = [0xff; 6];
    let (m2, m3) = (mac(0x12), mac(0x13));
    assert_eq!(
        ours,
        vec![
            vec![frame(bc, m3, b"trunk tagged 10")],
            vec![],
            vec![tagged(bc, m2, 10, b"access 10")],
            vec![],
            vec![frame(bc, mac(0x11), b"access 0")],
            vec![],
            vec![frame(m2, m3, b"trunk to m2")],
            vec![tagged(m3, m2, 10, b"m2 to trunk")],
        ]
    );

    // the same on the C vde_switch
    let tmp = testkit::short_tempdir("swv");
    let cdir = tmp.path().join("csw");
    let cmgmt = tmp.path().join("cmgmt");
    let mut cmd = Command::new("vde_switch");
    cmd.arg("-s")
        .arg(&cdir)
        .arg("-M")
        .arg(&cmgmt)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut csw = ProcGuard::spawn("vde_switch", cmd);
    let _keep_stdin = csw.child_mut().stdin.take();
    assert!(testkit::wait_until(WAIT, || {
        std::os::unix::net::UnixStream::connect(&cmgmt).is_ok()
    }));
    let (theirs, _cplugs) = vlan_scenario(&cdir.display().to_string(), &cmgmt);
    assert_eq!(ours, theirs, "umlkit switch and C vde_switch differ");

    // a tagged runt (type 802.1Q, the TCI, no inner type: 16 bytes) from
    // the trunk: dropped and counted, then a good frame passes
    let [p1, p2, mut p3] = plugs;
    let mut runt = tagged(bc, m3, 10, b"")[..16].to_vec();
    p3.send(&runt);
    runt.push(0x08);
    p3.send(&runt);
    assert_eq!(
        plug_fence(&mut p3, Some(10), &[&p2]),
        vec![Vec::<Vec<u8>>::new()]
    );
    assert_eq!(
        plug_fence(&mut p3, None, &[&p1]),
        vec![Vec::<Vec<u8>>::new()]
    );
    let stats = sw.mgmt("port/stats 3");
    assert!(stats.contains(" in_drops=2"), "{stats}");
    p3.send(&tagged(bc, m3, 10, b"after the runts"));
    assert_eq!(p2.recv(), Some(frame(bc, m3, b"after the runts")));
}

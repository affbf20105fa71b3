//! Issue 8 items 9 and 11 (switch parts): switch directories that belong to
//! someone else, clients naming sockets they cannot reach, a huge port
//! count, many idle control connections, and `hash/print` of a full table.
//! "Another user" is a real local user (created with useradd; needs root,
//! as in CI) running real processes through runuser.

mod switch_common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use net_proto::ctl::{Request, RequestKind, SockAddrUn};
use switch_common::*;
use testkit::ProcGuard;

const OTHER: &str = "umlkit-sw-other";

/// The other user's uid, created once; None (test skipped) unless root.
fn other_user() -> Option<u32> {
    static UID: OnceLock<Option<u32>> = OnceLock::new();
    *UID.get_or_init(|| testkit::other_user(OTHER))
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), None).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

/// Run `umlkit switch -s DIR` (as `user` if given); it must exit (refused)
/// within WAIT. Returns its stderr.
fn switch_refused(dir: &Path, user: Option<&str>) -> String {
    let tmp = testkit::short_tempdir("swr");
    chmod(tmp.path(), 0o755);
    let err = tmp.path().join("err");
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(testkit::umlkit_bin());
            c
        }
        None => Command::new(testkit::umlkit_bin()),
    };
    cmd.arg("switch")
        .arg("-s")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut g = ProcGuard::spawn("umlkit-switch", cmd);
    let mut text = String::new();
    use std::io::Read;
    g.child_mut()
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let st = g
        .wait_timeout(WAIT)
        .unwrap_or_else(|| panic!("the switch accepted {}: {text}", dir.display()));
    assert!(!st.success(), "{text}");
    let _ = std::fs::write(err, &text);
    text
}

/// A world-writable directory pre-created by another user is refused with
/// the directory and its owner named; it is neither chmod'ed nor used.
/// The same the other way round: the other user is refused root's dir.
#[test]
fn foreign_owned_switch_dir_is_refused() {
    let Some(uid) = other_user() else { return };
    let tmp = testkit::short_tempdir("swf");
    chmod(tmp.path(), 0o755);
    let dir = tmp.path().join("sw");
    std::fs::create_dir(&dir).unwrap();
    chown(&dir, uid);
    chmod(&dir, 0o777);
    let err = switch_refused(&dir, None);
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(err.contains(OTHER), "names the owner: {err}");
    assert_eq!(mode(&dir), 0o777, "not chmod'ed");
    assert!(!dir.join("ctl").exists());

    let rootdir = tmp.path().join("rootsw");
    std::fs::create_dir(&rootdir).unwrap();
    chmod(&rootdir, 0o777);
    let err = switch_refused(&rootdir, Some(OTHER));
    assert!(err.contains("belongs to root"), "{err}");
    assert_eq!(mode(&rootdir), 0o777);
    assert!(!rootdir.join("ctl").exists());
}

/// A symlink planted by another user in place of the switch directory is
/// refused; its target keeps its mode and gets no socket.
#[test]
fn symlinked_switch_dir_is_refused_and_target_not_chmoded() {
    let Some(uid) = other_user() else { return };
    let tmp = testkit::short_tempdir("sws");
    chmod(tmp.path(), 0o755);
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    chmod(&target, 0o700);
    let link = tmp.path().join("sw");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    chown(&link, uid);
    let err = switch_refused(&link, None);
    assert!(err.contains("symbolic link"), "{err}");
    assert!(err.contains(&link.display().to_string()), "{err}");
    assert_eq!(mode(&target), 0o700, "target not chmod'ed");
    assert!(!target.join("ctl").exists());
    // a symlink to the user's own dir is refused too (give the real path)
    let own = tmp.path().join("own");
    std::os::unix::fs::symlink(&target, &own).unwrap();
    assert!(switch_refused(&own, None).contains("symbolic link"));
}

/// A VDE client process run as the other user (python3, stdlib only):
/// sends `req` on `ctl`, prints `reply N`; if `own` is given it binds that
/// socket first and, after a reply, prints `frame N` for the first frame.
const CLIENT_PY: &str = r#"
import binascii, os, socket, sys
ctl, req, own = sys.argv[1], sys.argv[2], sys.argv[3]
d = None
if own != "-":
    d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d.bind(own)
    os.chmod(own, 0o600)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(ctl)
s.sendall(binascii.unhexlify(req))
s.settimeout(10)
r = s.recv(200)
print("reply", len(r), flush=True)
if d is not None and r:
    d.settimeout(10)
    print("frame", len(d.recv(4096)), flush=True)
sys.stdin.read()
"#;

fn vde_request_hex(sock: &Path) -> String {
    let req = Request::V3 {
        kind: RequestKind::NewControl,
        port: 0,
        addr: SockAddrUn::from_path(sock).unwrap(),
        descr: "hostile".into(),
    };
    req.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

struct OtherClient {
    guard: ProcGuard,
    out: BufReader<std::process::ChildStdout>,
}

impl OtherClient {
    fn start(ctl: &Path, names: &Path, own: bool) -> OtherClient {
        let py = testkit::require("/usr/bin/python3", "python3");
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", OTHER, "--"])
            .arg(py)
            .arg("-c")
            .arg(CLIENT_PY)
            .arg(ctl)
            .arg(vde_request_hex(names))
            .arg(if own { names.as_os_str() } else { "-".as_ref() })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut guard = ProcGuard::spawn("other-client", cmd);
        let out = BufReader::new(guard.child_mut().stdout.take().unwrap());
        OtherClient { guard, out }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l.trim().to_string()
    }
}

/// A root switch with `-m 0666`: a client running as another user names
/// root's private datagram socket as its own. The request is refused
/// (counted, logged) and no frame reaches that socket; the same client
/// naming a socket of its own gets a port and frames (the control).
#[test]
fn root_switch_mode_0666_sends_nothing_to_a_socket_the_client_cannot_reach() {
    let Some(uid) = other_user() else { return };
    let sw = Sw::start(&["-m", "0666"]);
    chmod(sw.tmp.path(), 0o755);
    let ctl = sw.dir.join("ctl");
    // the world-writable switch dir is sticky: the other user cannot move
    // `ctl` away to put its own socket there
    assert_eq!(mode(&sw.dir), 0o3777);
    let mv = Command::new("runuser")
        .args(["-u", OTHER, "--", "mv"])
        .arg(&ctl)
        .arg(sw.dir.join("stolen"))
        .output()
        .unwrap();
    assert!(!mv.status.success(), "ctl moved by another user");
    assert!(ctl.exists());

    // root's private socket in a 0700 directory
    let private = testkit::short_tempdir("swp");
    chmod(private.path(), 0o700);
    let victim_path = private.path().join("victim.sock");
    let victim = UnixDatagram::bind(&victim_path).unwrap();
    chmod(&victim_path, 0o666);
    victim.set_nonblocking(true).unwrap();

    let a = Client::vde(&sw.dir, 0).unwrap();
    let mut bad = OtherClient::start(&ctl, &victim_path, false);
    assert_eq!(bad.line(), "reply 0", "refused: {}", sw.log());
    assert!(sw.log().contains("may not search"), "{}", sw.log());
    let stats = sw.mgmt("port/stats");
    assert!(stats.contains("refused_sockets=1"), "{stats}");

    // control: the other user's own socket works
    let mine = testkit::short_tempdir("swo");
    chown(mine.path(), uid);
    let own_path = mine.path().join("own.sock");
    let mut good = OtherClient::start(&ctl, &own_path, true);
    assert_eq!(good.line(), "reply 110", "{}", sw.log());
    a.send(&frame([0xff; 6], mac(1), b"broadcast"));
    assert_eq!(good.line(), "frame 23", "{}", sw.log());
    // the flood reached the one real peer; the victim got nothing
    let mut buf = [0u8; 64];
    assert!(
        victim.recv(&mut buf).is_err(),
        "frame delivered to root's socket"
    );
    let _ = bad.guard.child_mut().stdin.take();
    let _ = good.guard.child_mut().stdin.take();
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `port/setnumports 100000000` used to take the switch to 8 GiB and an
/// abort: now a clear error, nothing changes, memory stays small; the
/// largest allowed size allocates nothing either.
#[test]
fn setnumports_100000000_answers_an_error_and_rss_stays_small() {
    let sw = Sw::start(&[]);
    let r = sw.mgmt("port/setnumports 100000000");
    assert!(
        r.contains("100000000 ports is more than the limit of 65536\n.\n1022 Invalid argument"),
        "{r}"
    );
    assert!(sw.mgmt("port/showinfo").contains("Numports=32"));
    assert!(sw.mgmt("port/setnumports 65536").contains("1000 Success"));
    assert!(sw.mgmt("port/showinfo").contains("Numports=65536"));
    let c = Client::vde(&sw.dir, 65535).expect("the top port is usable");
    drop(c);
    let rss = rss_kib(sw.guard.pid());
    assert!(rss < 64 * 1024, "switch RSS {rss} KiB");

    let o = Command::new(testkit::umlkit_bin())
        .args(["switch", "-s", "/nonexistent/x", "-n", "100000000"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("-n 100000000: at most 65536 ports"), "{err}");
}

/// 256 idle control connections used to lock new clients out for 10 s
/// (vde_switch served 1100). Started with a soft open-file limit of 1024,
/// the switch raises it and 1100 idle connections still let a real client
/// connect and pass frames.
#[test]
fn eleven_hundred_idle_control_connections_do_not_lock_out_clients() {
    testkit::require("prlimit", "util-linux");
    // this test process needs the fds too
    let me = std::process::id().to_string();
    let _ = Command::new("prlimit")
        .args(["--pid", &me, "--nofile=4096:"])
        .status();
    let tmp = testkit::short_tempdir("swi");
    let dir = tmp.path().join("sw");
    let mgmt = tmp.path().join("mgmt");
    let log = tmp.path().join("log");
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=1024:")
        .arg(testkit::umlkit_bin())
        .arg("switch")
        .arg("-s")
        .arg(&dir)
        .arg("-M")
        .arg(&mgmt)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let _g = ProcGuard::spawn("umlkit-switch", cmd);
    assert!(testkit::wait_until(WAIT, || UnixStream::connect(&mgmt).is_ok()));
    let mut idle = Vec::new();
    for i in 0..1100 {
        match UnixStream::connect(dir.join("ctl")) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("idle connection {i}: {e}"),
        }
    }
    let t0 = std::time::Instant::now();
    let a = Client::vde(&dir, 0).expect("a real client connects");
    let b = Client::vde(&dir, 0).expect("a second real client connects");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    a.send(&frame(mac(2), mac(1), b"hello"));
    let got = b.recv_one().expect("frame passes");
    assert_eq!(&got[14..19], b"hello");
    let logtext = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!logtext.contains("accept failed"), "{logtext}");
    drop(idle);
}

/// `hash/print` of a full MAC table was cut at ~219 KB without a word: all
/// 65536 entries come through, followed by the status line.
#[test]
fn hash_print_of_a_full_table_is_complete() {
    let sw = Sw::start(&[]);
    let a = Client::vde(&sw.dir, 0).unwrap();
    a.data.set_write_timeout(Some(WAIT)).unwrap();
    let n: u32 = 66_000;
    for i in 0..n {
        let b = i.to_be_bytes();
        a.send(&frame([0xff; 6], [2, 0, b[0], b[1], b[2], b[3]], b"x"));
    }
    let want = format!("in_pkts={n} ");
    assert!(
        testkit::wait_until(WAIT, || sw.mgmt("port/stats").contains(&want)),
        "{}",
        sw.mgmt("port/stats")
    );
    let mut s = UnixStream::connect(&sw.mgmt).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    read_until_prompt(&mut s);
    s.write_all(b"hash/print\n").unwrap();
    let out = read_until_prompt(&mut s);
    let lines = out.lines().filter(|l| l.starts_with("Hash: ")).count();
    assert_eq!(lines, switch_core::MAX_MACS, "{} bytes", out.len());
    assert!(
        out.ends_with(".\n1000 Success\n\nvde$ "),
        "{}",
        &out[out.len() - 200..]
    );
    // the console goes on working
    s.write_all(b"port/showinfo\n").unwrap();
    assert!(read_until_prompt(&mut s).contains("Numports=32"));
}

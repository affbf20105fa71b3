//! Helpers shared by the switch integration tests: start an umlkit switch
//! under a ProcGuard, raw VDE and uml_switch protocol clients, frames.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use net_proto::ctl::{self, Request, RequestKind, SockAddrUn};
use testkit::ProcGuard;

pub const WAIT: Duration = Duration::from_secs(10);

/// A running `umlkit switch` and its temp dir.
pub struct Sw {
    pub guard: ProcGuard,
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub mgmt: PathBuf,
    pub uml: PathBuf,
    pub log: PathBuf,
}

impl Sw {
    /// `umlkit switch -s T/sw -M T/mgmt -u T/uml.ctl <extra>`.
    pub fn start(extra: &[&str]) -> Sw {
        let tmp = testkit::short_tempdir("swt");
        let dir = tmp.path().join("sw");
        let mgmt = tmp.path().join("mgmt");
        let uml = tmp.path().join("uml.ctl");
        let log = tmp.path().join("switch.log");
        let mut cmd = Command::new(testkit::umlkit_bin());
        cmd.arg("switch")
            .arg("-s")
            .arg(&dir)
            .arg("-M")
            .arg(&mgmt)
            .arg("-u")
            .arg(&uml)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let guard = ProcGuard::spawn("umlkit-switch", cmd);
        assert!(
            testkit::wait_until(WAIT, || dir.join("ctl").exists()
                && mgmt.exists()
                && uml.exists()),
            "switch did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // modes are set right after bind: wait until the switch serves
        assert!(
            testkit::wait_until(WAIT, || UnixStream::connect(&mgmt).is_ok()),
            "switch does not answer: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let sw = Sw {
            guard,
            tmp,
            dir,
            mgmt,
            uml,
            log,
        };
        sw.mgmt("");
        sw
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One management command; returns the reply up to and including the prompt.
    pub fn mgmt(&self, line: &str) -> String {
        let mut s = UnixStream::connect(&self.mgmt).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        read_until_prompt(&mut s);
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        read_until_prompt(&mut s)
    }
}

/// `umlkit switch ARGS` run to its end (a start that must fail): its exit
/// status and stderr.
#[allow(dead_code)]
pub fn switch_status(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(testkit::umlkit_bin())
        .arg("switch")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

pub fn read_until_prompt(s: &mut UnixStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(b"\nvde$ ") && !out.ends_with(b"9999 END OF SESSION") {
        let n = s.read(&mut buf).expect("mgmt read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

pub fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&[0x88, 0xb5]);
    v.extend_from_slice(payload);
    v
}

pub fn tagged(dst: [u8; 6], src: [u8; 6], vlan: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&[0x81, 0x00]);
    v.extend_from_slice(&vlan.to_be_bytes());
    v.extend_from_slice(&[0x88, 0xb5]);
    v.extend_from_slice(payload);
    v
}

/// A datagram client (VDE per-port socket or uml_switch shared socket).
pub struct Client {
    pub ctl: UnixStream,
    pub data: UnixDatagram,
    pub reply: Vec<u8>,
    _path: Option<PathBuf>,
}

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Client {
    /// VDE handshake on DIR/ctl; `port` 0 = any.
    pub fn vde(dir: &Path, port: u32) -> std::io::Result<Client> {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mine = dir.join(format!(".t{}-{}", std::process::id(), n));
        let data = UnixDatagram::bind(&mine)?;
        let mut ctl = UnixStream::connect(dir.join("ctl"))?;
        ctl.set_read_timeout(Some(WAIT))?;
        let req = Request::V3 {
            kind: RequestKind::NewControl,
            port,
            addr: SockAddrUn::from_path(&mine).unwrap(),
            descr: format!("test client {n}"),
        };
        ctl.write_all(&req.to_bytes())?;
        let mut reply = vec![0u8; ctl::SOCKADDR_LEN];
        let r = ctl.read(&mut reply);
        let _ = std::fs::remove_file(&mine);
        let got = r?;
        if got != ctl::SOCKADDR_LEN {
            return Err(std::io::Error::other(format!("reply of {got} bytes")));
        }
        let path = SockAddrUn::from_raw(&reply).path().unwrap().to_path_buf();
        data.connect(&path)?;
        data.set_read_timeout(Some(WAIT))?;
        Ok(Client {
            ctl,
            data,
            reply,
            _path: None,
        })
    }

    /// uml_switch v3 handshake (UML's 124-byte request) on `ctl_path`,
    /// which may be a uml_switch socket or DIR/ctl.
    pub fn uml(ctl_path: &Path) -> std::io::Result<Client> {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // a full 108-byte abstract name, like UML's
        let mut name = format!("umlkit-test-{}-{}", std::process::id(), n).into_bytes();
        name.resize(107, 0xa5);
        let me = SocketAddr::from_abstract_name(&name)?;
        let data = UnixDatagram::bind_addr(&me)?;
        let mut ctl = UnixStream::connect(ctl_path)?;
        ctl.set_read_timeout(Some(WAIT))?;
        let addr = SockAddrUn::abstract_name(&name);
        ctl.write_all(&ctl::uml_v3_request(&addr))?;
        let mut reply = vec![0u8; ctl::SOCKADDR_LEN];
        let got = ctl.read(&mut reply)?;
        if got != ctl::SOCKADDR_LEN {
            return Err(std::io::Error::other(format!("reply of {got} bytes")));
        }
        let sa = SockAddrUn::from_raw(&reply);
        let peer = match sa.path() {
            Some(p) => SocketAddr::from_pathname(p)?,
            None => SocketAddr::from_abstract_name(&reply[3..])?,
        };
        data.connect_addr(&peer)?;
        data.set_read_timeout(Some(WAIT))?;
        Ok(Client {
            ctl,
            data,
            reply,
            _path: None,
        })
    }

    pub fn send(&self, f: &[u8]) {
        self.data.send(f).expect("send frame");
    }

    /// The next frame that is not a fence marker (up to WAIT).
    pub fn recv_one(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 2048];
        loop {
            let n = self.data.recv(&mut buf).ok()?;
            if !is_fence(&buf[..n]) {
                return Some(buf[..n].to_vec());
            }
        }
    }

    /// The next `n` frames (fence markers skipped), each waited for up to
    /// WAIT; panics naming what is missing.
    pub fn recv_n(&self, n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                self.recv_one()
                    .unwrap_or_else(|| panic!("frame {} of {n} did not arrive", i + 1))
            })
            .collect()
    }

    /// Frames received before fence marker `id` (other markers skipped).
    fn until_fence(&self, id: u32) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            let n = self
                .data
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("fence {id} did not arrive: {e}"));
            let f = &buf[..n];
            if is_fence(f) {
                if f.ends_with(&id.to_be_bytes()) {
                    return v;
                }
                continue;
            }
            v.push(f.to_vec());
        }
    }
}

/// Source address of fence markers: multicast, so the switch never learns it.
pub const FENCE_SRC: [u8; 6] = [0x03, 0, 0, 0, 0xfe, 0xfe];

pub fn is_fence(f: &[u8]) -> bool {
    f.len() >= 12 && f[6..12] == FENCE_SRC
}

static FENCE_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// A fence frame with a fresh id (broadcast, untagged or tagged `vlan`).
pub fn fence_frame(vlan: Option<u16>) -> (u32, Vec<u8>) {
    let id = FENCE_ID.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut payload = b"fence".to_vec();
    payload.extend_from_slice(&id.to_be_bytes());
    let f = match vlan {
        Some(v) => tagged([0xff; 6], FENCE_SRC, v, &payload),
        None => frame([0xff; 6], FENCE_SRC, &payload),
    };
    (id, f)
}

/// Instead of waiting for silence: `from` broadcasts a marker frame now
/// (untagged or tagged `vlan`) and each of `to` collects the frames it
/// gets before the marker. The switch handles `from`'s frames in order
/// and sends every copy of a frame before reading the next, so a frame
/// sent by `from` before the marker, or observed anywhere before it was
/// sent, has reached `to` by then if it ever will.
pub fn fence(from: &Client, vlan: Option<u16>, to: &[&Client]) -> Vec<Vec<Vec<u8>>> {
    let (id, f) = fence_frame(vlan);
    from.send(&f);
    to.iter().map(|c| c.until_fence(id)).collect()
}

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
        data.set_read_timeout(Some(Duration::from_millis(400)))?;
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
        data.set_read_timeout(Some(Duration::from_millis(400)))?;
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

    /// Frames that arrive within a short quiet period.
    pub fn recv_all(&self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = self.data.recv(&mut buf) {
            v.push(buf[..n].to_vec());
        }
        v
    }

    /// Wait for one frame (up to WAIT).
    pub fn recv_one(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 2048];
        self.data.set_read_timeout(Some(WAIT)).unwrap();
        let r = self.data.recv(&mut buf).ok().map(|n| buf[..n].to_vec());
        self.data
            .set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        r
    }
}

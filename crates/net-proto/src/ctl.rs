//! Control-socket requests of the uml_switch "daemon" protocol (v0, v1, v3)
//! and of VDE (v3 with description and requested port), and the reply.
//!
//! All integers are host byte order (little-endian on x86); structs are
//! packed as the C tools lay them out:
//! ```text
//! v3 (UML daemon, 124 bytes; VDE: 122 + description, no NUL)
//!  0 magic 0xfeedface | 4 version=3 | 8 type | 12 sockaddr_un (110) | 122 pad(2) or description
//!    type: bits 0-7 request (0 NEW_CONTROL, 1 NEW_PORT0), bits 8-31 requested port (VDE)
//! v1 (124 bytes)
//!  0 magic | 4 type=0 | 8 mac(6) | 14 sockaddr_un (110)
//! v0 (120 bytes)
//!  0 type=0 | 4 mac(6) | 10 sockaddr_un (110)
//! reply: sockaddr_un (110 bytes) naming the switch-side data socket
//! ```

use std::fmt;
use std::path::Path;

/// The request magic.
pub const MAGIC: u32 = 0xfeed_face;
/// `sizeof(struct sockaddr_un)`.
pub const SOCKADDR_LEN: usize = 110;
/// Size of a v3 request without description (VDE's packed struct).
pub const V3_LEN: usize = 12 + SOCKADDR_LEN;
/// Size of UML's v3 request (natural alignment adds 2 bytes).
pub const V3_UML_LEN: usize = V3_LEN + 2;
/// Size of a v1 request.
pub const V1_LEN: usize = 8 + 6 + SOCKADDR_LEN;
/// Size of a v0 request.
pub const V0_LEN: usize = 4 + 6 + SOCKADDR_LEN;
/// Longest description kept (VDE limit).
pub const MAX_DESCR: usize = 127;
/// Largest request a switch reads in one go.
pub const MAX_REQUEST: usize = 256;

/// The raw bytes of a `struct sockaddr_un`: family (u16, host order) and
/// 108 bytes of `sun_path`, kept verbatim (UML's abstract names contain
/// uninitialised bytes that must be echoed and compared as they are).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SockAddrUn(pub [u8; SOCKADDR_LEN]);

impl SockAddrUn {
    /// A named (filesystem) address; None if the path is too long (> 107 bytes).
    pub fn from_path(path: &Path) -> Option<SockAddrUn> {
        use std::os::unix::ffi::OsStrExt;
        let p = path.as_os_str().as_bytes();
        if p.is_empty() || p.len() > SOCKADDR_LEN - 3 || p.contains(&0) {
            return None;
        }
        let mut b = [0u8; SOCKADDR_LEN];
        b[..2].copy_from_slice(&1u16.to_ne_bytes());
        b[2..2 + p.len()].copy_from_slice(p);
        Some(SockAddrUn(b))
    }

    /// An abstract address built like UML's and uml_switch's:
    /// `{char 0; int pid; int usecs}` (padding zeroed), rest zero.
    pub fn uml_abstract(pid: u32, usecs: u32) -> SockAddrUn {
        let mut b = [0u8; SOCKADDR_LEN];
        b[..2].copy_from_slice(&1u16.to_ne_bytes());
        b[6..10].copy_from_slice(&pid.to_ne_bytes());
        b[10..14].copy_from_slice(&usecs.to_ne_bytes());
        SockAddrUn(b)
    }

    /// An abstract address whose name is `name` (after the leading NUL),
    /// zero padded to the full 108 bytes.
    pub fn abstract_name(name: &[u8]) -> SockAddrUn {
        let mut b = [0u8; SOCKADDR_LEN];
        b[..2].copy_from_slice(&1u16.to_ne_bytes());
        let n = name.len().min(SOCKADDR_LEN - 3);
        b[3..3 + n].copy_from_slice(&name[..n]);
        SockAddrUn(b)
    }

    /// From up to 110 raw bytes (missing bytes are zero).
    pub fn from_raw(raw: &[u8]) -> SockAddrUn {
        let mut b = [0u8; SOCKADDR_LEN];
        let n = raw.len().min(SOCKADDR_LEN);
        b[..n].copy_from_slice(&raw[..n]);
        SockAddrUn(b)
    }

    /// The address family field.
    pub fn family(&self) -> u16 {
        u16::from_ne_bytes([self.0[0], self.0[1]])
    }

    /// `sun_path[0] == 0`: an abstract name.
    pub fn is_abstract(&self) -> bool {
        self.0[2] == 0
    }

    /// The filesystem path of a named address (up to the first NUL).
    pub fn path(&self) -> Option<&Path> {
        use std::os::unix::ffi::OsStrExt;
        if self.is_abstract() {
            return None;
        }
        let sp = &self.0[2..];
        let end = sp.iter().position(|&c| c == 0).unwrap_or(sp.len());
        Some(Path::new(std::ffi::OsStr::from_bytes(&sp[..end])))
    }

    /// The bytes to hand to bind/connect/sendto: all 110 for abstract names
    /// (every byte is part of the name), family + path + NUL for paths.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SockAddrUn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path() {
            Some(p) => write!(f, "SockAddrUn({})", p.display()),
            None => write!(f, "SockAddrUn(@{:02x?}..)", &self.0[2..14]),
        }
    }
}

/// What a v3 request asks for (low 8 bits of `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// REQ_NEW_CONTROL: a new port (any, or the one in bits 8-31).
    NewControl,
    /// REQ_NEW_PORT0: port 0 (VDE management port).
    NewPort0,
}

/// A parsed control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// uml_switch protocol 0 (no magic). uml_switch sends no reply.
    V0 { mac: [u8; 6], addr: SockAddrUn },
    /// Protocol 1 (magic, type, mac, address, optional description).
    V1 {
        mac: [u8; 6],
        addr: SockAddrUn,
        descr: String,
    },
    /// Protocol 3 (UML daemon transport and VDE).
    V3 {
        kind: RequestKind,
        /// Requested port (bits 8-31 of type); 0 = any.
        port: u32,
        addr: SockAddrUn,
        descr: String,
    },
}

impl Request {
    /// The client's data socket address.
    pub fn addr(&self) -> &SockAddrUn {
        match self {
            Request::V0 { addr, .. } | Request::V1 { addr, .. } | Request::V3 { addr, .. } => addr,
        }
    }

    /// The client's description ("" when none).
    pub fn descr(&self) -> &str {
        match self {
            Request::V0 { .. } => "",
            Request::V1 { descr, .. } | Request::V3 { descr, .. } => descr,
        }
    }

    /// Serialize (for clients and tests). V3 is written VDE-style: 122
    /// bytes + description; use [`uml_v3_request`] for UML's 124 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(MAX_REQUEST);
        match self {
            Request::V0 { mac, addr } => {
                v.extend_from_slice(&0u32.to_ne_bytes());
                v.extend_from_slice(mac);
                v.extend_from_slice(&addr.0);
            }
            Request::V1 { mac, addr, descr } => {
                v.extend_from_slice(&MAGIC.to_ne_bytes());
                v.extend_from_slice(&0u32.to_ne_bytes());
                v.extend_from_slice(mac);
                v.extend_from_slice(&addr.0);
                v.extend_from_slice(descr.as_bytes());
            }
            Request::V3 {
                kind,
                port,
                addr,
                descr,
            } => {
                v.extend_from_slice(&MAGIC.to_ne_bytes());
                v.extend_from_slice(&3u32.to_ne_bytes());
                let k = match kind {
                    RequestKind::NewControl => 0u32,
                    RequestKind::NewPort0 => 1,
                };
                v.extend_from_slice(&(k | (port << 8)).to_ne_bytes());
                v.extend_from_slice(&addr.0);
                let d = descr.as_bytes();
                v.extend_from_slice(&d[..d.len().min(MAX_DESCR)]);
            }
        }
        v
    }
}

/// UML's v3 request: 124 bytes (2 bytes struct padding, zero here).
pub fn uml_v3_request(addr: &SockAddrUn) -> Vec<u8> {
    let mut v = Request::V3 {
        kind: RequestKind::NewControl,
        port: 0,
        addr: *addr,
        descr: String::new(),
    }
    .to_bytes();
    v.extend_from_slice(&[0, 0]);
    v
}

/// Why a control request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtlError {
    /// Fewer bytes than the layout needs.
    #[error("truncated request: {got} bytes, protocol {version} needs {need}")]
    Truncated { got: usize, need: usize, version: u32 },
    /// uml_switch's wording.
    #[error("Version 2 is not supported")]
    Version2,
    #[error("Request for a version {0} port, which this switch doesn't support")]
    UnsupportedVersion(u32),
    #[error("Bad request type : {0}")]
    BadType(u32),
    /// VDE rejects requests without magic.
    #[error("V0 request not supported")]
    NoMagic,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn descr_from(b: &[u8]) -> String {
    let b = &b[..b.len().min(MAX_DESCR)];
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Which protocols a control socket accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// uml_switch: v0, v1, v3 (no magic = v0).
    UmlSwitch,
    /// vde_switch: v1 and v3 (no magic = refused).
    Vde,
}

/// Parse one request as read in one `read()`.
pub fn parse_request(buf: &[u8], dialect: Dialect) -> Result<Request, CtlError> {
    let trunc = |need, version| CtlError::Truncated {
        got: buf.len(),
        need,
        version,
    };
    if buf.len() < 4 {
        return Err(trunc(V0_LEN, 0));
    }
    let magic = u32_at(buf, 0);
    if magic != MAGIC {
        if dialect == Dialect::Vde {
            return Err(CtlError::NoMagic);
        }
        if buf.len() < V0_LEN {
            return Err(trunc(V0_LEN, 0));
        }
        if magic != 0 {
            return Err(CtlError::BadType(magic));
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&buf[4..10]);
        return Ok(Request::V0 {
            mac,
            addr: SockAddrUn::from_raw(&buf[10..V0_LEN]),
        });
    }
    if buf.len() < 8 {
        return Err(trunc(V3_LEN, 3));
    }
    let version = u32_at(buf, 4);
    match version {
        3 => {
            if buf.len() < V3_LEN {
                return Err(trunc(V3_LEN, 3));
            }
            let ty = u32_at(buf, 8);
            let kind = match ty & 0xff {
                0 => RequestKind::NewControl,
                1 => RequestKind::NewPort0,
                _ => return Err(CtlError::BadType(ty)),
            };
            Ok(Request::V3 {
                kind,
                port: ty >> 8,
                addr: SockAddrUn::from_raw(&buf[12..V3_LEN]),
                descr: descr_from(&buf[V3_LEN..]),
            })
        }
        2 => Err(CtlError::Version2),
        v if v > 3 => Err(CtlError::UnsupportedVersion(v)),
        ty => {
            // v1 layout: the word at offset 4 is the request type.
            if buf.len() < V1_LEN {
                return Err(trunc(V1_LEN, 1));
            }
            if ty != 0 {
                return Err(CtlError::BadType(ty));
            }
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&buf[8..14]);
            Ok(Request::V1 {
                mac,
                addr: SockAddrUn::from_raw(&buf[14..V1_LEN]),
                descr: descr_from(&buf[V1_LEN..]),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn verified_vde_request() {
        // vde.md §2: vde_plug's request, 150 bytes.
        let addr = SockAddrUn::from_path(Path::new("/tmp/vde/sw1/.12534-00000")).unwrap();
        let descr = "vdeplug: user=root pid=12534";
        let req = Request::V3 {
            kind: RequestKind::NewControl,
            port: 0,
            addr,
            descr: descr.into(),
        };
        let b = req.to_bytes();
        assert_eq!(b.len(), 150);
        assert_eq!(&b[..14], b"\xce\xfa\xed\xfe\x03\x00\x00\x00\x00\x00\x00\x00\x01\x00");
        assert_eq!(parse_request(&b, Dialect::Vde).unwrap(), req);
        // [9] -> type bytes 00 09 00 00
        let req9 = Request::V3 {
            kind: RequestKind::NewControl,
            port: 9,
            addr,
            descr: String::new(),
        };
        assert_eq!(&req9.to_bytes()[8..12], &[0, 9, 0, 0]);
    }

    #[test]
    fn verified_uml_request() {
        // uml-switch-daemon.md §2: garbage inside sun_path is kept verbatim.
        let mut raw = [0u8; SOCKADDR_LEN];
        raw[0] = 1;
        raw[6..10].copy_from_slice(&0x3bd4u32.to_le_bytes());
        raw[10..14].copy_from_slice(&[0xe7, 0x48, 0x08, 0x00]);
        raw[50] = 0xdc;
        raw[51] = 0xcd;
        raw[52] = 0x6e;
        let addr = SockAddrUn(raw);
        let b = uml_v3_request(&addr);
        assert_eq!(b.len(), 124);
        for d in [Dialect::UmlSwitch, Dialect::Vde] {
            match parse_request(&b, d).unwrap() {
                Request::V3 {
                    kind, port, addr: a, descr,
                } => {
                    assert_eq!(kind, RequestKind::NewControl);
                    assert_eq!(port, 0);
                    assert_eq!(a, addr);
                    assert!(a.is_abstract());
                    assert_eq!(descr, "");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn versions_and_errors() {
        let mut b = uml_v3_request(&SockAddrUn::abstract_name(b"x"));
        b[4] = 2;
        assert_eq!(parse_request(&b, Dialect::UmlSwitch), Err(CtlError::Version2));
        b[4] = 7;
        assert_eq!(parse_request(&b, Dialect::UmlSwitch), Err(CtlError::UnsupportedVersion(7)));
        b[4] = 3;
        b[8] = 5;
        assert_eq!(parse_request(&b, Dialect::UmlSwitch), Err(CtlError::BadType(5)));
        b[8] = 1;
        assert!(matches!(
            parse_request(&b, Dialect::Vde),
            Ok(Request::V3 { kind: RequestKind::NewPort0, .. })
        ));
        assert!(matches!(
            parse_request(&b[..100], Dialect::Vde),
            Err(CtlError::Truncated { got: 100, .. })
        ));
        assert!(matches!(parse_request(&[], Dialect::Vde), Err(CtlError::Truncated { .. })));
        let v0 = Request::V0 {
            mac: [2, 0, 0, 0, 0, 1],
            addr: SockAddrUn::abstract_name(b"v0"),
        };
        let vb = v0.to_bytes();
        assert_eq!(vb.len(), V0_LEN);
        assert_eq!(parse_request(&vb, Dialect::UmlSwitch).unwrap(), v0);
        assert_eq!(parse_request(&vb, Dialect::Vde), Err(CtlError::NoMagic));
        let v1 = Request::V1 {
            mac: [2, 0, 0, 0, 0, 1],
            addr: SockAddrUn::abstract_name(b"v1"),
            descr: String::new(),
        };
        let vb = v1.to_bytes();
        assert_eq!(vb.len(), V1_LEN);
        assert_eq!(parse_request(&vb, Dialect::UmlSwitch).unwrap(), v1);
    }

    #[test]
    fn addr_helpers() {
        let a = SockAddrUn::from_path(Path::new("/tmp/sw/001.6")).unwrap();
        assert_eq!(a.family(), 1);
        assert_eq!(a.path().unwrap(), Path::new("/tmp/sw/001.6"));
        assert!(SockAddrUn::from_path(Path::new(&"x".repeat(108))).is_none());
        let u = SockAddrUn::uml_abstract(0x3bcc, 0x0e1efd);
        // verified reply bytes: 01 00 | 00 ?? 00 00 | cc 3b 00 00 | fd 1e 0e 00
        assert_eq!(&u.0[..3], &[1, 0, 0]);
        assert_eq!(&u.0[6..14], &[0xcc, 0x3b, 0, 0, 0xfd, 0x1e, 0x0e, 0]);
        assert!(u.path().is_none());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_request(&bytes, Dialect::UmlSwitch);
            let _ = parse_request(&bytes, Dialect::Vde);
        }

        #[test]
        fn v3_roundtrip(port in 0u32..0xff_ffff, p0 in any::<bool>(), name in proptest::collection::vec(1u8..255, 1..100), descr in "[ -~]{0,127}") {
            let req = Request::V3 {
                kind: if p0 { RequestKind::NewPort0 } else { RequestKind::NewControl },
                port,
                addr: SockAddrUn::abstract_name(&name),
                descr,
            };
            prop_assert_eq!(parse_request(&req.to_bytes(), Dialect::Vde).unwrap(), req);
        }
    }
}

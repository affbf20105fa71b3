//! The mconsole datagram formats (pure: bytes in, typed values out, and back).
//!
//! All integers are u32 in host byte order (the kernel's and the client's
//! machine are the same), i.e. little-endian on x86-64.
//!
//! ```text
//! request (524 bytes, client -> UML)     reply (12 + len bytes, UML -> client)
//! +0  magic   0xcafebabe                 +0  err   0 = OK, else 1 or -errno
//! +4  version 2                          +4  more  1 = more datagrams follow
//! +8  len     command length (< 512)     +8  len   strlen(chunk) + 1
//! +12 data[512] command text             +12 data  chunk text + NUL
//!
//! notify (16 + len bytes, UML -> notify socket)
//! +0 magic  +4 version  +8 type (0 socket, 1 panic, 2 hang, 3 user)  +12 len  +16 data
//! ```

/// `MCONSOLE_MAGIC`.
pub const MAGIC: u32 = 0xcafe_babe;
/// The only protocol version the 6.1 kernel serves.
pub const VERSION: u32 = 2;
/// Size of the data area of a request.
pub const MAX_DATA: usize = 512;
/// Size of a full request datagram.
pub const REQUEST_SIZE: usize = 12 + MAX_DATA;

/// Errors decoding a datagram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Fewer bytes than the fixed header.
    #[error("datagram too short: {len} bytes, need at least {need}")]
    Short { len: usize, need: usize },
    /// The length field points past the datagram.
    #[error("length field {field} exceeds the {avail} data bytes of the datagram")]
    BadLength { field: u32, avail: usize },
    /// Wrong magic number.
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    /// The command does not fit a request (511 bytes at most).
    #[error("command of {0} bytes is too long (at most 511)")]
    TooLong(usize),
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// A request: one command line for the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub version: u32,
    pub command: Vec<u8>,
}

impl Request {
    /// A version-2 request; fails when the command exceeds 511 bytes.
    pub fn new(command: &[u8]) -> Result<Request, ProtoError> {
        if command.len() >= MAX_DATA {
            return Err(ProtoError::TooLong(command.len()));
        }
        Ok(Request {
            version: VERSION,
            command: command.to_vec(),
        })
    }

    /// The full 524-byte datagram, as uml_mconsole sends it.
    pub fn encode(&self) -> [u8; REQUEST_SIZE] {
        let mut b = [0u8; REQUEST_SIZE];
        b[0..4].copy_from_slice(&MAGIC.to_ne_bytes());
        b[4..8].copy_from_slice(&self.version.to_ne_bytes());
        let n = self.command.len().min(MAX_DATA - 1);
        b[8..12].copy_from_slice(&(n as u32).to_ne_bytes());
        b[12..12 + n].copy_from_slice(&self.command[..n]);
        b
    }

    /// Decode a request datagram (full or shortened); the `len` field decides.
    pub fn decode(b: &[u8]) -> Result<Request, ProtoError> {
        if b.len() < 12 {
            return Err(ProtoError::Short {
                len: b.len(),
                need: 12,
            });
        }
        let magic = u32_at(b, 0);
        if magic != MAGIC {
            return Err(ProtoError::BadMagic(magic));
        }
        let len = u32_at(b, 8);
        let avail = b.len() - 12;
        if len as usize > avail || len as usize >= MAX_DATA {
            return Err(ProtoError::BadLength { field: len, avail });
        }
        Ok(Request {
            version: u32_at(b, 4),
            command: b[12..12 + len as usize].to_vec(),
        })
    }
}

/// One reply datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 0 = OK; otherwise 1 or a negative errno as u32.
    pub err: u32,
    /// True when further datagrams follow.
    pub more: bool,
    /// The chunk text without its NUL.
    pub data: Vec<u8>,
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(13 + self.data.len());
        b.extend_from_slice(&self.err.to_ne_bytes());
        b.extend_from_slice(&u32::from(self.more).to_ne_bytes());
        b.extend_from_slice(&(self.data.len() as u32 + 1).to_ne_bytes());
        b.extend_from_slice(&self.data);
        b.push(0);
        b
    }

    /// Decode a reply datagram. The text ends at the first NUL within `len`.
    pub fn decode(b: &[u8]) -> Result<Reply, ProtoError> {
        if b.len() < 12 {
            return Err(ProtoError::Short {
                len: b.len(),
                need: 12,
            });
        }
        let len = u32_at(b, 8);
        let avail = b.len() - 12;
        if len as usize > avail {
            return Err(ProtoError::BadLength { field: len, avail });
        }
        let body = &b[12..12 + len as usize];
        let end = body.iter().position(|&c| c == 0).unwrap_or(body.len());
        Ok(Reply {
            err: u32_at(b, 0),
            more: u32_at(b, 4) != 0,
            data: body[..end].to_vec(),
        })
    }
}

/// The kernel's answer to a client that does not speak version 2 framing: a bare
/// text datagram. Recognised so that the client can report it.
pub fn is_version0_reply(b: &[u8]) -> bool {
    b.starts_with(b"ERR Version 0")
}

/// Kind of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyKind {
    /// The mconsole socket is bound (data: its path).
    Socket,
    /// The kernel panicked (data: the message).
    Panic,
    /// Hang (never sent by 6.1).
    Hang,
    /// The guest wrote to /proc/mconsole.
    User,
    /// An unknown type number.
    Other(u32),
}

impl NotifyKind {
    fn from_u32(v: u32) -> NotifyKind {
        match v {
            0 => NotifyKind::Socket,
            1 => NotifyKind::Panic,
            2 => NotifyKind::Hang,
            3 => NotifyKind::User,
            n => NotifyKind::Other(n),
        }
    }
    fn to_u32(self) -> u32 {
        match self {
            NotifyKind::Socket => 0,
            NotifyKind::Panic => 1,
            NotifyKind::Hang => 2,
            NotifyKind::User => 3,
            NotifyKind::Other(n) => n,
        }
    }
}

/// A datagram on the `mconsole=notify:<path>` socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub kind: NotifyKind,
    /// Payload as sent (socket and panic payloads carry a trailing NUL).
    pub data: Vec<u8>,
}

impl Notify {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16 + self.data.len());
        b.extend_from_slice(&MAGIC.to_ne_bytes());
        b.extend_from_slice(&VERSION.to_ne_bytes());
        b.extend_from_slice(&self.kind.to_u32().to_ne_bytes());
        b.extend_from_slice(&(self.data.len() as u32).to_ne_bytes());
        b.extend_from_slice(&self.data);
        b
    }

    pub fn decode(b: &[u8]) -> Result<Notify, ProtoError> {
        if b.len() < 16 {
            return Err(ProtoError::Short {
                len: b.len(),
                need: 16,
            });
        }
        let magic = u32_at(b, 0);
        if magic != MAGIC {
            return Err(ProtoError::BadMagic(magic));
        }
        let len = u32_at(b, 12);
        let avail = b.len() - 16;
        if len as usize > avail {
            return Err(ProtoError::BadLength { field: len, avail });
        }
        Ok(Notify {
            kind: NotifyKind::from_u32(u32_at(b, 8)),
            data: b[16..16 + len as usize].to_vec(),
        })
    }

    /// The payload as text without a trailing NUL.
    pub fn text(&self) -> String {
        let d = self.data.strip_suffix(&[0]).unwrap_or(&self.data);
        String::from_utf8_lossy(d).into_owned()
    }
}

/// Several reply datagrams joined, as a client presents them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// err of the last datagram (what uml_mconsole prints and exits with).
    pub err: u32,
    /// Concatenated chunk texts.
    pub text: String,
}

impl Response {
    pub fn ok(&self) -> bool {
        self.err == 0
    }

    /// The line uml_mconsole prints: `OK text` / `ERR text`.
    pub fn line(&self) -> String {
        format!("{} {}", if self.ok() { "OK" } else { "ERR" }, self.text)
    }

    /// uml_mconsole's exit status for this reply (the err as int, low byte).
    pub fn exit_code(&self) -> u8 {
        (self.err & 0xff) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_layout() {
        let r = Request::new(b"version").unwrap();
        let b = r.encode();
        assert_eq!(b.len(), 524);
        assert_eq!(&b[0..4], &[0xbe, 0xba, 0xfe, 0xca]);
        assert_eq!(&b[4..8], &2u32.to_ne_bytes());
        assert_eq!(&b[8..12], &7u32.to_ne_bytes());
        assert_eq!(&b[12..19], b"version");
        assert_eq!(Request::decode(&b).unwrap(), r);
        // a shortened datagram decodes the same
        assert_eq!(Request::decode(&b[..12 + 8]).unwrap(), r);
    }

    #[test]
    fn request_too_long_rejected() {
        assert_eq!(Request::new(&[b'a'; 512]), Err(ProtoError::TooLong(512)));
        assert!(Request::new(&[b'a'; 511]).is_ok());
        let mut b = Request::new(b"x").unwrap().encode();
        b[0] = 0;
        assert!(matches!(Request::decode(&b), Err(ProtoError::BadMagic(_))));
    }

    #[test]
    fn reply_round_trip_matches_kernel_bytes() {
        // `go` when not stopped: (1, 0, 12, 24) "Not stopped\0"
        let r = Reply {
            err: 1,
            more: false,
            data: b"Not stopped".to_vec(),
        };
        let b = r.encode();
        assert_eq!(b.len(), 24);
        assert_eq!(&b[8..12], &12u32.to_ne_bytes());
        assert_eq!(Reply::decode(&b).unwrap(), r);
        let empty = Reply {
            err: 0,
            more: false,
            data: vec![],
        };
        assert_eq!(empty.encode().len(), 13);
        assert_eq!(Reply::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn reply_bad_length() {
        let mut b = Reply {
            err: 0,
            more: true,
            data: b"abc".to_vec(),
        }
        .encode();
        b[8] = 99;
        assert!(matches!(
            Reply::decode(&b),
            Err(ProtoError::BadLength { .. })
        ));
        assert!(matches!(
            Reply::decode(&b[..5]),
            Err(ProtoError::Short { .. })
        ));
    }

    #[test]
    fn notify_round_trip() {
        let n = Notify {
            kind: NotifyKind::Socket,
            data: b"/root/.uml/t2/mconsole\0".to_vec(),
        };
        let b = n.encode();
        assert_eq!(b.len(), 39);
        let d = Notify::decode(&b).unwrap();
        assert_eq!(d, n);
        assert_eq!(d.text(), "/root/.uml/t2/mconsole");
        let u = Notify {
            kind: NotifyKind::Other(9),
            data: vec![1, 2],
        };
        assert_eq!(Notify::decode(&u.encode()).unwrap(), u);
    }

    #[test]
    fn response_line_and_exit_code() {
        let r = Response {
            err: 0xFFFF_FFF0,
            text: "Device is currently open".into(),
        };
        assert_eq!(r.line(), "ERR Device is currently open");
        assert_eq!(r.exit_code(), 240);
        let ok = Response {
            err: 0,
            text: String::new(),
        };
        assert_eq!(ok.line(), "OK ");
        assert_eq!(ok.exit_code(), 0);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn datagram() -> impl Strategy<Value = Vec<u8>> {
            // random bytes, half of them starting with the real magic
            (
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..600),
            )
                .prop_map(|(m, mut b)| {
                    if m && b.len() >= 4 {
                        b[..4].copy_from_slice(&MAGIC.to_ne_bytes());
                    }
                    b
                })
        }

        proptest! {
            /// Same property as the `datagrams` fuzz target (crates/mconsole/fuzz):
            /// never panic, and what decodes re-encodes to the same value.
            #[test]
            fn any_datagram_decodes_or_errs_and_round_trips(b in datagram()) {
                if let Ok(r) = Request::decode(&b) {
                    prop_assert_eq!(Request::decode(&r.encode()).unwrap(), r);
                }
                if let Ok(r) = Reply::decode(&b) {
                    prop_assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
                }
                if let Ok(n) = Notify::decode(&b) {
                    prop_assert_eq!(Notify::decode(&n.encode()).unwrap(), n);
                }
            }
        }
    }
}

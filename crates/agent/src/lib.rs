//! The exec-agent wire protocol (pure: bytes in, frames out, and back), shared
//! by the agent inside the guest (`src/main.rs`, built as a static binary)
//! and the supervisor/clients on the host (`guest` crate).
//!
//! The agent talks over a dedicated serial line (`ssl1`, guest `/dev/ttyS1`
//! in raw mode); on the host the guest's supervisor owns the other end and
//! exposes `<statedir>/<name>/exec.sock` to clients, which speak the same
//! framing. Each frame:
//!
//! ```text
//! +0 u8   magic 0xA5
//! +1 u8   kind (see [`Kind`])
//! +2 u32  id   little-endian; the request id an exec and its output share
//! +6 u32  len  little-endian payload length (<= MAX_PAYLOAD)
//! +10     payload
//! ```
//!
//! Binary output is carried as is (length-prefixed), and ids multiplex any
//! number of concurrent execs on one line. Exec payload: `u8 flags` (bit 0 =
//! tty), `u32 argc`, then `argc` × (`u32 len`, bytes), `u32 envc`, then
//! `envc` × (`u32 len`, `KEY=VALUE` bytes). Exit payload: `i32` code
//! (128 + signal when the process was killed by a signal).
//!
//! Flow control host -> agent: the agent acknowledges every read from the line
//! with an `Ack` frame; the host keeps at most [`WINDOW`] bytes unacknowledged.

/// First byte of every frame.
pub const MAGIC: u8 = 0xA5;
/// Largest payload of one frame; output is split into frames of at most this.
pub const MAX_PAYLOAD: usize = 1 << 16;
/// Header size.
pub const HEADER: usize = 10;

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// agent -> host, id 0: the agent is up; payload = version text.
    Hello = 1,
    /// host -> agent: start a process (payload: [`ExecRequest`]).
    Exec = 2,
    /// host -> agent: bytes for the process's stdin.
    Stdin = 3,
    /// host -> agent: close the process's stdin.
    Eof = 4,
    /// agent -> host: bytes the process wrote to stdout (the pty in tty mode).
    Stdout = 5,
    /// agent -> host: bytes the process wrote to stderr.
    Stderr = 6,
    /// agent -> host: the process ended (payload i32 code); last frame of an id.
    Exit = 7,
    /// agent -> host: the exec failed (payload: message); last frame of an id.
    Error = 8,
    /// host -> agent: send a signal (payload i32) to the process.
    Signal = 9,
    /// agent -> host, id 0: this many bytes (payload u32) were read from the
    /// line. The host keeps at most [`WINDOW`] unacknowledged bytes in
    /// flight, so the guest tty's receive buffer never fills: the 6.1 kernel's
    /// serial line can stop reading its host fd for good once throttled.
    Ack = 10,
    /// host -> agent: the terminal of a tty exec changed size (payload u16
    /// rows, u16 columns, little-endian); the agent sets the pty's window
    /// size (the kernel sends SIGWINCH). Agents older than this kind skip
    /// it as an unknown frame.
    Resize = 11,
}

/// Most host -> agent bytes in flight before an [`Kind::Ack`] (well below
/// the 4 KiB receive buffer of a tty in raw mode).
pub const WINDOW: usize = 2048;

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Hello,
            2 => Kind::Exec,
            3 => Kind::Stdin,
            4 => Kind::Eof,
            5 => Kind::Stdout,
            6 => Kind::Stderr,
            7 => Kind::Exit,
            8 => Kind::Error,
            9 => Kind::Signal,
            10 => Kind::Ack,
            11 => Kind::Resize,
            _ => return None,
        })
    }
}

/// Protocol errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("bad frame magic {0:#04x} (stream out of sync)")]
    BadMagic(u8),
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    #[error("frame payload of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("malformed {0} payload")]
    Malformed(&'static str),
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub id: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(kind: Kind, id: u32, payload: Vec<u8>) -> Frame {
        Frame { kind, id, payload }
    }

    /// An acknowledgement of `n` bytes read by the agent.
    pub fn ack(n: u32) -> Frame {
        Frame::new(Kind::Ack, 0, n.to_le_bytes().to_vec())
    }

    /// An exit frame.
    pub fn exit(id: u32, code: i32) -> Frame {
        Frame::new(Kind::Exit, id, code.to_le_bytes().to_vec())
    }

    /// A window size frame for exec `id`.
    pub fn resize(id: u32, rows: u16, cols: u16) -> Frame {
        let mut p = rows.to_le_bytes().to_vec();
        p.extend_from_slice(&cols.to_le_bytes());
        Frame::new(Kind::Resize, id, p)
    }

    /// The (rows, columns) of a resize frame.
    pub fn size(&self) -> Result<(u16, u16), ProtoError> {
        match self.payload.as_slice() {
            [a, b, c, d] => Ok((u16::from_le_bytes([*a, *b]), u16::from_le_bytes([*c, *d]))),
            _ => Err(ProtoError::Malformed("resize")),
        }
    }

    /// The code of an exit or signal frame.
    pub fn code(&self) -> Result<i32, ProtoError> {
        let b: [u8; 4] = self
            .payload
            .as_slice()
            .try_into()
            .map_err(|_| ProtoError::Malformed("exit/signal"))?;
        Ok(i32::from_le_bytes(b))
    }

    /// Append the encoded frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(MAGIC);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.payload);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER + self.payload.len());
        self.encode_into(&mut v);
        v
    }
}

/// Incremental decoder: push bytes as they arrive, pull whole frames.
///
/// # Resynchronisation
///
/// The line carries whatever the guest writes to it, so the decoder must
/// survive garbage (root in the guest can write to the agent's tty, and a
/// shell's echo may precede raw mode). Every call to [`Decoder::next_frame`]
/// either returns a frame, asks for more bytes, or returns an error after
/// consuming input, so a caller that loops on errors always makes progress:
///
/// - bytes before a [`MAGIC`] byte are skipped in one step (one
///   [`ProtoError::BadMagic`] for the whole run of garbage);
/// - a header with an unknown kind or an oversize length is not trusted at
///   all: only its magic byte is dropped ([`ProtoError::BadKind`],
///   [`ProtoError::TooLarge`]) and decoding resumes at the next magic byte,
///   so a real frame that follows the garbage (even inside the bad header's
///   10 bytes) is still found.
///
/// A well-formed header inside garbage can still swallow up to
/// [`MAX_PAYLOAD`] bytes of real frames; the protocol cannot tell that apart
/// from a real frame, and the ids it carries are then simply unknown.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
}

/// Largest number of buffered bytes: one whole frame plus one read.
const MAX_BUFFERED: usize = HEADER + MAX_PAYLOAD + (1 << 16);

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0
            && (self.pos == self.buf.len() || self.buf.len() + data.len() > MAX_BUFFERED)
        {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes pushed but not yet consumed.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed. An
    /// error always consumes at least one byte (see the type's docs).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        let b = &self.buf[self.pos..];
        let Some(&first) = b.first() else {
            return Ok(None);
        };
        if first != MAGIC {
            // drop everything up to the next plausible frame start
            let skip = b.iter().position(|&c| c == MAGIC).unwrap_or(b.len());
            self.pos += skip;
            return Err(ProtoError::BadMagic(first));
        }
        if b.len() < HEADER {
            return Ok(None);
        }
        let Some(kind) = Kind::from_u8(b[1]) else {
            self.pos += 1;
            return Err(ProtoError::BadKind(b[1]));
        };
        let id = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let len = u32::from_le_bytes([b[6], b[7], b[8], b[9]]) as usize;
        if len > MAX_PAYLOAD {
            self.pos += 1;
            return Err(ProtoError::TooLarge(len));
        }
        if b.len() < HEADER + len {
            return Ok(None);
        }
        let payload = b[HEADER..HEADER + len].to_vec();
        self.pos += HEADER + len;
        Ok(Some(Frame { kind, id, payload }))
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries added to the agent's default environment.
    pub env: Vec<Vec<u8>>,
    /// Run on a fresh pty (stdout and stderr merged, job control works).
    pub tty: bool,
}

fn put_list(out: &mut Vec<u8>, items: &[Vec<u8>]) {
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for i in items {
        out.extend_from_slice(&(i.len() as u32).to_le_bytes());
        out.extend_from_slice(i);
    }
}

fn get_u32(b: &[u8], pos: &mut usize) -> Result<u32, ProtoError> {
    let s = b.get(*pos..*pos + 4).ok_or(ProtoError::Malformed("exec"))?;
    *pos += 4;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn get_list(b: &[u8], pos: &mut usize) -> Result<Vec<Vec<u8>>, ProtoError> {
    let n = get_u32(b, pos)? as usize;
    if n > b.len() {
        return Err(ProtoError::Malformed("exec"));
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let l = get_u32(b, pos)? as usize;
        let s = b.get(*pos..*pos + l).ok_or(ProtoError::Malformed("exec"))?;
        *pos += l;
        v.push(s.to_vec());
    }
    Ok(v)
}

/// The environment entry (`UMLKIT_WINSIZE=ROWSxCOLS`) that gives a tty
/// exec its window size from the start: the agent takes it out of the
/// environment and sizes the pty before the process starts (a [`Kind::Resize`]
/// frame can only follow the exec, and may come after the process already
/// read its size). Agents that do not know it pass it on as a plain
/// variable.
pub const WINSIZE_ENV: &str = "UMLKIT_WINSIZE";

impl ExecRequest {
    /// Ask for a pty of `rows` x `cols` from the start (see [`WINSIZE_ENV`]).
    pub fn with_winsize(mut self, rows: u16, cols: u16) -> ExecRequest {
        self.env
            .push(format!("{WINSIZE_ENV}={rows}x{cols}").into_bytes());
        self
    }

    /// Remove the [`WINSIZE_ENV`] entries; the last valid size, if any.
    pub fn take_winsize(&mut self) -> Option<(u16, u16)> {
        let prefix = format!("{WINSIZE_ENV}=");
        let mut size = None;
        self.env.retain(|e| {
            let Some(v) = e.strip_prefix(prefix.as_bytes()) else {
                return true;
            };
            let parsed = std::str::from_utf8(v).ok().and_then(|v| {
                let (r, c) = v.split_once('x')?;
                Some((r.parse::<u16>().ok()?, c.parse::<u16>().ok()?))
            });
            if let Some((r, c)) = parsed.filter(|&(r, c)| r > 0 && c > 0) {
                size = Some((r, c));
            }
            false
        });
        size
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![u8::from(self.tty)];
        put_list(&mut out, &self.argv);
        put_list(&mut out, &self.env);
        out
    }

    pub fn decode(b: &[u8]) -> Result<ExecRequest, ProtoError> {
        let flags = *b.first().ok_or(ProtoError::Malformed("exec"))?;
        let mut pos = 1;
        let argv = get_list(b, &mut pos)?;
        let env = get_list(b, &mut pos)?;
        if pos != b.len() || argv.is_empty() {
            return Err(ProtoError::Malformed("exec"));
        }
        Ok(ExecRequest {
            argv,
            env,
            tty: flags & 1 != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn winsize_travels_in_the_environment_and_is_taken_out() {
        let mut r = ExecRequest {
            argv: vec![b"sh".to_vec()],
            env: vec![b"A=1".to_vec()],
            tty: true,
        }
        .with_winsize(33, 99);
        let mut back = ExecRequest::decode(&r.encode()).unwrap();
        assert_eq!(back.take_winsize(), Some((33, 99)));
        assert_eq!(back.env, vec![b"A=1".to_vec()]);
        r.env.push(b"UMLKIT_WINSIZE=0x5".to_vec());
        r.env.push(b"UMLKIT_WINSIZE=junk".to_vec());
        assert_eq!(r.take_winsize(), Some((33, 99)), "bad sizes are dropped");
        assert_eq!(r.env, vec![b"A=1".to_vec()]);
        assert_eq!(r.take_winsize(), None);
    }

    #[test]
    fn resize_frames_round_trip_and_unknown_kinds_are_skipped() {
        let f = Frame::resize(3, 37, 111);
        let mut d = Decoder::new();
        d.push(&f.encode());
        let g = d.next_frame().unwrap().unwrap();
        assert_eq!(
            (g.kind, g.id, g.size().unwrap()),
            (Kind::Resize, 3, (37, 111))
        );
        assert!(Frame::new(Kind::Resize, 3, vec![1, 2, 3]).size().is_err());
        // an agent that does not know a kind (as agents before Resize did
        // not know 11) skips that frame and reads the next one
        let mut unknown = Frame::resize(3, 37, 111).encode();
        unknown[1] = 200;
        let mut d = Decoder::new();
        d.push(&unknown);
        d.push(&Frame::new(Kind::Stdin, 3, b"x".to_vec()).encode());
        let mut got = None;
        for _ in 0..8 {
            if let Ok(Some(f)) = d.next_frame() {
                got = Some(f);
                break;
            }
        }
        assert_eq!(got.unwrap().payload, b"x");
    }

    #[test]
    fn frames_round_trip_split_anywhere() {
        let frames = vec![
            Frame::new(Kind::Hello, 0, b"umlkit-agent 1".to_vec()),
            Frame::new(Kind::Stdout, 7, (0..=255u8).collect()),
            Frame::exit(7, -1),
            Frame::new(Kind::Eof, 3, vec![]),
        ];
        let mut bytes = Vec::new();
        for f in &frames {
            f.encode_into(&mut bytes);
        }
        for split in 0..bytes.len() {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            d.push(&bytes[..split]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            d.push(&bytes[split..]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            assert_eq!(got, frames, "split at {split}");
        }
        assert_eq!(frames[2].code().unwrap(), -1);
    }

    #[test]
    fn exec_request_round_trip() {
        let r = ExecRequest {
            argv: vec![b"sh".to_vec(), b"-c".to_vec(), b"echo \0x".to_vec()],
            env: vec![b"A=1".to_vec()],
            tty: true,
        };
        assert_eq!(ExecRequest::decode(&r.encode()).unwrap(), r);
        assert!(ExecRequest::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(ExecRequest::decode(&[0, 255, 255, 255, 255]).is_err());
    }

    #[test]
    fn bad_magic_and_size() {
        let mut d = Decoder::new();
        d.push(&[0u8; 12]);
        assert_eq!(d.next_frame(), Err(ProtoError::BadMagic(0)));
        assert_eq!(d.pending(), 0, "a run of garbage is skipped at once");
        let mut d = Decoder::new();
        let mut f = Frame::new(Kind::Stdin, 1, vec![]).encode();
        f[6..10].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        d.push(&f);
        assert_eq!(d.next_frame(), Err(ProtoError::TooLarge(MAX_PAYLOAD + 1)));
    }

    /// Issue 8.1: an unknown kind or an oversize length used to return an
    /// error without consuming the header, so a caller that skipped errors
    /// looped forever on the same ten bytes.
    #[test]
    fn bad_header_is_consumed_not_repeated_forever() {
        let good = Frame::new(Kind::Exit, 4, 3i32.to_le_bytes().to_vec()).encode();
        let mut bad_kind = Frame::new(Kind::Stdin, 1, vec![]).encode();
        bad_kind[1] = 200;
        let mut too_large = Frame::new(Kind::Stdin, 1, vec![]).encode();
        too_large[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
        for bad in [bad_kind, too_large] {
            let mut d = Decoder::new();
            d.push(&bad);
            d.push(&good);
            let mut frames = Vec::new();
            for _ in 0..100 {
                match d.next_frame() {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
            assert_eq!(d.pending(), 0);
            assert_eq!(frames, vec![Frame::exit(4, 3)]);
        }
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (
            1u8..=10,
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(k, id, payload)| Frame::new(Kind::from_u8(k).unwrap(), id, payload))
    }

    proptest! {
        /// For any bytes, each call returns a frame, needs more, or advances.
        #[test]
        fn every_call_makes_progress(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
            magic_heavy in any::<bool>(),
        ) {
            let mut d = Decoder::new();
            for mut c in chunks {
                if magic_heavy {
                    for (i, b) in c.iter_mut().enumerate() {
                        if i % 3 == 0 { *b = MAGIC; }
                    }
                }
                d.push(&c);
                let start = d.pending();
                let mut calls = 0;
                loop {
                    let before = d.pending();
                    match d.next_frame() {
                        Ok(Some(_)) => prop_assert!(d.pending() < before),
                        Ok(None) => break,
                        Err(_) => prop_assert!(d.pending() < before, "error without progress"),
                    }
                    calls += 1;
                    prop_assert!(calls <= start);
                }
            }
        }

        /// Garbage without a magic byte in front of real frames never hides them.
        #[test]
        fn frames_survive_leading_garbage(
            garbage in proptest::collection::vec(any::<u8>().prop_filter("no magic", |b| *b != MAGIC), 0..40),
            frames in proptest::collection::vec(arb_frame(), 1..5),
        ) {
            let mut d = Decoder::new();
            d.push(&garbage);
            for f in &frames {
                d.push(&f.encode());
            }
            let mut got = Vec::new();
            for _ in 0..1000 {
                match d.next_frame() {
                    Ok(Some(f)) => got.push(f),
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
            prop_assert_eq!(got, frames);
        }
    }
}

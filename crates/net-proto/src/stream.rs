//! VDE stream framing and URLs: what `vde_plug` speaks on stdin/stdout and
//! through `dpipe` or ssh cables, and the `PATH[PORT]` switch addresses.
//!
//! A stream is a concatenation of frames, each a 2-byte big-endian length
//! followed by that many bytes. Frames longer than [`MAX_FRAME`] are not
//! sent; a receiver skips zero lengths and, like libvdeplug, discards the
//! rest of what it holds after a length it cannot accept (there is no way
//! to resynchronise a length-prefixed stream).

use std::path::PathBuf;

/// Largest frame a VDE stream carries (VDE_ETHBUFSIZE 9216 + 14 + 4).
pub const MAX_FRAME: usize = 9234;

/// The 2-byte header of a frame, or `None` if the frame cannot be sent.
pub fn header(frame_len: usize) -> Option<[u8; 2]> {
    if frame_len == 0 || frame_len > MAX_FRAME {
        return None;
    }
    Some((frame_len as u16).to_be_bytes())
}

/// One frame with its header, ready for a single write.
pub fn encode(frame: &[u8]) -> Option<Vec<u8>> {
    let h = header(frame.len())?;
    let mut v = Vec::with_capacity(2 + frame.len());
    v.extend_from_slice(&h);
    v.extend_from_slice(frame);
    Some(v)
}

/// What the decoder found that was not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A length above [`MAX_FRAME`]: the bytes held were discarded.
    #[error("frame length {len} exceeds {max} bytes: {discarded} buffered bytes discarded")]
    TooLong {
        len: usize,
        max: usize,
        discarded: usize,
    },
}

/// Reassembles frames from a byte stream, across reads of any size
/// (including a read that ends between the two length bytes).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Add bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet form a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame, an error (after which decoding goes on with
    /// the next bytes pushed), or `None` when more bytes are needed.
    /// Every call that returns `Some` consumes input.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Vec<u8>, StreamError>> {
        loop {
            let held = &self.buf[self.start..];
            if held.len() < 2 {
                return None;
            }
            let len = u16::from_be_bytes([held[0], held[1]]) as usize;
            if len == 0 {
                self.start += 2;
                continue;
            }
            if len > MAX_FRAME {
                let discarded = held.len();
                self.start = self.buf.len();
                return Some(Err(StreamError::TooLong {
                    len,
                    max: MAX_FRAME,
                    discarded,
                }));
            }
            if held.len() < 2 + len {
                return None;
            }
            let f = held[2..2 + len].to_vec();
            self.start += 2 + len;
            return Some(Ok(f));
        }
    }
}

/// Which port a client asks a VDE switch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRequest {
    /// Any free port.
    Any,
    /// Port 0, the management port (`[0]`).
    Zero,
    /// A given port (`[N]`, `--port N`).
    Port(u32),
}

/// A VDE switch address: `vde://PATH[X]`, `PATH[X]` or `PATH` (vdeplug4's
/// vde module). `X` is a port number or a port-group name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdeUrl {
    pub dir: PathBuf,
    pub port: PortRequest,
    /// A non-numeric bracket part: a port-group socket `PATH/NAME`.
    pub group: Option<String>,
}

/// Why a switch address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("empty switch address")]
    Empty,
    #[error("unsupported scheme '{0}://' (this plug speaks vde:// and plain paths)")]
    Scheme(String),
    #[error("unbalanced '[' in '{0}'")]
    Bracket(String),
    #[error("bad port '{0}' (0..=65535 or a port-group name)")]
    Port(String),
}

impl VdeUrl {
    pub fn parse(url: &str) -> Result<VdeUrl, UrlError> {
        let rest = match url.split_once("://") {
            Some(("vde", r)) => r,
            Some((scheme, _)) => return Err(UrlError::Scheme(scheme.to_string())),
            None => url,
        };
        if rest.is_empty() {
            return Err(UrlError::Empty);
        }
        let (path, bracket) = match rest.find('[') {
            Some(i) => {
                let inner = rest[i + 1..]
                    .strip_suffix(']')
                    .filter(|s| !s.contains(['[', ']']))
                    .ok_or_else(|| UrlError::Bracket(url.to_string()))?;
                (&rest[..i], Some(inner))
            }
            None if rest.contains(']') => return Err(UrlError::Bracket(url.to_string())),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(UrlError::Empty);
        }
        let (port, group) = match bracket {
            None | Some("") => (PortRequest::Any, None),
            Some(b) if b.bytes().all(|c| c.is_ascii_digit()) => match b.parse::<u32>() {
                Ok(0) => (PortRequest::Zero, None),
                Ok(n) if n <= 65535 => (PortRequest::Port(n), None),
                _ => return Err(UrlError::Port(b.to_string())),
            },
            Some(b) if b.contains('/') || b.starts_with('.') => {
                return Err(UrlError::Port(b.to_string()))
            }
            Some(b) => (PortRequest::Any, Some(b.to_string())),
        };
        Ok(VdeUrl {
            dir: PathBuf::from(path),
            port,
            group,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_matches_vde_plug_bytes() {
        // verified on vde_plug: a 33-byte frame starts 00 21, 19 bytes 00 13
        assert_eq!(header(33), Some([0x00, 0x21]));
        assert_eq!(header(19), Some([0x00, 0x13]));
        assert_eq!(header(MAX_FRAME), Some([0x24, 0x12]));
        assert_eq!(header(MAX_FRAME + 1), None);
        assert_eq!(header(0), None);
    }

    #[test]
    fn split_length_byte_is_kept() {
        // libvdeplug loses a lone first length byte; we must not
        let f = vec![7u8; 300];
        let e = encode(&f).unwrap();
        let mut d = Decoder::new();
        d.push(&e[..1]);
        assert_eq!(d.next(), None);
        d.push(&e[1..2]);
        assert_eq!(d.next(), None);
        d.push(&e[2..]);
        assert_eq!(d.next(), Some(Ok(f)));
        assert_eq!(d.next(), None);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn zero_lengths_skipped_and_too_long_discards_what_is_held() {
        let mut d = Decoder::new();
        let mut s = vec![0, 0, 0, 0];
        s.extend(encode(b"abc").unwrap());
        s.extend_from_slice(&[0xff, 0xff, 1, 2, 3]);
        d.push(&s);
        assert_eq!(d.next(), Some(Ok(b"abc".to_vec())));
        assert_eq!(
            d.next(),
            Some(Err(StreamError::TooLong {
                len: 0xffff,
                max: MAX_FRAME,
                discarded: 5
            }))
        );
        assert_eq!(d.next(), None);
        // decoding goes on with what comes next
        d.push(&encode(b"next").unwrap());
        assert_eq!(d.next(), Some(Ok(b"next".to_vec())));
    }

    #[test]
    fn urls_like_vdeplug4() {
        let u = VdeUrl::parse("/tmp/sw").unwrap();
        assert_eq!(u.dir, PathBuf::from("/tmp/sw"));
        assert_eq!(u.port, PortRequest::Any);
        let u = VdeUrl::parse("vde:///tmp/sw[7]").unwrap();
        assert_eq!(
            (u.dir.to_str().unwrap(), u.port),
            ("/tmp/sw", PortRequest::Port(7))
        );
        assert_eq!(VdeUrl::parse("/tmp/sw[0]").unwrap().port, PortRequest::Zero);
        assert_eq!(VdeUrl::parse("/tmp/sw[]").unwrap().port, PortRequest::Any);
        let g = VdeUrl::parse("/tmp/sw[blue]").unwrap();
        assert_eq!(g.group.as_deref(), Some("blue"));
        assert!(matches!(
            VdeUrl::parse("udp://1.2.3.4"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            VdeUrl::parse("/tmp/sw[7"),
            Err(UrlError::Bracket(_))
        ));
        assert!(matches!(
            VdeUrl::parse("/tmp/sw[70000]"),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            VdeUrl::parse("/tmp/sw[../x]"),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(VdeUrl::parse(""), Err(UrlError::Empty)));
        assert!(matches!(VdeUrl::parse("vde://"), Err(UrlError::Empty)));
    }

    proptest! {
        #[test]
        fn frames_survive_any_split(
            frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..1600), 0..8),
            cuts in prop::collection::vec(0usize..20000, 0..12),
        ) {
            let stream: Vec<u8> = frames.iter().flat_map(|f| encode(f).unwrap()).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for w in cuts.windows(2) {
                d.push(&stream[w[0]..w[1]]);
                while let Some(f) = d.next() {
                    got.push(f.unwrap());
                }
            }
            prop_assert_eq!(got, frames);
            prop_assert_eq!(d.pending(), 0);
        }

        #[test]
        fn any_bytes_decode_without_panic_and_make_progress(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..10),
        ) {
            let mut d = Decoder::new();
            for c in &chunks {
                d.push(c);
                let mut n = 0;
                while d.next().is_some() {
                    n += 1;
                    prop_assert!(n < 10_000);
                }
            }
        }
    }
}

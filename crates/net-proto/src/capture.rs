//! The capture stream a switch sends to a capture client (after the
//! console command `capture/start`): a sequence of messages, each
//!
//! ```text
//! kind: u8 | body length: u32 LE | body
//! ```
//!
//! - `Interface` (1): port u32 LE, then the peer's description (UTF-8);
//!   sent before the first packet of a port.
//! - `Packet` (2): port u32 LE, direction u8 (0 = into the switch, 1 = out
//!   of it), timestamp u64 LE (ns since the Unix epoch), then the frame.
//! - `Drops` (3): port u32 LE, u64 LE: frames of that port the switch
//!   could not queue for this client so far (cumulative).

use std::time::Duration;

/// Kind byte and body length.
pub const HEADER_LEN: usize = 5;
/// Bodies longer than this are refused by [`decode`].
pub const MAX_BODY: usize = 1 << 17;

/// Which way a captured frame crossed its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapDir {
    /// Sent by the port's machine into the switch.
    In,
    /// Sent by the switch to the port's machine.
    Out,
}

/// One message of the capture stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapMsg<'a> {
    Interface {
        port: u32,
        descr: &'a str,
    },
    Packet {
        port: u32,
        dir: CapDir,
        ts: Duration,
        frame: &'a [u8],
    },
    Drops {
        port: u32,
        total: u64,
    },
}

/// Errors of [`decode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("capture stream: unknown message kind {0}")]
    Kind(u8),
    #[error("capture stream: message of {0} bytes is too long")]
    TooLong(usize),
    #[error("capture stream: {0} message is too short")]
    Short(&'static str),
}

fn header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

/// Bytes [`encode`] appends for `msg`.
pub fn encoded_len(msg: &CapMsg<'_>) -> usize {
    HEADER_LEN
        + match msg {
            CapMsg::Interface { descr, .. } => 4 + descr.len(),
            CapMsg::Packet { frame, .. } => 13 + frame.len(),
            CapMsg::Drops { .. } => 12,
        }
}

/// Append one message.
pub fn encode(out: &mut Vec<u8>, msg: &CapMsg<'_>) {
    let len = encoded_len(msg) - HEADER_LEN;
    match msg {
        CapMsg::Interface { port, descr } => {
            header(out, 1, len);
            out.extend_from_slice(&port.to_le_bytes());
            out.extend_from_slice(descr.as_bytes());
        }
        CapMsg::Packet {
            port,
            dir,
            ts,
            frame,
        } => {
            header(out, 2, len);
            out.extend_from_slice(&port.to_le_bytes());
            out.push(match dir {
                CapDir::In => 0,
                CapDir::Out => 1,
            });
            out.extend_from_slice(&(ts.as_nanos() as u64).to_le_bytes());
            out.extend_from_slice(frame);
        }
        CapMsg::Drops { port, total } => {
            header(out, 3, len);
            out.extend_from_slice(&port.to_le_bytes());
            out.extend_from_slice(&total.to_le_bytes());
        }
    }
}

/// Decode the first message of `buf`: Ok(None) if it is not complete yet,
/// else the message and the bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(CapMsg<'_>, usize)>, CapError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let kind = buf[0];
    let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_BODY {
        return Err(CapError::TooLong(len));
    }
    if !(1..=3).contains(&kind) {
        return Err(CapError::Kind(kind));
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let b = &buf[HEADER_LEN..HEADER_LEN + len];
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(a)
    };
    let msg = match kind {
        1 => {
            if b.len() < 4 {
                return Err(CapError::Short("interface"));
            }
            CapMsg::Interface {
                port: u32_at(0),
                descr: std::str::from_utf8(&b[4..]).unwrap_or(""),
            }
        }
        2 => {
            if b.len() < 13 {
                return Err(CapError::Short("packet"));
            }
            CapMsg::Packet {
                port: u32_at(0),
                dir: if b[4] == 0 { CapDir::In } else { CapDir::Out },
                ts: Duration::from_nanos(u64_at(5)),
                frame: &b[13..],
            }
        }
        _ => {
            if b.len() < 12 {
                return Err(CapError::Short("drops"));
            }
            CapMsg::Drops {
                port: u32_at(0),
                total: u64_at(4),
            }
        }
    };
    Ok(Some((msg, HEADER_LEN + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roundtrip_each_kind() {
        let msgs = [
            CapMsg::Interface {
                port: 3,
                descr: "pc1 eth0",
            },
            CapMsg::Packet {
                port: 1,
                dir: CapDir::Out,
                ts: Duration::new(1_700_000_000, 123_456_789),
                frame: &[1, 2, 3, 4],
            },
            CapMsg::Drops { port: 7, total: 42 },
        ];
        let mut buf = Vec::new();
        for m in &msgs {
            let before = buf.len();
            encode(&mut buf, m);
            assert_eq!(buf.len() - before, encoded_len(m));
        }
        let mut off = 0;
        for m in &msgs {
            let (got, used) = decode(&buf[off..]).unwrap().unwrap();
            assert_eq!(&got, m);
            off += used;
        }
        assert_eq!(off, buf.len());
        // a partial message waits for more
        assert_eq!(decode(&buf[..7]), Ok(None));
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(decode(&[9, 0, 0, 0, 0]), Err(CapError::Kind(9)));
        assert_eq!(
            decode(&[2, 0xff, 0xff, 0xff, 0x7f]),
            Err(CapError::TooLong(0x7fff_ffff))
        );
        assert_eq!(decode(&[2, 1, 0, 0, 0, 0]), Err(CapError::Short("packet")));
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&b);
        }
    }
}

//! Ethernet II frames as a checked byte view, and 802.1Q tags.
//!
//! ```text
//!  0        6        12     14                   (untagged)
//!  | dst(6) | src(6) | type | payload ...
//!  0        6        12     14     16     18     (802.1Q tagged)
//!  | dst(6) | src(6) | 8100 | TCI  | type | payload ...
//!                           TCI = PCP(3) DEI(1) VID(12), big-endian
//! ```
//! Frames carry no FCS and no padding (as on uml_switch/VDE sockets).

use std::fmt;

/// Ethernet header length.
pub const HEADER_LEN: usize = 14;
/// 802.1Q tag length.
pub const TAG_LEN: usize = 4;
/// Largest untagged frame accepted (header + 1500 payload + 4 spare, as vde_switch).
pub const MAX_FRAME: usize = 1518;
/// Largest tagged frame accepted.
pub const MAX_TAGGED_FRAME: usize = MAX_FRAME + TAG_LEN;
/// The usual MTU, whose frames are at most [`MAX_FRAME`] bytes.
pub const DEFAULT_MTU: usize = 1500;
/// Largest MTU a switch accepts frames for (jumbo frames): their 9234
/// bytes are also the most the vde_plug stream framing carries.
pub const MAX_MTU: usize = 9216;

/// Largest untagged frame for an MTU: header, payload and 4 spare bytes,
/// as vde_switch counts ([`MAX_FRAME`] for 1500).
pub const fn max_frame_for_mtu(mtu: usize) -> usize {
    mtu + HEADER_LEN + 4
}
/// The 802.1Q ethertype.
pub const ETHERTYPE_VLAN: u16 = 0x8100;

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Group bit set (multicast or broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Parse `xx:xx:xx:xx:xx:xx` (see [`MacAddr::from_str`]), `None` if it
    /// is not one.
    pub fn parse(s: &str) -> Option<MacAddr> {
        s.parse().ok()
    }
}

/// Why a text is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// Not six parts separated by one kind of separator.
    #[error("MAC {0:?} must be 6 bytes separated by ':' (or '-')")]
    Shape(String),
    /// A part that is not 1 or 2 hex digits.
    #[error("MAC {text:?}: {byte:?} is not 1 or 2 hex digits")]
    Byte { text: String, byte: String },
}

impl std::str::FromStr for MacAddr {
    type Err = MacError;

    /// The one MAC parser of umlkit: six bytes of 1 or 2 hex digits
    /// separated by `:` (or all by `-`), as UML, vde_switch and lab.conf
    /// write them. Multicast addresses parse; callers that cannot use one
    /// refuse it ([`MacAddr::is_multicast`]).
    fn from_str(s: &str) -> Result<MacAddr, MacError> {
        let sep = if s.contains(':') { ':' } else { '-' };
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.len() != 6 {
            return Err(MacError::Shape(s.to_string()));
        }
        let mut out = [0u8; 6];
        for (b, p) in out.iter_mut().zip(&parts) {
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(MacError::Byte {
                    text: s.to_string(),
                    byte: p.to_string(),
                });
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| MacError::Shape(s.to_string()))?;
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Why a datagram is not an acceptable frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than an Ethernet header.
    #[error("runt frame of {0} bytes (minimum 14)")]
    Runt(usize),
    /// Longer than the maximum (1518 bytes, 1522 when 802.1Q tagged, at
    /// the usual MTU).
    #[error("giant frame of {len} bytes (maximum {max}, {} tagged)", max + TAG_LEN)]
    Giant { len: usize, max: usize },
}

/// A checked view of an Ethernet frame: the length was checked once, so the
/// accessors cannot panic.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Check the length limits (14..=1518, or ..=1522 when tagged).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        Self::new_checked_max(bytes, MAX_FRAME)
    }

    /// Check the length limits with `max` for untagged frames (see
    /// [`max_frame_for_mtu`]), `max` + 4 for tagged ones.
    pub fn new_checked_max(bytes: &'a [u8], max: usize) -> Result<Frame<'a>, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::Runt(bytes.len()));
        }
        let f = Frame { bytes };
        let limit = if f.ethertype() == ETHERTYPE_VLAN {
            max + TAG_LEN
        } else {
            max
        };
        if bytes.len() > limit {
            return Err(FrameError::Giant {
                len: bytes.len(),
                max,
            });
        }
        Ok(f)
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn dst(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.bytes[0..6]);
        MacAddr(m)
    }

    pub fn src(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.bytes[6..12]);
        MacAddr(m)
    }

    /// The outer ethertype (bytes 12-13, big-endian).
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes([self.bytes[12], self.bytes[13]])
    }

    /// The VLAN id of an 802.1Q tag, if the frame carries one (a frame of
    /// type 0x8100 too short to hold the TCI has none).
    pub fn vlan(&self) -> Option<u16> {
        if self.ethertype() == ETHERTYPE_VLAN && self.bytes.len() >= HEADER_LEN + 2 {
            Some(u16::from_be_bytes([self.bytes[14], self.bytes[15]]) & 0x0fff)
        } else {
            None
        }
    }
}

/// Write `frame` with an 802.1Q tag for `vlan` (priority 0) inserted after
/// the source MAC into `out`; returns the new length. `out` must hold
/// `frame.len() + 4` bytes.
pub fn insert_tag(frame: &[u8], vlan: u16, out: &mut [u8]) -> usize {
    let n = frame.len() + TAG_LEN;
    out[..12].copy_from_slice(&frame[..12]);
    out[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
    out[14..16].copy_from_slice(&(vlan & 0x0fff).to_be_bytes());
    out[16..n].copy_from_slice(&frame[12..]);
    n
}

/// Write `frame` without its 802.1Q tag (the 4 bytes after the source MAC)
/// into `out`; returns the new length. `frame` must be at least 16 bytes.
pub fn strip_tag(frame: &[u8], out: &mut [u8]) -> usize {
    let n = frame.len() - TAG_LEN;
    out[..12].copy_from_slice(&frame[..12]);
    out[12..n].copy_from_slice(&frame[16..]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(dst: [u8; 6], src: [u8; 6], ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&dst);
        v.extend_from_slice(&src);
        v.extend_from_slice(&ty.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn limits() {
        assert_eq!(
            Frame::new_checked(&[0u8; 13]).unwrap_err(),
            FrameError::Runt(13)
        );
        assert!(Frame::new_checked(&[0u8; 14]).is_ok());
        assert!(Frame::new_checked(&[0u8; 1518]).is_ok());
        assert_eq!(
            Frame::new_checked(&[0u8; 1519]).unwrap_err(),
            FrameError::Giant {
                len: 1519,
                max: 1518
            }
        );
        let mut tagged = vec![0u8; 1522];
        tagged[12] = 0x81;
        assert!(Frame::new_checked(&tagged).is_ok());
        tagged.push(0);
        assert_eq!(
            Frame::new_checked(&tagged).unwrap_err(),
            FrameError::Giant {
                len: 1523,
                max: 1518
            }
        );
        assert_eq!(
            FrameError::Giant {
                len: 1523,
                max: 1518
            }
            .to_string(),
            "giant frame of 1523 bytes (maximum 1518, 1522 tagged)"
        );
    }

    #[test]
    fn jumbo_limits_follow_the_mtu() {
        let max = max_frame_for_mtu(MAX_MTU);
        assert_eq!(max_frame_for_mtu(DEFAULT_MTU), MAX_FRAME);
        assert_eq!(max, crate::stream::MAX_FRAME);
        assert!(Frame::new_checked_max(&vec![0u8; max], max).is_ok());
        assert!(Frame::new_checked(&vec![0u8; 9000]).is_err());
        let mut tagged = vec![0u8; max + TAG_LEN];
        tagged[12] = 0x81;
        assert!(Frame::new_checked_max(&tagged, max).is_ok());
        tagged.push(0);
        assert_eq!(
            Frame::new_checked_max(&tagged, max).unwrap_err(),
            FrameError::Giant {
                len: max + TAG_LEN + 1,
                max
            }
        );
    }

    #[test]
    fn accessors() {
        let f = frame([0xff; 6], [2, 0, 0, 0, 0, 1], 0x0806, b"abc");
        let v = Frame::new_checked(&f).unwrap();
        assert!(v.dst().is_multicast());
        assert_eq!(v.src().to_string(), "02:00:00:00:00:01");
        assert_eq!(v.ethertype(), 0x0806);
        assert_eq!(v.vlan(), None);
        // short 0x8100 frame: no vlan
        let f = frame([2; 6], [2; 6], 0x8100, b"");
        assert_eq!(Frame::new_checked(&f).unwrap().vlan(), None);
        let f = frame([2; 6], [2; 6], 0x8100, &[0xe0, 0x0a, 8, 0]);
        assert_eq!(Frame::new_checked(&f).unwrap().vlan(), Some(10));
    }

    #[test]
    fn mac_parse() {
        assert_eq!(
            MacAddr::parse("02:00:0a:0B:00:ff"),
            Some(MacAddr([2, 0, 10, 11, 0, 255]))
        );
        assert_eq!(MacAddr::parse("02:00:0a:0B:00"), None);
        assert_eq!(MacAddr::parse("02:00:0a:0B:00:ff:1"), None);
        assert_eq!(MacAddr::parse("02:00:0a:0B:00:fff"), None);
        assert_eq!(MacAddr::parse("zz:00:0a:0B:00:ff"), None);
        // one parser for lab.conf, --net mac= and the switch console
        assert_eq!(
            MacAddr::parse("2-0-a-b-0-ff"),
            Some(MacAddr([2, 0, 0xa, 0xb, 0, 0xff]))
        );
        assert_eq!(MacAddr::parse("02:00:0a:0b:00-ff"), None, "mixed");
        assert_eq!(MacAddr::parse("+2:00:0a:0b:00:ff"), None, "sign");
        assert_eq!(MacAddr::parse("02::0a:0b:00:ff"), None);
        assert_eq!(
            "02:00:0a:0B:00:fg"
                .parse::<MacAddr>()
                .unwrap_err()
                .to_string(),
            "MAC \"02:00:0a:0B:00:fg\": \"fg\" is not 1 or 2 hex digits"
        );
    }

    #[test]
    fn tag_matches_verified_bytes() {
        // vde.md §4: B(12) bcast -> C tagged: ff..ff 02..02 81 00 00 0a 08 00 "fromB"
        let f = frame([0xff; 6], [2, 0, 0, 0, 0, 2], 0x0800, b"fromB");
        let mut out = [0u8; 64];
        let n = insert_tag(&f, 10, &mut out);
        let want = frame(
            [0xff; 6],
            [2, 0, 0, 0, 0, 2],
            0x8100,
            &[0, 10, 8, 0, b'f', b'r', b'o', b'm', b'B'],
        );
        assert_eq!(&out[..n], &want[..]);
    }

    proptest! {
        #[test]
        fn tag_roundtrip(payload in proptest::collection::vec(any::<u8>(), 0..1504), vlan in 0u16..4096, src in any::<[u8;6]>(), dst in any::<[u8;6]>(), ty in any::<u16>()) {
            let f = frame(dst, src, ty, &payload);
            let mut t = vec![0u8; f.len() + 4];
            let n = insert_tag(&f, vlan, &mut t);
            prop_assert_eq!(n, f.len() + 4);
            let v = Frame::new_checked(&t[..n]).unwrap();
            prop_assert_eq!(v.vlan(), Some(vlan));
            prop_assert_eq!(v.src(), MacAddr(src));
            let mut back = vec![0u8; n];
            let m = strip_tag(&t[..n], &mut back);
            prop_assert_eq!(&back[..m], &f[..]);
        }

        #[test]
        fn checked_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            if let Ok(f) = Frame::new_checked(&bytes) {
                let _ = (f.dst(), f.src(), f.ethertype(), f.vlan());
                prop_assert!(f.len() >= 14 && f.len() <= 1522);
            }
        }
    }
}

//! Capture file formats: classic pcap and pcapng, written into the
//! caller's buffer (no files, no clock: timestamps are passed in as the
//! time since the Unix epoch).
//!
//! Classic pcap (little-endian, microsecond timestamps, one link type):
//! ```text
//! global header (24): magic a1b2c3d4 | 2 | 4 | thiszone 0 | sigfigs 0 | snaplen | linktype
//! record (16 + caplen): ts_sec | ts_usec | caplen | origlen | data
//! ```
//! pcapng (little-endian, every block padded to 4 bytes):
//! ```text
//! block: type(4) | total length(4) | body ... | options | total length(4)
//! option: code(2) | length(2) | value, padded to 4 | ... | opt_endofopt (0, 0)
//! SHB 0x0A0D0D0A: byte-order magic 1A2B3C4D | major 1 | minor 0 | section length -1 | shb_userappl
//! IDB 0x00000001: linktype(2) | reserved(2) | snaplen(4) | if_name, if_description, if_tsresol=6
//! EPB 0x00000006: interface id | ts high | ts low | caplen | origlen | data | epb_flags, opt_comment
//! ISB 0x00000005: interface id | ts high | ts low | isb_ifrecv, isb_ifdrop, isb_osdrop, isb_usrdeliv
//! ```
//! One pcapng file holds every link of a lab: one IDB per port (its name
//! and description name the machine and interface), EPBs refer to it by
//! number, ISBs at the end carry the drop counts.

use std::time::Duration;

use zerocopy::byteorder::little_endian::{U16, U32};
use zerocopy::{Immutable, IntoBytes, KnownLayout};

/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u16 = 1;
/// Default snapshot length (whole frames).
pub const SNAPLEN: u32 = 262_144;

/// Errors of the capture writers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapError {
    #[error("pcapng: no interface {0} (add it before its packets)")]
    NoSuchInterface(u32),
    #[error("pcapng: option {what} is {len} bytes, at most 65535")]
    OptionTooLong { what: &'static str, len: usize },
}

#[derive(IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct PcapGlobal {
    magic: U32,
    major: U16,
    minor: U16,
    thiszone: U32,
    sigfigs: U32,
    snaplen: U32,
    linktype: U32,
}

#[derive(IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct PcapRecord {
    ts_sec: U32,
    ts_usec: U32,
    caplen: U32,
    origlen: U32,
}

const _: () = assert!(std::mem::size_of::<PcapGlobal>() == 24);
const _: () = assert!(std::mem::size_of::<PcapRecord>() == 16);

/// Append the classic pcap global header.
pub fn pcap_header(out: &mut Vec<u8>, snaplen: u32, linktype: u16) {
    let h = PcapGlobal {
        magic: U32::new(0xa1b2_c3d4),
        major: U16::new(2),
        minor: U16::new(4),
        thiszone: U32::new(0),
        sigfigs: U32::new(0),
        snaplen: U32::new(snaplen),
        linktype: U32::new(linktype as u32),
    };
    out.extend_from_slice(h.as_bytes());
}

/// Append one classic pcap record (the frame cut to `snaplen`).
/// Seconds wrap after 2106, as the format does.
pub fn pcap_record(out: &mut Vec<u8>, ts: Duration, frame: &[u8], snaplen: u32) {
    let cap = frame.len().min(snaplen as usize);
    let r = PcapRecord {
        ts_sec: U32::new(ts.as_secs() as u32),
        ts_usec: U32::new(ts.subsec_micros()),
        caplen: U32::new(cap as u32),
        origlen: U32::new(frame.len().min(u32::MAX as usize) as u32),
    };
    out.extend_from_slice(r.as_bytes());
    out.extend_from_slice(&frame[..cap]);
}

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const ISB: u32 = 0x0000_0005;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;
const ISB_IFRECV: u16 = 4;
const ISB_IFDROP: u16 = 5;
const ISB_OSDROP: u16 = 7;
const ISB_USRDELIV: u16 = 8;

#[derive(IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct BlockHead {
    kind: U32,
    len: U32,
}

#[derive(IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct ShbBody {
    magic: U32,
    major: U16,
    minor: U16,
    section_len_lo: U32,
    section_len_hi: U32,
}

#[derive(IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct IdbBody {
    linktype: U16,
    reserved: U16,
    snaplen: U32,
}

#[derive(IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct EpbBody {
    interface: U32,
    ts_high: U32,
    ts_low: U32,
    caplen: U32,
    origlen: U32,
}

#[derive(IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct IsbBody {
    interface: U32,
    ts_high: U32,
    ts_low: U32,
}

#[derive(IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct OptHead {
    code: U16,
    len: U16,
}

/// Builds one block in `out`: head now, length patched by `finish`.
struct Block<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Block<'a> {
    fn new(out: &'a mut Vec<u8>, kind: u32) -> Block<'a> {
        let start = out.len();
        let head = BlockHead {
            kind: U32::new(kind),
            len: U32::new(0),
        };
        out.extend_from_slice(head.as_bytes());
        Block { out, start }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    fn pad(&mut self) {
        let n = (4 - (self.out.len() - self.start) % 4) % 4;
        self.out.extend(std::iter::repeat_n(0u8, n));
    }

    fn opt(&mut self, code: u16, value: &[u8]) {
        let head = OptHead {
            code: U16::new(code),
            len: U16::new(value.len() as u16),
        };
        self.bytes(head.as_bytes());
        self.bytes(value);
        self.pad();
    }

    fn finish(self, with_options: bool) {
        if with_options {
            self.out.extend_from_slice(
                OptHead {
                    code: U16::new(OPT_END),
                    len: U16::new(0),
                }
                .as_bytes(),
            );
        }
        let len = (self.out.len() - self.start + 4) as u32;
        self.out.extend_from_slice(U32::new(len).as_bytes());
        self.out[self.start + 4..self.start + 8].copy_from_slice(U32::new(len).as_bytes());
    }
}

fn check_len(what: &'static str, s: &str) -> Result<(), PcapError> {
    if s.len() > u16::MAX as usize {
        return Err(PcapError::OptionTooLong { what, len: s.len() });
    }
    Ok(())
}

fn micros(ts: Duration) -> (U32, U32) {
    let us = ts.as_micros().min(u64::MAX as u128) as u64;
    (U32::new((us >> 32) as u32), U32::new(us as u32))
}

/// One capture interface: a port of a switch, named after the machine and
/// interface on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `if_name`, e.g. `pc1:eth0`.
    pub name: String,
    /// `if_description`, e.g. `lab demo, machine pc1, eth0 on collision domain A`.
    pub description: String,
    pub linktype: u16,
    pub snaplen: u32,
}

impl Interface {
    /// An Ethernet interface capturing whole frames.
    pub fn ethernet(name: &str, description: &str) -> Interface {
        Interface {
            name: name.to_string(),
            description: description.to_string(),
            linktype: LINKTYPE_ETHERNET,
            snaplen: SNAPLEN,
        }
    }
}

/// Direction of a packet on its interface (`epb_flags` bits 0-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received by the interface (sent by the machine into the link).
    Inbound,
    Outbound,
}

/// One captured packet.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub interface: u32,
    /// Since the Unix epoch; written in microseconds.
    pub ts: Duration,
    pub data: &'a [u8],
    pub direction: Option<Direction>,
    pub comment: Option<&'a str>,
}

/// Counters written in an Interface Statistics Block (absent ones omitted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// isb_ifrecv: packets seen by the interface.
    pub received: Option<u64>,
    /// isb_ifdrop: packets the interface dropped (e.g. link emulation).
    pub if_drop: Option<u64>,
    /// isb_osdrop: packets the capture dropped (writer too slow).
    pub capture_drop: Option<u64>,
    /// isb_usrdeliv: packets written to the file.
    pub delivered: Option<u64>,
}

/// A pcapng writer for one section. It only remembers the interfaces'
/// snapshot lengths; every call appends bytes to the caller's buffer.
#[derive(Debug, Default)]
pub struct PcapngWriter {
    snaplens: Vec<u32>,
}

impl PcapngWriter {
    pub fn new() -> PcapngWriter {
        PcapngWriter::default()
    }

    /// Append the Section Header Block naming the writing application.
    pub fn section_header(&mut self, out: &mut Vec<u8>, app: &str) -> Result<(), PcapError> {
        check_len("shb_userappl", app)?;
        self.snaplens.clear();
        let mut b = Block::new(out, SHB);
        let body = ShbBody {
            magic: U32::new(BYTE_ORDER_MAGIC),
            major: U16::new(1),
            minor: U16::new(0),
            section_len_lo: U32::new(u32::MAX),
            section_len_hi: U32::new(u32::MAX),
        };
        b.bytes(body.as_bytes());
        b.opt(SHB_USERAPPL, app.as_bytes());
        b.finish(true);
        Ok(())
    }

    /// Append an Interface Description Block; returns the interface id
    /// packets refer to (0, 1, ... in order of addition).
    pub fn add_interface(
        &mut self,
        out: &mut Vec<u8>,
        iface: &Interface,
    ) -> Result<u32, PcapError> {
        check_len("if_name", &iface.name)?;
        check_len("if_description", &iface.description)?;
        let mut b = Block::new(out, IDB);
        let body = IdbBody {
            linktype: U16::new(iface.linktype),
            reserved: U16::new(0),
            snaplen: U32::new(iface.snaplen),
        };
        b.bytes(body.as_bytes());
        b.opt(IF_NAME, iface.name.as_bytes());
        if !iface.description.is_empty() {
            b.opt(IF_DESCRIPTION, iface.description.as_bytes());
        }
        b.opt(IF_TSRESOL, &[6]);
        b.finish(true);
        self.snaplens.push(iface.snaplen);
        Ok(self.snaplens.len() as u32 - 1)
    }

    /// Interfaces added so far.
    pub fn interfaces(&self) -> u32 {
        self.snaplens.len() as u32
    }

    /// Append an Enhanced Packet Block.
    pub fn packet(&mut self, out: &mut Vec<u8>, p: &Packet<'_>) -> Result<(), PcapError> {
        let snaplen = *self
            .snaplens
            .get(p.interface as usize)
            .ok_or(PcapError::NoSuchInterface(p.interface))?;
        if let Some(c) = p.comment {
            check_len("opt_comment", c)?;
        }
        let snaplen = if snaplen == 0 { u32::MAX } else { snaplen };
        let cap = p.data.len().min(snaplen as usize);
        let (hi, lo) = micros(p.ts);
        let mut b = Block::new(out, EPB);
        let body = EpbBody {
            interface: U32::new(p.interface),
            ts_high: hi,
            ts_low: lo,
            caplen: U32::new(cap as u32),
            origlen: U32::new(p.data.len().min(u32::MAX as usize) as u32),
        };
        b.bytes(body.as_bytes());
        b.bytes(&p.data[..cap]);
        b.pad();
        let mut opts = false;
        if let Some(d) = p.direction {
            let flags: u32 = match d {
                Direction::Inbound => 1,
                Direction::Outbound => 2,
            };
            b.opt(EPB_FLAGS, U32::new(flags).as_bytes());
            opts = true;
        }
        if let Some(c) = p.comment {
            b.opt(OPT_COMMENT, c.as_bytes());
            opts = true;
        }
        b.finish(opts);
        Ok(())
    }

    /// Append an Interface Statistics Block (write one per interface at the
    /// end of a capture).
    pub fn stats(
        &mut self,
        out: &mut Vec<u8>,
        interface: u32,
        ts: Duration,
        s: &Stats,
    ) -> Result<(), PcapError> {
        if interface >= self.interfaces() {
            return Err(PcapError::NoSuchInterface(interface));
        }
        let (hi, lo) = micros(ts);
        let mut b = Block::new(out, ISB);
        let body = IsbBody {
            interface: U32::new(interface),
            ts_high: hi,
            ts_low: lo,
        };
        b.bytes(body.as_bytes());
        let mut opts = false;
        for (code, v) in [
            (ISB_IFRECV, s.received),
            (ISB_IFDROP, s.if_drop),
            (ISB_OSDROP, s.capture_drop),
            (ISB_USRDELIV, s.delivered),
        ] {
            if let Some(v) = v {
                b.opt(code, &v.to_le_bytes());
                opts = true;
            }
        }
        b.finish(opts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: Duration = Duration::new(1_700_000_000, 123_456_789);

    #[test]
    fn pcap_bytes_exact() {
        let mut out = Vec::new();
        pcap_header(&mut out, 65535, LINKTYPE_ETHERNET);
        assert_eq!(
            out,
            [
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0
            ]
        );
        out.clear();
        pcap_record(&mut out, T, &[1, 2, 3, 4, 5], 3);
        let mut want = Vec::new();
        want.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        want.extend_from_slice(&123_456u32.to_le_bytes());
        want.extend_from_slice(&3u32.to_le_bytes());
        want.extend_from_slice(&5u32.to_le_bytes());
        want.extend_from_slice(&[1, 2, 3]);
        assert_eq!(out, want);
    }

    #[test]
    fn pcapng_shb_bytes_exact() {
        let mut w = PcapngWriter::new();
        let mut out = Vec::new();
        w.section_header(&mut out, "umlkit").unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            0x0a, 0x0d, 0x0d, 0x0a, 44, 0, 0, 0,       // type, total length
            0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0,         // byte-order magic, 1.0
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // section length -1
            4, 0, 6, 0, b'u', b'm', b'l', b'k', b'i', b't', 0, 0, // shb_userappl
            0, 0, 0, 0,                                 // end of options
            44, 0, 0, 0,
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn pcapng_idb_and_epb_bytes_exact() {
        let mut w = PcapngWriter::new();
        let mut out = Vec::new();
        let id = w
            .add_interface(&mut out, &Interface::ethernet("pc1:eth0", "pc1 eth0"))
            .unwrap();
        assert_eq!(id, 0);
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            1, 0, 0, 0, 56, 0, 0, 0,
            1, 0, 0, 0, 0, 0, 4, 0,                     // linktype 1, snaplen 262144
            2, 0, 8, 0, b'p', b'c', b'1', b':', b'e', b't', b'h', b'0',
            3, 0, 8, 0, b'p', b'c', b'1', b' ', b'e', b't', b'h', b'0',
            9, 0, 1, 0, 6, 0, 0, 0,                     // if_tsresol = 6
            0, 0, 0, 0,
            56, 0, 0, 0,
        ];
        assert_eq!(out, want);

        out.clear();
        w.packet(
            &mut out,
            &Packet {
                interface: 0,
                ts: Duration::from_micros(0x1_0000_0002),
                data: &[0xaa, 0xbb, 0xcc],
                direction: Some(Direction::Outbound),
                comment: Some("hi"),
            },
        )
        .unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            6, 0, 0, 0, 56, 0, 0, 0,
            0, 0, 0, 0,                                 // interface 0
            1, 0, 0, 0, 2, 0, 0, 0,                     // ts high, low
            3, 0, 0, 0, 3, 0, 0, 0,                     // caplen, origlen
            0xaa, 0xbb, 0xcc, 0,                        // data, padded
            2, 0, 4, 0, 2, 0, 0, 0,                     // epb_flags outbound
            1, 0, 2, 0, b'h', b'i', 0, 0,               // opt_comment
            0, 0, 0, 0,
            56, 0, 0, 0,
        ];
        assert_eq!(out, want);

        // no options: no end-of-options marker
        out.clear();
        w.packet(
            &mut out,
            &Packet {
                interface: 0,
                ts: Duration::ZERO,
                data: &[],
                direction: None,
                comment: None,
            },
        )
        .unwrap();
        assert_eq!(out.len(), 32);
        assert_eq!(&out[4..8], &32u32.to_le_bytes());
    }

    #[test]
    fn pcapng_isb_and_errors() {
        let mut w = PcapngWriter::new();
        let mut out = Vec::new();
        assert_eq!(
            w.packet(
                &mut out,
                &Packet {
                    interface: 0,
                    ts: T,
                    data: &[1],
                    direction: None,
                    comment: None
                }
            ),
            Err(PcapError::NoSuchInterface(0))
        );
        assert!(out.is_empty());
        w.add_interface(&mut out, &Interface::ethernet("a", ""))
            .unwrap();
        out.clear();
        w.stats(
            &mut out,
            0,
            Duration::ZERO,
            &Stats {
                if_drop: Some(7),
                ..Stats::default()
            },
        )
        .unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            5, 0, 0, 0, 40, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            5, 0, 8, 0, 7, 0, 0, 0, 0, 0, 0, 0,         // isb_ifdrop = 7
            0, 0, 0, 0,
            40, 0, 0, 0,
        ];
        assert_eq!(out, want);
        assert_eq!(
            w.stats(&mut out, 1, T, &Stats::default()),
            Err(PcapError::NoSuchInterface(1))
        );
        let long = "x".repeat(70_000);
        assert!(matches!(
            w.add_interface(&mut out, &Interface::ethernet(&long, "")),
            Err(PcapError::OptionTooLong {
                what: "if_name",
                ..
            })
        ));
    }

    #[test]
    fn snaplen_cuts_frames() {
        let mut w = PcapngWriter::new();
        let mut out = Vec::new();
        let mut i = Interface::ethernet("a", "");
        i.snaplen = 2;
        w.add_interface(&mut out, &i).unwrap();
        out.clear();
        w.packet(
            &mut out,
            &Packet {
                interface: 0,
                ts: T,
                data: &[1, 2, 3, 4, 5],
                direction: None,
                comment: None,
            },
        )
        .unwrap();
        assert_eq!(&out[20..28], &[2, 0, 0, 0, 5, 0, 0, 0]);
        assert_eq!(&out[28..32], &[1, 2, 0, 0]);
    }

    proptest! {
        /// Every block is a multiple of 4 long, and both length fields agree.
        #[test]
        fn blocks_are_well_formed(data in proptest::collection::vec(any::<u8>(), 0..200),
                                  name in "\\PC{0,40}", comment in proptest::option::of("\\PC{0,40}")) {
            let mut w = PcapngWriter::new();
            let mut out = Vec::new();
            w.section_header(&mut out, "umlkit").unwrap();
            w.add_interface(&mut out, &Interface::ethernet(&name, &name)).unwrap();
            w.packet(&mut out, &Packet { interface: 0, ts: T, data: &data, direction: Some(Direction::Inbound), comment: comment.as_deref() }).unwrap();
            w.stats(&mut out, 0, T, &Stats { received: Some(1), if_drop: Some(0), capture_drop: Some(0), delivered: Some(1) }).unwrap();
            let mut at = 0;
            let mut blocks = 0;
            while at < out.len() {
                let len = u32::from_le_bytes(out[at + 4..at + 8].try_into().unwrap()) as usize;
                prop_assert_eq!(len % 4, 0);
                prop_assert!(at + len <= out.len());
                let tail = u32::from_le_bytes(out[at + len - 4..at + len].try_into().unwrap()) as usize;
                prop_assert_eq!(tail, len);
                at += len;
                blocks += 1;
            }
            prop_assert_eq!(blocks, 4);
        }
    }
}

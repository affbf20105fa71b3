//! Pure network protocol formats: Ethernet/VLAN frame views, uml_switch and
//! VDE control messages, management console commands and reply framing.
//!
//! Bytes or text in, typed values out, and back. No files, sockets or clocks.
//!
//! - [`eth`]: checked Ethernet frame view, MAC addresses, 802.1Q tag insert/strip.
//! - [`ctl`]: control-socket requests (uml_switch v0/v1/v3, VDE v3) and replies.
//! - [`mgmt`]: the vde_switch management console: command lines and reply framing.
//! - [`link`]: link impairment settings (`delay=20ms,loss=1%,...`), one parser for every front end.
//! - [`pcap`]: capture files, classic pcap and pcapng (one interface per port, drop counts).
//! - [`vxlan`]: RFC 7348 encapsulation, `--vxlan` settings, the MAC-to-VTEP table.
//! - [`stream`]: vde_plug's stream framing (2-byte big-endian lengths) and `PATH[PORT]` switch URLs.

pub mod capture;
pub mod ctl;
pub mod eth;
pub mod link;
pub mod mgmt;
pub mod pcap;
pub mod stream;
pub mod vxlan;

pub use ctl::{CtlError, Request, SockAddrUn};
pub use eth::{Frame, FrameError, MacAddr};

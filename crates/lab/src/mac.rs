//! Reproducible MAC addresses.
//!
//! Netkit's kernel patch derives a guest's MACs from a SHA-1 of the machine
//! name and the interface. umlkit's rule (documented in docs/labs.md): the
//! first six bytes of `SHA1("<umid>/<ifname>")`, with the first byte forced
//! to a locally administered unicast address (bit 1 set, bit 0 clear).

use sha1::{Digest, Sha1};

/// The MAC of interface `ifname` (e.g. `eth0`) of the guest `umid`.
pub fn derive_mac(umid: &str, ifname: &str) -> [u8; 6] {
    let mut h = Sha1::new();
    h.update(umid.as_bytes());
    h.update(b"/");
    h.update(ifname.as_bytes());
    let d = h.finalize();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&d[..6]);
    mac[0] = (mac[0] & 0xfc) | 0x02;
    mac
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff` (or `-` separated; [`net_proto::eth::MacAddr`]'s
/// parser); multicast addresses are refused (UML would replace them with a
/// random one).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mac: net_proto::eth::MacAddr = s.parse().map_err(|e| format!("{e}"))?;
    if mac.is_multicast() {
        return Err(format!("MAC {s:?} is a multicast address"));
    }
    Ok(mac.0)
}

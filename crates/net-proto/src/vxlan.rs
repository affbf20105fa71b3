//! VXLAN (RFC 7348): Ethernet frames in UDP between switches on different
//! hosts, and the `--vxlan` settings of `umlkit switch`.
//!
//! The header is 8 bytes: flags (the I bit, 0x08, says the VNI is valid),
//! 3 reserved bytes, the 24-bit VNI, one reserved byte; the inner Ethernet
//! frame follows. The IANA port is 4789 (Linux's `dstport 4789`).

use std::net::{IpAddr, SocketAddr};

/// IANA-assigned VXLAN UDP port.
pub const PORT: u16 = 4789;
/// Header length.
pub const HEADER: usize = 8;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = 0xff_ffff;

/// The header for `vni`.
pub fn header(vni: u32) -> [u8; HEADER] {
    let v = (vni & MAX_VNI).to_be_bytes();
    [0x08, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// Why a datagram is not a VXLAN frame for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {0} bytes is too short for a VXLAN header and an Ethernet frame")]
    Short(usize),
    #[error("VXLAN header without the I flag (VNI not valid)")]
    NoVni,
    #[error("VNI {got} is not ours ({want})")]
    OtherVni { got: u32, want: u32 },
}

/// The inner frame of a datagram for `vni`.
pub fn decode(datagram: &[u8], vni: u32) -> Result<&[u8], DecodeError> {
    if datagram.len() < HEADER + 14 {
        return Err(DecodeError::Short(datagram.len()));
    }
    if datagram[0] & 0x08 == 0 {
        return Err(DecodeError::NoVni);
    }
    let got = u32::from_be_bytes([0, datagram[4], datagram[5], datagram[6]]);
    if got != vni {
        return Err(DecodeError::OtherVni { got, want: vni });
    }
    Ok(&datagram[HEADER..])
}

/// A datagram of only a header for `vni`: vdeplug4's vxvde sends one when
/// it closes, so that its peers forget the MACs learned behind it.
pub fn is_goodbye(datagram: &[u8], vni: u32) -> bool {
    datagram.len() == HEADER
        && datagram[0] & 0x08 != 0
        && u32::from_be_bytes([0, datagram[4], datagram[5], datagram[6]]) == vni
}

/// `--vxlan vni=N,remote=IP[,remote=IP...][,group=MCAST][,local=IP][,port=P]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub vni: u32,
    /// Unicast peers (each gets flooded frames).
    pub remotes: Vec<SocketAddr>,
    /// A multicast group that gets flooded frames (and is joined).
    pub group: Option<IpAddr>,
    /// Address to bind (default: any).
    pub local: Option<IpAddr>,
    /// UDP port, ours and the peers' (default 4789).
    pub port: u16,
    /// Answer a learned VTEP at the UDP source port its datagrams came
    /// from (`reply=source`: vdeplug4's vxvde sends from, and listens for
    /// unicast on, an ephemeral port), instead of at `port` (`reply=port`,
    /// the default: RFC 7348 and Linux, which hash flows over source ports
    /// but listen on the VXLAN port only).
    pub reply_to_source: bool,
}

impl VxlanSpec {
    pub fn parse(s: &str) -> Result<VxlanSpec, String> {
        let mut vni = None;
        let mut remotes: Vec<IpAddr> = Vec::new();
        let (mut group, mut local, mut port) = (None, None, PORT);
        let mut reply_to_source = false;
        for kv in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("'{kv}': expected KEY=VALUE"))?;
            let ip = |v: &str| -> Result<IpAddr, String> {
                v.parse()
                    .map_err(|_| format!("{k}: '{v}' is not an IP address"))
            };
            match k {
                "vni" | "id" => {
                    let n: u32 = v
                        .parse()
                        .map_err(|_| format!("vni: '{v}' is not a number"))?;
                    if n > MAX_VNI {
                        return Err(format!("vni {n} is over {MAX_VNI} (24 bits)"));
                    }
                    vni = Some(n);
                }
                "remote" => remotes.push(ip(v)?),
                "group" => {
                    let g = ip(v)?;
                    if !g.is_multicast() {
                        return Err(format!("group: {g} is not a multicast address"));
                    }
                    group = Some(g);
                }
                "local" => local = Some(ip(v)?),
                "reply" => {
                    reply_to_source = match v {
                        "source" => true,
                        "port" => false,
                        _ => return Err(format!("reply: '{v}' is not 'port' or 'source'")),
                    }
                }
                "port" | "dstport" => {
                    port = v
                        .parse()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("port: '{v}' is not a UDP port"))?
                }
                _ => {
                    return Err(format!(
                        "unknown key '{k}' (vni, remote, group, local, port, reply)"
                    ))
                }
            }
        }
        let vni = vni.ok_or("vni=N is required")?;
        if remotes.is_empty() && group.is_none() {
            return Err("give at least one remote=IP or a group=MULTICAST".into());
        }
        for r in &remotes {
            if r.is_multicast() {
                return Err(format!("remote: {r} is multicast (use group=)"));
            }
        }
        Ok(VxlanSpec {
            vni,
            remotes: remotes
                .into_iter()
                .map(|r| SocketAddr::new(r, port))
                .collect(),
            group,
            local,
            port,
            reply_to_source,
        })
    }

    /// Where flooded frames go: every remote, and the group.
    pub fn flood_targets(&self) -> Vec<SocketAddr> {
        let mut v = self.remotes.clone();
        if let Some(g) = self.group {
            v.push(SocketAddr::new(g, self.port));
        }
        v
    }
}

/// Which remote VTEP a MAC lives behind, learned from received frames and
/// forgotten after `ttl` (time passed in, as in switch-core).
#[derive(Debug, Default)]
pub struct VtepTable {
    entries: std::collections::HashMap<[u8; 6], (SocketAddr, std::time::Duration)>,
    cap: usize,
}

impl VtepTable {
    pub fn new(cap: usize) -> VtepTable {
        VtepTable {
            entries: Default::default(),
            cap,
        }
    }

    /// A frame from `mac` came from `vtep` at `now`.
    pub fn learn(&mut self, mac: [u8; 6], vtep: SocketAddr, now: std::time::Duration) {
        if mac[0] & 1 != 0 {
            return;
        }
        if self.entries.len() >= self.cap && !self.entries.contains_key(&mac) {
            // full: forget the oldest
            if let Some(old) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(m, _)| *m)
            {
                self.entries.remove(&old);
            }
        }
        self.entries.insert(mac, (vtep, now));
    }

    /// The VTEP of a unicast `mac` seen within `ttl`, else `None` (flood).
    pub fn lookup(
        &self,
        mac: &[u8; 6],
        now: std::time::Duration,
        ttl: std::time::Duration,
    ) -> Option<SocketAddr> {
        if mac[0] & 1 != 0 {
            return None;
        }
        self.entries
            .get(mac)
            .filter(|(_, t)| now.saturating_sub(*t) < ttl)
            .map(|(a, _)| *a)
    }

    /// Forget every MAC learned behind `vtep` (it said goodbye); how many.
    pub fn forget_vtep(&mut self, vtep: SocketAddr) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, (a, _)| *a != vtep);
        before - self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn header_is_rfc7348() {
        assert_eq!(header(42), [0x08, 0, 0, 0, 0, 0, 42, 0]);
        assert_eq!(header(0x123456), [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        let mut d = header(7).to_vec();
        d.extend_from_slice(&[0xff; 14]);
        assert_eq!(decode(&d, 7), Ok(&[0xff; 14][..]));
        assert_eq!(
            decode(&d, 8),
            Err(DecodeError::OtherVni { got: 7, want: 8 })
        );
        d[0] = 0;
        assert_eq!(decode(&d, 7), Err(DecodeError::NoVni));
        assert_eq!(decode(&d[..20], 7), Err(DecodeError::Short(20)));
        assert!(is_goodbye(&header(7), 7));
        assert!(!is_goodbye(&header(7), 8));
        assert!(!is_goodbye(&d[..9], 7));
        assert!(!is_goodbye(&[0u8; 8], 0));
    }

    #[test]
    fn specs() {
        let s = VxlanSpec::parse("vni=42,remote=10.0.0.2,remote=10.0.0.3").unwrap();
        assert_eq!(s.vni, 42);
        assert_eq!(s.remotes.len(), 2);
        assert_eq!(s.remotes[0], "10.0.0.2:4789".parse().unwrap());
        let g = VxlanSpec::parse("vni=1,group=239.1.1.1,port=8472").unwrap();
        assert_eq!(g.flood_targets(), vec!["239.1.1.1:8472".parse().unwrap()]);
        assert!(!g.reply_to_source);
        let x = VxlanSpec::parse("vni=1,group=239.0.0.1,port=14789,reply=source").unwrap();
        assert!(x.reply_to_source);
        for bad in [
            "remote=10.0.0.2",
            "vni=16777216,remote=1.2.3.4",
            "vni=1",
            "vni=1,remote=239.1.1.1",
            "vni=1,group=10.0.0.1",
            "vni=1,remote=nothost",
            "vni=1,remote=1.2.3.4,port=0",
            "vni=1,remote=1.2.3.4,color=blue",
            "vni=1,remote=1.2.3.4,reply=sometimes",
        ] {
            assert!(VxlanSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vteps_learned_aged_and_bounded() {
        let a: SocketAddr = "10.0.0.2:4789".parse().unwrap();
        let b: SocketAddr = "10.0.0.3:4789".parse().unwrap();
        let mut t = VtepTable::new(2);
        let ttl = Duration::from_secs(300);
        t.learn([2, 0, 0, 0, 0, 1], a, Duration::from_secs(1));
        t.learn([0xff; 6], a, Duration::from_secs(1)); // never learned
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.lookup(&[2, 0, 0, 0, 0, 1], Duration::from_secs(2), ttl),
            Some(a)
        );
        assert_eq!(
            t.lookup(&[2, 0, 0, 0, 0, 1], Duration::from_secs(400), ttl),
            None
        );
        t.learn([2, 0, 0, 0, 0, 2], b, Duration::from_secs(3));
        t.learn([2, 0, 0, 0, 0, 3], b, Duration::from_secs(4));
        assert_eq!(t.len(), 2);
        // the oldest went
        assert_eq!(
            t.lookup(&[2, 0, 0, 0, 0, 1], Duration::from_secs(5), ttl),
            None
        );
        assert_eq!(t.lookup(&[0xff; 6], Duration::from_secs(5), ttl), None);
        // a goodbye from b forgets what was learned behind it
        assert_eq!(t.forget_vtep(b), 2);
        assert!(t.is_empty());
    }
}

//! Pure switching logic: ports, endpoints, MAC learning with aging, VLANs,
//! hub mode. Time is passed in; no I/O.
//!
//! The [`Switch`] is a state machine. The daemon tells it about endpoints
//! connecting ([`Switch::connect`]) and leaving ([`Switch::disconnect`]),
//! hands it each received frame with the current time
//! ([`Switch::handle_frame`]) and gets back forwarding [`Action`]s: which
//! endpoint gets the frame and whether an 802.1Q tag must be added or
//! stripped on the way out. [`Switch::gc`] expires learned addresses.
//!
//! Semantics follow vde_switch 2.3.2 (see docs/switch.md): ports 0..N-1,
//! auto allocation from port 1, a port persists (inactive) after its last
//! endpoint leaves, untagged VLAN per port (default 0), tagged trunks,
//! flooding within a VLAN, hub mode floods everything unchanged.
//!
//! [`emu`] is link emulation (delay, jitter, loss, duplication, corruption,
//! rate, queue, MTU) per port and direction, the same way: time passed in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use net_proto::eth::{Frame, FrameError, MacAddr};

pub mod emu;

/// An endpoint (one client connection). The daemon picks the numbers (it
/// uses the control connection's fd number, as vde_switch shows it).
pub type EndpointId = u32;
/// "No VLAN": a port with this untagged VLAN drops untagged frames.
pub const NOVLAN: u16 = 4095;
/// Highest VLAN tag that `vlan/create` accepts.
pub const MAX_VLAN: u16 = 4093;
/// Default number of ports.
pub const DEFAULT_NUMPORTS: u32 = 32;
/// Most ports a switch may have (`-n`, `port/setnumports`). Ports are
/// allocated when used, so the number only bounds the port numbers.
pub const MAX_NUMPORTS: u32 = 65536;
/// Learned addresses expire after this long without traffic.
pub const EXPIRE: Duration = Duration::from_secs(100);
/// How often [`Switch::gc`] should run.
pub const GC_INTERVAL: Duration = Duration::from_secs(2);
/// Most learned addresses kept (memory bound against MAC floods).
pub const MAX_MACS: usize = 65536;
/// Number of hash buckets shown by `hash/showinfo`.
pub const HASH_SIZE: u32 = 128;

/// Errors of port/VLAN operations; `errno()` gives the value the management
/// console reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("port {0} is out of range")]
    PortOutOfRange(u32),
    #[error("port {0} is in use by another user")]
    PortInUse(u32),
    #[error("no free port")]
    NoFreePort,
    #[error("no such port {0}")]
    NoSuchPort(u32),
    #[error("port {0} already exists")]
    PortExists(u32),
    #[error("port {0} is active")]
    PortActive(u32),
    #[error("invalid VLAN {0}")]
    BadVlan(u16),
    #[error("no such VLAN {0}")]
    NoSuchVlan(u16),
    #[error("VLAN {0} already exists")]
    VlanExists(u16),
    #[error("VLAN {0} still has ports")]
    VlanInUse(u16),
    #[error("invalid argument")]
    Invalid,
    #[error("{0} ports is more than the limit of {MAX_NUMPORTS}")]
    TooManyPorts(u32),
    #[error("no such endpoint {0}")]
    NoSuchEndpoint(EndpointId),
    #[error("endpoint {0} already connected")]
    EndpointExists(EndpointId),
    #[error("no such entry")]
    NoSuchEntry,
}

impl Error {
    /// The errno vde_switch's console answers with.
    pub fn errno(&self) -> i32 {
        match self {
            Error::PortOutOfRange(_)
            | Error::BadVlan(_)
            | Error::Invalid
            | Error::TooManyPorts(_) => 22,
            Error::PortInUse(_) | Error::PortActive(_) | Error::VlanInUse(_) => 98,
            Error::NoFreePort => 12,
            Error::NoSuchPort(_) | Error::NoSuchVlan(_) | Error::NoSuchEndpoint(_) => 6,
            Error::PortExists(_) | Error::VlanExists(_) | Error::EndpointExists(_) => 17,
            Error::NoSuchEntry => 2,
        }
    }
}

/// Traffic counters of a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub in_pkts: u64,
    pub in_bytes: u64,
    pub out_pkts: u64,
    pub out_bytes: u64,
    /// Frames received on the port and dropped (runt, giant, VLAN filter).
    pub in_drops: u64,
    /// Frames that could not be delivered to the port (peer buffer full, error).
    pub out_drops: u64,
}

/// A port.
#[derive(Debug, Clone)]
pub struct Port {
    /// Endpoints attached (empty = inactive).
    pub endpoints: Vec<EndpointId>,
    /// Untagged VLAN ([`NOVLAN`] = none).
    pub vlan: u16,
    /// Owner uid of the current endpoints (None = unknown, e.g. UML daemon).
    pub user: Option<u32>,
    /// Chosen by automatic allocation when inactive.
    pub allocatable: bool,
    pub counters: Counters,
}

impl Port {
    pub fn active(&self) -> bool {
        !self.endpoints.is_empty()
    }
}

/// An endpoint's record.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub port: u32,
    pub descr: String,
}

/// Which port a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRequest {
    /// Lowest free port from 1.
    Any,
    /// This port number.
    Number(u32),
    /// Port 0 (VDE REQ_NEW_PORT0).
    Port0,
}

/// How a frame leaves towards one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Unchanged.
    AsIs,
    /// Insert an 802.1Q tag with this VLAN id.
    Tag(u16),
    /// Remove the 802.1Q tag.
    Untag,
}

/// Send the frame to `to`, transformed by `egress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub to: EndpointId,
    pub egress: Egress,
}

/// Why a received frame was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Bad length.
    Frame(FrameError),
    /// From an endpoint the switch does not know.
    UnknownEndpoint,
    /// Tagged for a VLAN the port is not a tagged member of, or untagged
    /// on a port without untagged VLAN.
    VlanFilter,
    /// Destination learned on the ingress port.
    SamePort,
    /// Of type 802.1Q but too short to hold the tag and the inner type
    /// (under 18 bytes): it could not be untagged, so it goes nowhere.
    TaggedRunt,
}

/// What happened to one received frame (the actions are in the caller's vec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded (flooded or unicast) to this many endpoints; a learned
    /// address that moved between ports is reported for logging.
    Forwarded {
        flooded: bool,
        moved: Option<Moved>,
    },
    Dropped(Drop),
}

/// A MAC address seen on a new port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub mac: MacAddr,
    pub vlan: u16,
    pub from: u32,
    pub to: u32,
}

/// A learned address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacEntry {
    pub mac: MacAddr,
    pub vlan: u16,
    pub port: u32,
    pub last_seen: Duration,
}

impl MacEntry {
    /// The bucket number shown by `hash/print` (our own hash, 0..128).
    pub fn bucket(&self) -> u32 {
        let mut h = Fnv::default();
        h.write(&self.mac.0);
        h.write_u16(self.vlan);
        (h.finish() % HASH_SIZE as u64) as u32
    }
}

/// FNV-1a: fast for the 8-byte keys of the MAC table.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// Switch configuration at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub numports: u32,
    pub hub: bool,
    /// Largest untagged frame forwarded (802.1Q tagged: 4 more); bigger
    /// ones are dropped and counted. [`net_proto::eth::MAX_FRAME`] (MTU
    /// 1500) as vde_switch, up to [`net_proto::eth::max_frame_for_mtu`] of
    /// [`net_proto::eth::MAX_MTU`] for jumbo frames.
    pub max_frame: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            numports: DEFAULT_NUMPORTS,
            hub: false,
            max_frame: net_proto::eth::MAX_FRAME,
        }
    }
}

/// The switching fabric.
#[derive(Debug)]
pub struct Switch {
    numports: u32,
    hub: bool,
    max_frame: usize,
    /// Existing ports only (allocated when created or connected).
    ports: BTreeMap<u32, Port>,
    endpoints: Vec<Option<Endpoint>>,
    /// VLAN id -> tagged member ports. VLAN 0 always exists.
    vlans: BTreeMap<u16, BTreeSet<u32>>,
    table: FnvMap<(u16, MacAddr), (u32, Duration)>,
    last_gc: Duration,
    /// Frames dropped because the MAC table was full (not learned).
    pub table_full: u64,
}

impl Switch {
    /// A switch with `cfg.numports` ports, clamped to 1..=[`MAX_NUMPORTS`]
    /// (the daemon checks the user's value first).
    pub fn new(cfg: Config) -> Switch {
        let numports = cfg.numports.clamp(1, MAX_NUMPORTS);
        let mut vlans = BTreeMap::new();
        vlans.insert(0, BTreeSet::new());
        Switch {
            numports,
            hub: cfg.hub,
            max_frame: cfg.max_frame.clamp(
                net_proto::eth::MAX_FRAME,
                net_proto::eth::max_frame_for_mtu(net_proto::eth::MAX_MTU),
            ),
            ports: BTreeMap::new(),
            endpoints: Vec::new(),
            vlans,
            table: FnvMap::default(),
            last_gc: Duration::ZERO,
            table_full: 0,
        }
    }

    pub fn numports(&self) -> u32 {
        self.numports
    }

    pub fn hub(&self) -> bool {
        self.hub
    }

    pub fn set_hub(&mut self, hub: bool) {
        self.hub = hub;
        if hub {
            self.table.clear();
        }
    }

    pub fn port(&self, n: u32) -> Option<&Port> {
        self.ports.get(&n)
    }

    /// All existing ports (active or not) with their numbers.
    pub fn ports(&self) -> impl Iterator<Item = (u32, &Port)> {
        self.ports.iter().map(|(&n, p)| (n, p))
    }

    pub fn endpoint(&self, ep: EndpointId) -> Option<&Endpoint> {
        self.endpoints.get(ep as usize).and_then(Option::as_ref)
    }

    /// Attach endpoint `ep` (owned by `user`, None = unknown) to a port.
    pub fn connect(
        &mut self,
        ep: EndpointId,
        req: PortRequest,
        user: Option<u32>,
        descr: &str,
    ) -> Result<u32, Error> {
        if self.endpoint(ep).is_some() {
            return Err(Error::EndpointExists(ep));
        }
        let n = match req {
            PortRequest::Port0 => 0,
            PortRequest::Number(n) => n,
            PortRequest::Any => (1..self.numports)
                .find(|&p| match self.port(p) {
                    None => true,
                    Some(port) => !port.active() && port.allocatable,
                })
                .ok_or(Error::NoFreePort)?,
        };
        if n >= self.numports {
            return Err(Error::PortOutOfRange(n));
        }
        match self.ports.get_mut(&n) {
            Some(port) if port.active() => {
                let root = user == Some(0);
                if !root && port.user != user {
                    return Err(Error::PortInUse(n));
                }
                port.endpoints.push(ep);
            }
            Some(port) => {
                port.endpoints.push(ep);
                port.user = user;
            }
            None => {
                self.ports.insert(
                    n,
                    Port {
                        endpoints: vec![ep],
                        vlan: 0,
                        user,
                        allocatable: true,
                        counters: Counters::default(),
                    },
                );
            }
        }
        let idx = ep as usize;
        if self.endpoints.len() <= idx {
            self.endpoints.resize(idx + 1, None);
        }
        self.endpoints[idx] = Some(Endpoint {
            port: n,
            descr: descr.to_string(),
        });
        Ok(n)
    }

    /// Detach an endpoint. When its port has no endpoint left, the port
    /// becomes inactive (it keeps its VLAN settings) and its learned
    /// addresses are forgotten. Returns the port number.
    pub fn disconnect(&mut self, ep: EndpointId) -> Result<u32, Error> {
        let e = self
            .endpoints
            .get_mut(ep as usize)
            .and_then(Option::take)
            .ok_or(Error::NoSuchEndpoint(ep))?;
        if let Some(port) = self.ports.get_mut(&e.port) {
            port.endpoints.retain(|&x| x != ep);
            if !port.active() {
                port.user = None;
                let p = e.port;
                self.table.retain(|_, v| v.0 != p);
            }
        }
        Ok(e.port)
    }

    fn member_egress(&self, q: u32, port: &Port, vlan: u16, tagged_in: bool) -> Option<Egress> {
        let tagged_out = if port.vlan == vlan {
            false
        } else if self.vlans.get(&vlan).is_some_and(|t| t.contains(&q)) {
            true
        } else {
            return None;
        };
        Some(match (tagged_in, tagged_out) {
            (false, false) | (true, true) => Egress::AsIs,
            (false, true) => Egress::Tag(vlan),
            (true, false) => Egress::Untag,
        })
    }

    fn push_port(out: &mut Vec<Action>, port: &Port, egress: Egress) {
        for &to in &port.endpoints {
            out.push(Action { to, egress });
        }
    }

    /// Process one frame received from endpoint `from` at time `now`.
    /// Forwarding actions are appended to `out` (not cleared).
    pub fn handle_frame(
        &mut self,
        now: Duration,
        from: EndpointId,
        bytes: &[u8],
        out: &mut Vec<Action>,
    ) -> Outcome {
        let Some(p) = self.endpoint(from).map(|e| e.port) else {
            return Outcome::Dropped(Drop::UnknownEndpoint);
        };
        let frame = match Frame::new_checked_max(bytes, self.max_frame) {
            Ok(f) => f,
            Err(e) => {
                if let Some(port) = self.ports.get_mut(&p) {
                    port.counters.in_drops += 1;
                }
                return Outcome::Dropped(Drop::Frame(e));
            }
        };
        let Some(inport) = self.ports.get_mut(&p) else {
            return Outcome::Dropped(Drop::UnknownEndpoint);
        };
        inport.counters.in_pkts += 1;
        inport.counters.in_bytes += bytes.len() as u64;
        let in_vlan_untagged = inport.vlan;

        if self.hub {
            for (&q, port) in &self.ports {
                if q != p {
                    Self::push_port(out, port, Egress::AsIs);
                }
            }
            return Outcome::Forwarded {
                flooded: true,
                moved: None,
            };
        }

        if frame.ethertype() == net_proto::eth::ETHERTYPE_VLAN
            && bytes.len() < net_proto::eth::HEADER_LEN + net_proto::eth::TAG_LEN
        {
            self.count_in_drop(p);
            return Outcome::Dropped(Drop::TaggedRunt);
        }
        let (vlan, tagged_in) = match frame.vlan() {
            Some(v) => {
                if !self.vlans.get(&v).is_some_and(|t| t.contains(&p)) {
                    self.count_in_drop(p);
                    return Outcome::Dropped(Drop::VlanFilter);
                }
                (v, true)
            }
            None => {
                if in_vlan_untagged == NOVLAN || !self.vlans.contains_key(&in_vlan_untagged) {
                    self.count_in_drop(p);
                    return Outcome::Dropped(Drop::VlanFilter);
                }
                (in_vlan_untagged, false)
            }
        };

        // learn
        let src = frame.src();
        let mut moved = None;
        if !src.is_multicast() {
            match self.table.get_mut(&(vlan, src)) {
                Some(entry) => {
                    if entry.0 != p {
                        moved = Some(Moved {
                            mac: src,
                            vlan,
                            from: entry.0,
                            to: p,
                        });
                        entry.0 = p;
                    }
                    entry.1 = now;
                }
                None => {
                    if self.table.len() < MAX_MACS {
                        self.table.insert((vlan, src), (p, now));
                    } else {
                        self.table_full += 1;
                    }
                }
            }
        }

        let dst = frame.dst();
        let target = if dst.is_multicast() {
            None
        } else {
            self.table.get(&(vlan, dst)).map(|e| e.0)
        };
        match target {
            Some(q) if q == p => Outcome::Dropped(Drop::SamePort),
            Some(q) => {
                if let Some(port) = self.ports.get(&q) {
                    if let Some(eg) = self.member_egress(q, port, vlan, tagged_in) {
                        Self::push_port(out, port, eg);
                    }
                }
                Outcome::Forwarded {
                    flooded: false,
                    moved,
                }
            }
            None => {
                for (&q, port) in &self.ports {
                    if q == p || !port.active() {
                        continue;
                    }
                    if let Some(eg) = self.member_egress(q, port, vlan, tagged_in) {
                        Self::push_port(out, port, eg);
                    }
                }
                Outcome::Forwarded {
                    flooded: true,
                    moved,
                }
            }
        }
    }

    fn count_in_drop(&mut self, p: u32) {
        if let Some(port) = self.ports.get_mut(&p) {
            port.counters.in_drops += 1;
        }
    }

    /// Record the result of sending `len` bytes to endpoint `to`.
    pub fn record_tx(&mut self, to: EndpointId, len: usize, delivered: bool) {
        let Some(p) = self.endpoint(to).map(|e| e.port) else {
            return;
        };
        if let Some(port) = self.ports.get_mut(&p) {
            if delivered {
                port.counters.out_pkts += 1;
                port.counters.out_bytes += len as u64;
            } else {
                port.counters.out_drops += 1;
            }
        }
    }

    /// Record a frame dropped on reception from `from` before it reached
    /// [`Switch::handle_frame`] (e.g. truncated by the socket).
    pub fn record_rx_drop(&mut self, from: EndpointId) {
        if let Some(p) = self.endpoint(from).map(|e| e.port) {
            self.count_in_drop(p);
        }
    }

    /// Expire addresses not seen for [`EXPIRE`]. Returns how many went.
    pub fn gc(&mut self, now: Duration) -> usize {
        self.last_gc = now;
        let before = self.table.len();
        self.table.retain(|_, v| now.saturating_sub(v.1) <= EXPIRE);
        before - self.table.len()
    }

    /// When [`Switch::gc`] should run next.
    pub fn next_deadline(&self) -> Duration {
        self.last_gc + GC_INTERVAL
    }

    /// The learned addresses, sorted by bucket, VLAN and MAC.
    pub fn mac_entries(&self) -> Vec<MacEntry> {
        let mut v: Vec<MacEntry> = self
            .table
            .iter()
            .map(|(&(vlan, mac), &(port, last_seen))| MacEntry {
                mac,
                vlan,
                port,
                last_seen,
            })
            .collect();
        v.sort_by_key(|e| (e.bucket(), e.vlan, e.mac));
        v
    }

    /// Where `mac` was learned in `vlan`.
    pub fn lookup(&self, mac: MacAddr, vlan: u16) -> Option<u32> {
        self.table.get(&(vlan, mac)).map(|e| e.0)
    }

    /// Forget `mac` (in `vlan`, or in every VLAN when None).
    pub fn delete_mac(&mut self, mac: MacAddr, vlan: Option<u16>) -> Result<(), Error> {
        let before = self.table.len();
        self.table
            .retain(|&(v, m), _| !(m == mac && vlan.is_none_or(|x| x == v)));
        if self.table.len() == before {
            Err(Error::NoSuchEntry)
        } else {
            Ok(())
        }
    }

    pub fn set_numports(&mut self, n: u32) -> Result<(), Error> {
        if n == 0 {
            return Err(Error::Invalid);
        }
        if n > MAX_NUMPORTS {
            return Err(Error::TooManyPorts(n));
        }
        if let Some((q, _)) = self.ports().find(|(q, _)| *q >= n) {
            return Err(Error::PortActive(q));
        }
        for t in self.vlans.values_mut() {
            t.retain(|&q| q < n);
        }
        self.table.retain(|_, v| v.0 < n);
        self.numports = n;
        Ok(())
    }

    /// port/create: an inactive, not allocatable port.
    pub fn create_port(&mut self, n: u32) -> Result<(), Error> {
        if n >= self.numports {
            return Err(Error::PortOutOfRange(n));
        }
        if self.port(n).is_some() {
            return Err(Error::PortExists(n));
        }
        self.ports.insert(
            n,
            Port {
                endpoints: Vec::new(),
                vlan: 0,
                user: None,
                allocatable: false,
                counters: Counters::default(),
            },
        );
        Ok(())
    }

    /// port/createauto: the lowest free port from 1.
    pub fn create_port_auto(&mut self) -> Result<u32, Error> {
        let n = (1..self.numports)
            .find(|&p| self.port(p).is_none())
            .ok_or(Error::NoFreePort)?;
        self.create_port(n)?;
        Ok(n)
    }

    pub fn remove_port(&mut self, n: u32) -> Result<(), Error> {
        if n >= self.numports {
            return Err(Error::PortOutOfRange(n));
        }
        match self.port(n) {
            None => Err(Error::NoSuchPort(n)),
            Some(p) if p.active() => Err(Error::PortActive(n)),
            Some(_) => {
                self.ports.remove(&n);
                for t in self.vlans.values_mut() {
                    t.remove(&n);
                }
                Ok(())
            }
        }
    }

    pub fn reset_counters(&mut self, n: Option<u32>) -> Result<(), Error> {
        match n {
            None => {
                for p in self.ports.values_mut() {
                    p.counters = Counters::default();
                }
                Ok(())
            }
            Some(n) => {
                // vde_switch answers Success for a port that does not exist
                if n >= self.numports {
                    return Err(Error::PortOutOfRange(n));
                }
                if let Some(p) = self.ports.get_mut(&n) {
                    p.counters = Counters::default();
                }
                Ok(())
            }
        }
    }

    /// port/setvlan: the untagged VLAN of a port.
    pub fn set_port_vlan(&mut self, n: u32, vlan: u16) -> Result<(), Error> {
        if n >= self.numports {
            return Err(Error::PortOutOfRange(n));
        }
        if vlan != NOVLAN && !self.vlans.contains_key(&vlan) {
            return Err(Error::NoSuchVlan(vlan));
        }
        let port = self.ports.get_mut(&n).ok_or(Error::NoSuchPort(n))?;
        port.vlan = vlan;
        if let Some(t) = self.vlans.get_mut(&vlan) {
            t.remove(&n);
        }
        self.table.retain(|_, v| v.0 != n);
        Ok(())
    }

    pub fn create_vlan(&mut self, vlan: u16) -> Result<(), Error> {
        if vlan == 0 || vlan > MAX_VLAN {
            return Err(Error::BadVlan(vlan));
        }
        if self.vlans.contains_key(&vlan) {
            return Err(Error::VlanExists(vlan));
        }
        self.vlans.insert(vlan, BTreeSet::new());
        Ok(())
    }

    pub fn remove_vlan(&mut self, vlan: u16) -> Result<(), Error> {
        if vlan > MAX_VLAN {
            return Err(Error::BadVlan(vlan));
        }
        let tagged = self.vlans.get(&vlan).ok_or(Error::NoSuchVlan(vlan))?;
        if vlan == 0 || !tagged.is_empty() || self.ports().any(|(_, p)| p.vlan == vlan) {
            return Err(Error::VlanInUse(vlan));
        }
        self.vlans.remove(&vlan);
        self.table.retain(|k, _| k.0 != vlan);
        Ok(())
    }

    /// vlan/addport: make a port a tagged member.
    pub fn vlan_add_port(&mut self, vlan: u16, n: u32) -> Result<(), Error> {
        if n >= self.numports {
            return Err(Error::PortOutOfRange(n));
        }
        if self.port(n).is_none() {
            return Err(Error::NoSuchPort(n));
        }
        let t = self.vlans.get_mut(&vlan).ok_or(Error::NoSuchVlan(vlan))?;
        if !t.insert(n) {
            return Err(Error::PortExists(n));
        }
        Ok(())
    }

    pub fn vlan_del_port(&mut self, vlan: u16, n: u32) -> Result<(), Error> {
        if self.port(n).is_some_and(|p| p.vlan == vlan) {
            // the port's untagged VLAN: use port/setvlan instead
            return Err(Error::PortActive(n));
        }
        let t = self.vlans.get_mut(&vlan).ok_or(Error::NoSuchVlan(vlan))?;
        if !t.remove(&n) {
            return Err(Error::NoSuchPort(n));
        }
        self.table.retain(|k, v| !(k.0 == vlan && v.0 == n));
        Ok(())
    }

    /// Defined VLAN ids.
    pub fn vlans(&self) -> impl Iterator<Item = u16> + '_ {
        self.vlans.keys().copied()
    }

    pub fn vlan_exists(&self, vlan: u16) -> bool {
        self.vlans.contains_key(&vlan)
    }

    /// Members of a VLAN in port order: (port, tagged, active).
    pub fn vlan_members(&self, vlan: u16) -> Vec<(u32, bool, bool)> {
        let Some(t) = self.vlans.get(&vlan) else {
            return Vec::new();
        };
        self.ports()
            .filter_map(|(q, p)| {
                if p.vlan == vlan {
                    Some((q, false, p.active()))
                } else if t.contains(&q) {
                    Some((q, true, p.active()))
                } else {
                    None
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;

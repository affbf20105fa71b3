//! Link emulation: one direction of one port's link, as a state machine.
//! Time is passed in; no I/O, no clock.
//!
//! The daemon keeps one [`Link`] per port and direction. For each frame it
//! calls [`Link::offer`] with the current time:
//!
//! - [`Verdict::Pass`]: send the caller's frame now, unchanged (the neutral
//!   link and any frame nothing happens to take this path: no copy, no
//!   queue);
//! - [`Verdict::Held`]: the link keeps a copy; it comes out of
//!   [`Link::poll`] when due;
//! - [`Verdict::Dropped`]: lost, too long, or no room (counted).
//!
//! Duplicates are always held, so after an offer check
//! [`Link::next_deadline`] and [`Link::poll`] when it is reached.
//!
//! Per frame, in this order: MTU check (Ethernet payload, the frame without
//! its 14-byte header and 802.1Q tag), loss (random or Gilbert-Elliott as
//! netem's `gemodel`: loss decided by the current state, then the state
//! moves), duplication (one extra copy), then for each copy: corruption
//! (exactly one random bit flipped), the queue bound (bytes held by the
//! link, delay line and bottleneck together, like wirefilter's channel
//! buffer), the bottleneck (a frame leaves when its last bit has crossed at
//! `rate`, frames queue behind each other), then delay ± jitter. Without
//! `reorder` a copy never leaves before the one offered before it.
//!
//! [`Link::set_spec`] changes the settings at run time and keeps what is
//! held: queued frames leave at the times already given to them.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;
use std::time::Duration;

use net_proto::eth::{ETHERTYPE_VLAN, HEADER_LEN, TAG_LEN};
use net_proto::link::{Dist, LinkDir, LinkSpec, LossModel, Prob, PPB_ONE};

/// Bytes a link holds when the spec sets no `queue` (about netem's default
/// of 1000 packets of 1 KiB).
pub const DEFAULT_QUEUE: u64 = 1 << 20;

/// Why [`Link::offer`] dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Payload longer than the MTU.
    Mtu,
    /// Random or burst loss.
    Loss,
    /// The link held its `queue` bytes already.
    Queue,
}

/// What happened to an offered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the caller's frame now, unchanged.
    Pass,
    /// A copy is held; it leaves through [`Link::poll`].
    Held,
    Dropped(DropReason),
}

/// Counters of one link direction. Always
/// `offered + duplicated == passed + dropped_mtu + dropped_loss + dropped_queue + held`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames given to [`Link::offer`].
    pub offered: u64,
    /// Copies that left (fast path or [`Link::poll`]).
    pub passed: u64,
    pub dropped_loss: u64,
    pub dropped_queue: u64,
    pub dropped_mtu: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Copies with a flipped bit.
    pub corrupted: u64,
    /// Copies that went through the queue (not the fast path).
    pub delayed: u64,
}

/// A frame released by [`Link::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// Index of the original offer (0 for the first frame ever offered);
    /// a duplicate has the index of its original.
    pub offer: u64,
    /// The caller's tag given to [`Link::offer_tagged`] (e.g. the source or
    /// destination endpoint), 0 for [`Link::offer`].
    pub tag: u32,
    /// When it was due (≤ the `now` of the poll).
    pub due: Duration,
    pub frame: Vec<u8>,
}

#[derive(Debug)]
struct Held {
    due: Duration,
    order: u64,
    offer: u64,
    tag: u32,
    frame: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, o: &Held) -> bool {
        (self.due, self.order) == (o.due, o.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Held) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Held) -> Ordering {
        (self.due, self.order).cmp(&(o.due, o.order))
    }
}

/// xoshiro256** seeded with splitmix64: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let r = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: Prob) -> bool {
        match p.ppb() {
            0 => false,
            PPB_ONE => true,
            ppb => self.below(PPB_ONE as u64) < ppb as u64,
        }
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// One direction of a port's link.
#[derive(Debug)]
pub struct Link {
    spec: LinkSpec,
    loss: LossModel,
    neutral: bool,
    /// Gilbert-Elliott state: true = bad.
    bad: bool,
    rng: Rng,
    heap: BinaryHeap<Reverse<Held>>,
    held_bytes: u64,
    /// When the bottleneck finishes sending what it has.
    busy_until: Duration,
    /// Latest due time given (FIFO without `reorder`).
    last_due: Duration,
    order: u64,
    counters: LinkCounters,
}

impl Link {
    /// A link with these settings; `seed` makes every random choice
    /// reproducible.
    pub fn new(spec: LinkSpec, seed: u64) -> Link {
        Link {
            loss: spec.loss_model(),
            neutral: spec.is_neutral(),
            spec,
            bad: false,
            rng: Rng::new(seed),
            heap: BinaryHeap::new(),
            held_bytes: 0,
            busy_until: Duration::ZERO,
            last_due: Duration::ZERO,
            order: 0,
            counters: LinkCounters::default(),
        }
    }

    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    /// Change the settings; frames held keep their times. A new loss model
    /// starts in the good state.
    pub fn set_spec(&mut self, spec: LinkSpec) {
        let loss = spec.loss_model();
        if loss != self.loss {
            self.bad = false;
        }
        self.loss = loss;
        self.neutral = spec.is_neutral();
        self.spec = spec;
    }

    pub fn counters(&self) -> &LinkCounters {
        &self.counters
    }

    pub fn reset_counters(&mut self) {
        self.counters = LinkCounters::default();
    }

    /// Frames held now.
    pub fn held(&self) -> usize {
        self.heap.len()
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// The most bytes the link may hold.
    pub fn queue_bound(&self) -> u64 {
        self.spec.queue.unwrap_or(DEFAULT_QUEUE)
    }

    /// When the next held frame is due (None = nothing held).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.heap.peek().map(|h| h.0.due)
    }

    /// Offer a frame at time `now`.
    pub fn offer(&mut self, now: Duration, frame: &[u8]) -> Verdict {
        self.offer_tagged(now, 0, frame)
    }

    /// Offer a frame at time `now`; `tag` comes back in [`Released::tag`].
    pub fn offer_tagged(&mut self, now: Duration, tag: u32, frame: &[u8]) -> Verdict {
        let offer = self.counters.offered;
        self.counters.offered += 1;
        if self.neutral && self.heap.is_empty() {
            self.counters.passed += 1;
            return Verdict::Pass;
        }
        if let Some(mtu) = self.spec.mtu {
            if payload_len(frame) > mtu as usize {
                self.counters.dropped_mtu += 1;
                return Verdict::Dropped(DropReason::Mtu);
            }
        }
        if self.lose() {
            self.counters.dropped_loss += 1;
            return Verdict::Dropped(DropReason::Loss);
        }
        let dup = self.rng.chance(self.spec.dup);
        let first = self.copy(now, frame, (offer, tag), true);
        if dup {
            self.counters.duplicated += 1;
            let second = self.copy(now, frame, (offer, tag), false);
            if matches!(first, Verdict::Dropped(_)) && second == Verdict::Held {
                return Verdict::Held;
            }
        }
        first
    }

    /// Decide the loss of one frame and move the loss model.
    fn lose(&mut self) -> bool {
        match self.loss {
            LossModel::None => false,
            LossModel::Random(p) => self.rng.chance(p),
            LossModel::Gilbert(g) => {
                let (lost, leave) = if self.bad {
                    (self.rng.chance(g.h1), self.rng.chance(g.r))
                } else {
                    (self.rng.chance(g.k1), self.rng.chance(g.p))
                };
                if leave {
                    self.bad = !self.bad;
                }
                lost
            }
        }
    }

    /// One copy: corrupt, check room, schedule. `may_pass`: the caller's
    /// buffer can be sent as is if nothing changes and nothing waits.
    fn copy(&mut self, now: Duration, frame: &[u8], id: (u64, u32), may_pass: bool) -> Verdict {
        let flip = if !frame.is_empty() && self.rng.chance(self.spec.corrupt) {
            Some(self.rng.below(frame.len() as u64 * 8) as usize)
        } else {
            None
        };
        let len = frame.len() as u64;
        if self.held_bytes + len > self.queue_bound() {
            self.counters.dropped_queue += 1;
            return Verdict::Dropped(DropReason::Queue);
        }
        let sent = match self.spec.rate {
            Some(rate) => {
                let start = now.max(self.busy_until);
                let ns = (len as u128 * 8 * 1_000_000_000).div_ceil(rate as u128);
                self.busy_until = start + Duration::from_nanos(ns as u64);
                self.busy_until
            }
            None => now,
        };
        let mut due = sent + self.delay_sample();
        if !self.spec.reorder {
            due = due.max(self.last_due);
        }
        self.last_due = self.last_due.max(due);
        if flip.is_some() {
            self.counters.corrupted += 1;
        }
        if may_pass && flip.is_none() && due <= now && self.heap.is_empty() {
            self.counters.passed += 1;
            return Verdict::Pass;
        }
        let mut copy = frame.to_vec();
        if let Some(bit) = flip {
            copy[bit / 8] ^= 1 << (bit % 8);
        }
        self.held_bytes += len;
        self.counters.delayed += 1;
        self.heap.push(Reverse(Held {
            due,
            order: self.order,
            offer: id.0,
            tag: id.1,
            frame: copy,
        }));
        self.order += 1;
        Verdict::Held
    }

    /// delay ± jitter, never below zero.
    fn delay_sample(&mut self) -> Duration {
        let d = self.spec.delay.as_nanos() as i128;
        let j = self.spec.jitter.as_nanos() as i128;
        if j == 0 {
            return self.spec.delay;
        }
        let v = match self.spec.dist {
            Dist::Uniform => d - j + self.rng.below(2 * j as u64 + 1) as i128,
            Dist::Normal => d + (self.rng.normal() * j as f64) as i128,
        };
        Duration::from_nanos(v.clamp(0, u64::MAX as i128) as u64)
    }

    /// Move every frame due at `now` to `out` (appended, in due order).
    /// Returns how many.
    pub fn poll(&mut self, now: Duration, out: &mut Vec<Released>) -> usize {
        let mut n = 0;
        while self.heap.peek().is_some_and(|h| h.0.due <= now) {
            let Some(Reverse(h)) = self.heap.pop() else {
                break;
            };
            self.held_bytes -= h.frame.len() as u64;
            self.counters.passed += 1;
            out.push(Released {
                offer: h.offer,
                tag: h.tag,
                due: h.due,
                frame: h.frame,
            });
            n += 1;
        }
        n
    }
}

/// One direction of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// Frames the port's machine sends into the switch.
    In,
    /// Frames the switch sends to the port.
    Out,
}

impl Side {
    /// The sides a console/CLI direction names.
    pub fn of(dir: LinkDir) -> &'static [Side] {
        match dir {
            LinkDir::In => &[Side::In],
            LinkDir::Out => &[Side::Out],
            LinkDir::Both => &[Side::In, Side::Out],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Side::In => "in",
            Side::Out => "out",
        }
    }
}

/// Both directions of one port.
#[derive(Debug)]
pub struct PortLinks {
    pub inbound: Link,
    pub outbound: Link,
}

impl PortLinks {
    pub fn side(&self, side: Side) -> &Link {
        match side {
            Side::In => &self.inbound,
            Side::Out => &self.outbound,
        }
    }

    pub fn side_mut(&mut self, side: Side) -> &mut Link {
        match side {
            Side::In => &mut self.inbound,
            Side::Out => &mut self.outbound,
        }
    }
}

/// The links of a switch's ports. A port without an entry has no
/// emulation at all ([`LinkTable::link_mut`] returns None: forward as
/// usual).
#[derive(Debug, Default)]
pub struct LinkTable {
    seed: u64,
    ports: BTreeMap<u32, PortLinks>,
}

impl LinkTable {
    /// `seed` derives a different, reproducible random stream per port and
    /// direction.
    pub fn new(seed: u64) -> LinkTable {
        LinkTable {
            seed,
            ports: BTreeMap::new(),
        }
    }

    fn seed_for(&self, port: u32, side: Side) -> u64 {
        Rng::new(self.seed ^ ((port as u64) << 1 | side as u64)).next_u64()
    }

    /// Set the impairments of `port` in `dir`; frames held are kept.
    pub fn set(&mut self, port: u32, dir: LinkDir, spec: LinkSpec) {
        if !self.ports.contains_key(&port) {
            let links = PortLinks {
                inbound: Link::new(LinkSpec::none(), self.seed_for(port, Side::In)),
                outbound: Link::new(LinkSpec::none(), self.seed_for(port, Side::Out)),
            };
            self.ports.insert(port, links);
        }
        if let Some(p) = self.ports.get_mut(&port) {
            for &side in Side::of(dir) {
                p.side_mut(side).set_spec(spec);
            }
        }
    }

    /// Back to the neutral link in `dir` (held frames still leave).
    pub fn clear(&mut self, port: u32, dir: LinkDir) {
        if self.ports.contains_key(&port) {
            self.set(port, dir, LinkSpec::none());
        }
    }

    /// Forget a port (removed from the switch): its held frames go.
    pub fn remove_port(&mut self, port: u32) -> Option<PortLinks> {
        self.ports.remove(&port)
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    pub fn get(&self, port: u32) -> Option<&PortLinks> {
        self.ports.get(&port)
    }

    /// The link a frame of `port` crosses on `side`; None = no emulation.
    pub fn link_mut(&mut self, port: u32, side: Side) -> Option<&mut Link> {
        self.ports.get_mut(&port).map(|p| p.side_mut(side))
    }

    pub fn ports(&self) -> impl Iterator<Item = (u32, &PortLinks)> {
        self.ports.iter().map(|(&n, p)| (n, p))
    }

    /// The earliest frame due on any link.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.ports
            .values()
            .flat_map(|p| [p.inbound.next_deadline(), p.outbound.next_deadline()])
            .flatten()
            .min()
    }

    /// Release every frame due at `now`: (port, side, frame), appended.
    pub fn poll(&mut self, now: Duration, out: &mut Vec<(u32, Side, Released)>) {
        let mut tmp = Vec::new();
        for (&port, p) in self.ports.iter_mut() {
            for side in [Side::In, Side::Out] {
                tmp.clear();
                p.side_mut(side).poll(now, &mut tmp);
                out.extend(tmp.drain(..).map(|r| (port, side, r)));
            }
        }
    }

    /// The `link/show [N]` text: per port and direction, the settings and
    /// the counters. None if `port` has no entry.
    pub fn show(&self, port: Option<u32>) -> Option<String> {
        let mut out = String::new();
        for (n, p) in self.ports() {
            if port.is_some_and(|q| q != n) {
                continue;
            }
            for side in [Side::In, Side::Out] {
                let l = p.side(side);
                let c = l.counters();
                let _ = writeln!(out, "Port {:04} {:<3} {}", n, side.name(), l.spec());
                let _ = writeln!(
                    out,
                    " offered {} passed {} lost {} queue-drop {} mtu-drop {} duplicated {} corrupted {} delayed {} held {} frames {} bytes",
                    c.offered,
                    c.passed,
                    c.dropped_loss,
                    c.dropped_queue,
                    c.dropped_mtu,
                    c.duplicated,
                    c.corrupted,
                    c.delayed,
                    l.held(),
                    l.held_bytes()
                );
            }
        }
        if port.is_some() && out.is_empty() {
            return None;
        }
        Some(out)
    }
}

/// Ethernet payload length (the frame without header and 802.1Q tag).
fn payload_len(frame: &[u8]) -> usize {
    let tagged = frame.len() >= HEADER_LEN && frame[12..14] == ETHERTYPE_VLAN.to_be_bytes();
    let hdr = if tagged {
        HEADER_LEN + TAG_LEN
    } else {
        HEADER_LEN
    };
    frame.len().saturating_sub(hdr)
}

#[cfg(test)]
mod tests;

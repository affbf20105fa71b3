//! The data path: frames in (per-port VDE sockets, the shared uml_switch
//! socket) through link emulation, capture taps and the pure
//! [`switch_core::Switch`], VLAN tag rewriting, frames out in batches,
//! with flow control ([`super::flowio`]) for full destinations.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use net_proto::capture::CapDir;
use net_proto::ctl::SockAddrUn;
use net_proto::eth;
use switch_core::emu::{Released, Side, Verdict};
use switch_core::{Action, Egress, EndpointId, Outcome};
use umlkit_sys::net::{self as sys, RecvBatch, TimerFd};

use super::handshake::Peer;
use super::Server;
use crate::Flavor;

/// Receive slot size: the largest jumbo frame, tagged
/// (`max_frame_for_mtu(MAX_MTU)` + 4), fits; anything longer is flagged
/// truncated and dropped. The switch's MTU decides what it forwards.
pub(super) const SLOT: usize = 9248;
/// Frames per recvmmsg.
pub(super) const BATCH: usize = 64;
/// Batches read from one socket before returning to epoll (fairness).
const BUDGET: usize = 8;

/// Where frames for an endpoint go.
pub(super) enum Sink {
    /// VDE: own datagram socket connected to the client, bound to `path`.
    Own { sock: OwnedFd, path: PathBuf },
    /// uml_switch: the shared socket `via` (0 abstract, 1 v0 named), to `addr`.
    Shared { addr: SockAddrUn, via: u32 },
}

pub(super) struct EpIo {
    pub sink: Sink,
    pub module: &'static str,
}

/// One pending output frame: destination and where its bytes are.
#[derive(Clone, Copy)]
pub(super) struct Out {
    pub to: EndpointId,
    /// Index of the frame in the receive batch.
    pub frame: u32,
    pub egress: Egress,
}

/// Endpoint sinks and the data path's scratch space, allocated once.
pub(super) struct Datapath {
    pub eps: Vec<Option<EpIo>>,
    /// uml_switch endpoints by the address their frames come from.
    pub by_addr: HashMap<SockAddrUn, EndpointId>,
    pub rb: RecvBatch,
    pub actions: Vec<Action>,
    pub outs: Vec<Out>,
    /// Rewritten frames: a tagged and an untagged slot per received frame.
    pub scratch: Vec<[u8; SLOT]>,
    pub scratch_len: Vec<usize>,
    /// Source endpoint of each frame of the batch.
    pub src_eps: Vec<EndpointId>,
    /// Frames moved since the last wait (for busy polling).
    pub busy: bool,
    pub spin: Duration,
}

impl Datapath {
    pub fn new() -> Datapath {
        Datapath {
            eps: Vec::new(),
            by_addr: HashMap::new(),
            rb: RecvBatch::new(BATCH, SLOT),
            actions: Vec::with_capacity(BATCH * 8),
            outs: Vec::with_capacity(BATCH * 8),
            scratch: vec![[0u8; SLOT]; 2 * BATCH],
            scratch_len: vec![0; 2 * BATCH],
            src_eps: Vec::with_capacity(BATCH),
            busy: false,
            spin: Duration::from_micros(
                std::env::var("UMLKIT_SWITCH_SPIN_US")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
        }
    }

    /// The bytes of output `k` (rewritten or as received).
    pub fn frame(&self, k: usize) -> &[u8] {
        frame_bytes(&self.rb, &self.outs, &self.scratch, &self.scratch_len, k)
    }

    /// `ep` has its own data socket (VDE), which flow control may pause.
    pub fn own_socket(&self, ep: EndpointId) -> bool {
        matches!(
            self.eps.get(ep as usize).and_then(Option::as_ref),
            Some(EpIo {
                sink: Sink::Own { .. },
                ..
            })
        )
    }
}

/// Link emulation's I/O side: the timer and buffers for released frames.
pub(super) struct LinkIo {
    pub released: Vec<(u32, Side, Released)>,
    pub timer: Option<TimerFd>,
    /// The deadline the timer is armed for.
    pub timer_armed: Option<Duration>,
    pub link_actions: Vec<Action>,
    pub link_scratch: Vec<u8>,
}

impl Server {
    /// Endpoint `ep` (of client `peer`) left: drop what waits for it,
    /// release the sources it held up, close its socket.
    pub(super) fn remove_endpoint(&mut self, ep: EndpointId, peer: Peer) {
        self.flow.remove(ep);
        self.apply_flow();
        let port = self.switch.disconnect(ep).ok();
        if let Some(io) = self.dp.eps.get_mut(ep as usize).and_then(Option::take) {
            match io.sink {
                Sink::Own { sock, path } => {
                    let _ = self.epoll.delete(sock.as_fd());
                    let _ = std::fs::remove_file(&path);
                }
                Sink::Shared { addr, .. } => {
                    self.dp.by_addr.remove(&addr);
                }
            }
        }
        if self.opts.flavor == Flavor::UmlSwitch {
            println!("Disconnect");
        } else if let Some(p) = port {
            self.log
                .peer(&format!("port {p}: endpoint {ep} closed (client {peer})"));
        }
    }

    pub(super) fn set_ep(&mut self, ep: EndpointId, io: EpIo) {
        let idx = ep as usize;
        if self.dp.eps.len() <= idx {
            self.dp.eps.resize_with(idx + 1, || None);
        }
        self.dp.eps[idx] = Some(io);
        self.flow.open(ep);
    }

    pub(super) fn on_data(&mut self, ep: EndpointId) {
        for _ in 0..BUDGET {
            let fd = match self.dp.eps.get(ep as usize).and_then(Option::as_ref) {
                Some(EpIo {
                    sink: Sink::Own { sock, .. },
                    ..
                }) => sock.as_fd(),
                _ => return,
            };
            let n = match self.dp.rb.recv(fd, false) {
                // a vector client hung up (an empty message is never sent)
                Ok(0) if self.ctl.vectors.contains_key(&ep) => {
                    self.close_vector(ep);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) if self.ctl.vectors.contains_key(&ep) => {
                    self.close_vector(ep);
                    return;
                }
                Err(_) => {
                    // ECONNREFUSED etc.: the client is gone; the control
                    // connection's EOF removes the endpoint.
                    return;
                }
            };
            // a vector client's hangup reads as an empty message
            let vector = self.ctl.vectors.contains_key(&ep);
            let hangup = if vector {
                (0..n).find(|&i| self.dp.rb.frame(i).is_empty())
            } else {
                None
            };
            let n = hangup.unwrap_or(n);
            self.dp.src_eps.clear();
            self.dp.src_eps.resize(n, ep);
            if n > 0 {
                self.forward_batch(n);
            }
            if hangup.is_some() {
                self.close_vector(ep);
                return;
            }
            if n < BATCH || self.flow.is_paused(ep) {
                return;
            }
        }
    }

    pub(super) fn on_shared(&mut self, via: u32) {
        for _ in 0..BUDGET {
            let Some(fd) = self.listen.shared.get(via as usize) else {
                return;
            };
            let n = match self.dp.rb.recv(fd.as_fd(), true) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            self.dp.src_eps.clear();
            for i in 0..n {
                let a = SockAddrUn::from_raw(self.dp.rb.addr(i));
                let ep = match self.dp.by_addr.get(&a) {
                    Some(&ep) => ep,
                    None => {
                        self.log.peer("Unknown connection for packet, dropped");
                        u32::MAX
                    }
                };
                self.dp.src_eps.push(ep);
            }
            self.forward_batch(n);
            if n < BATCH {
                return;
            }
        }
    }

    /// Run the frames of the receive batch through the switch and send the
    /// results, one `sendmmsg` per destination socket.
    pub(super) fn forward_batch(&mut self, n: usize) {
        // spin before sleeping only after small batches (latency-bound
        // traffic); big batches mean load, where spinning steals CPU
        self.dp.busy = n < 4;
        self.stats.recv_calls += 1;
        self.stats.frames_in += n as u64;
        let now = self.now();
        self.dp.outs.clear();
        for i in 0..n {
            let from = self.dp.src_eps[i];
            if from == u32::MAX {
                continue;
            }
            if self.dp.rb.truncated(i) {
                self.switch.record_rx_drop(from);
                continue;
            }
            if !self.links.is_empty() {
                let port = self.switch.endpoint(from).map(|e| e.port);
                if let Some(l) = port.and_then(|p| self.links.link_mut(p, Side::In)) {
                    if l.offer_tagged(now, from, self.dp.rb.frame(i)) != Verdict::Pass {
                        continue; // held (comes back through release_links) or dropped
                    }
                }
            }
            self.console
                .tap(&self.switch, now, from, CapDir::In, self.dp.rb.frame(i));
            self.dp.actions.clear();
            let outcome =
                self.switch
                    .handle_frame(now, from, self.dp.rb.frame(i), &mut self.dp.actions);
            if let Outcome::Forwarded { moved: Some(m), .. } = outcome {
                self.log.peer(&format!(
                    "MAC {} moved from port {} to port {}",
                    m.mac, m.from, m.to
                ));
            }
            for a in &self.dp.actions {
                self.dp.outs.push(Out {
                    to: a.to,
                    frame: i as u32,
                    egress: a.egress,
                });
            }
        }
        if self.dp.outs.is_empty() {
            return;
        }
        // group by destination, keeping frame order within a destination
        self.dp
            .outs
            .sort_unstable_by_key(|o| ((o.to as u64) << 32) | o.frame as u64);
        // prepare rewritten frames: at most one tagged and one untagged
        // copy per received frame (all tagged egress of a frame carries the
        // same VLAN), so the scratch space is fixed: 2 slots per frame
        for l in &mut self.dp.scratch_len[..2 * n] {
            *l = 0;
        }
        for o in &self.dp.outs {
            let i = o.frame as usize;
            let f = self.dp.rb.frame(i);
            match o.egress {
                Egress::Tag(v)
                    if self.dp.scratch_len[2 * i] == 0 && f.len() + eth::TAG_LEN <= SLOT =>
                {
                    self.dp.scratch_len[2 * i] = eth::insert_tag(f, v, &mut self.dp.scratch[2 * i]);
                }
                Egress::Untag
                    if self.dp.scratch_len[2 * i + 1] == 0
                        && f.len() >= eth::HEADER_LEN + eth::TAG_LEN =>
                {
                    self.dp.scratch_len[2 * i + 1] =
                        eth::strip_tag(f, &mut self.dp.scratch[2 * i + 1]);
                }
                _ => {}
            }
        }
        if !self.links.is_empty() {
            self.shape_outs(now);
        }
        self.tap_outs(now);
        let mut start = 0;
        let mut shared_pending = false;
        while start < self.dp.outs.len() {
            let to = self.dp.outs[start].to;
            let mut end = start + 1;
            while end < self.dp.outs.len() && self.dp.outs[end].to == to {
                end += 1;
            }
            match self
                .dp
                .eps
                .get(to as usize)
                .and_then(Option::as_ref)
                .map(|e| &e.sink)
            {
                Some(Sink::Own { sock, .. }) => {
                    let fd = sock.as_fd();
                    let mut pos = start;
                    if !self.flow.is_queued(to) {
                        while pos < end {
                            let cnt = (end - pos).min(sys::MAX_BATCH);
                            let rb = &self.dp.rb;
                            let outs = &self.dp.outs;
                            let scratch = &self.dp.scratch;
                            let slen = &self.dp.scratch_len;
                            let sent = sys::send_batch(fd, cnt, |j| {
                                (frame_bytes(rb, outs, scratch, slen, pos + j), None)
                            })
                            .unwrap_or(0);
                            self.stats.send_calls += 1;
                            self.stats.frames_out += sent as u64;
                            for k in pos..pos + sent {
                                let len = frame_bytes(rb, outs, scratch, slen, k).len();
                                self.switch.record_tx(to, len, true);
                            }
                            pos += sent;
                            if sent < cnt {
                                break;
                            }
                        }
                    }
                    if pos < end {
                        self.hold_back(to, pos, end, now);
                    }
                }
                Some(Sink::Shared { .. }) => shared_pending = true,
                None => {}
            }
            start = end;
        }
        if shared_pending {
            self.send_shared();
        }
        if self.flow.any_filled() {
            self.pause_sources();
        }
    }

    /// Offer each output to the outbound link of its destination port;
    /// keep only those to send now (held frames come back through
    /// [`Server::release_links`]).
    pub(super) fn shape_outs(&mut self, now: Duration) {
        let mut w = 0;
        for k in 0..self.dp.outs.len() {
            let to = self.dp.outs[k].to;
            let port = self.switch.endpoint(to).map(|e| e.port);
            let keep = match port.and_then(|p| self.links.link_mut(p, Side::Out)) {
                None => true,
                Some(l) => {
                    let f = self.dp.frame(k);
                    l.offer_tagged(now, to, f) == Verdict::Pass
                }
            };
            if keep {
                self.dp.outs[w] = self.dp.outs[k];
                w += 1;
            }
        }
        self.dp.outs.truncate(w);
    }

    /// Captures of one port also see the frames sent to it.
    pub(super) fn tap_outs(&mut self, now: Duration) {
        if !self.console.port_captures() {
            return;
        }
        for k in 0..self.dp.outs.len() {
            let f = self.dp.frame(k);
            self.console
                .tap(&self.switch, now, self.dp.outs[k].to, CapDir::Out, f);
        }
    }

    /// Send the frames the emulated links release now: inbound ones enter
    /// the switch (from the endpoint that sent them), outbound ones go to
    /// their endpoint. Frames released meanwhile by a second link (in,
    /// then out) go too.
    pub(super) fn release_links(&mut self) {
        for _ in 0..4 {
            let now = self.now();
            if self.links.next_deadline().is_none_or(|d| d > now) {
                return;
            }
            let mut rel = std::mem::take(&mut self.lio.released);
            self.links.poll(now, &mut rel);
            for (port, side, r) in rel.drain(..) {
                if self.switch.endpoint(r.tag).map(|e| e.port) != Some(port) {
                    self.stats.link_orphans += 1;
                    continue;
                }
                match side {
                    Side::In => self.forward_released(now, r.tag, &r.frame),
                    Side::Out => {
                        self.console
                            .tap(&self.switch, now, r.tag, CapDir::Out, &r.frame);
                        self.send_owned(r.tag, &r.frame)
                    }
                }
            }
            self.lio.released = rel;
        }
    }

    /// A frame released by the inbound link of `from`'s port: switch it,
    /// through the outbound links of its destinations.
    pub(super) fn forward_released(&mut self, now: Duration, from: EndpointId, frame: &[u8]) {
        let mut actions = std::mem::take(&mut self.lio.link_actions);
        let mut buf = std::mem::take(&mut self.lio.link_scratch);
        actions.clear();
        self.console.tap(&self.switch, now, from, CapDir::In, frame);
        self.switch.handle_frame(now, from, frame, &mut actions);
        for a in &actions {
            let bytes: &[u8] = match a.egress {
                Egress::AsIs => frame,
                Egress::Tag(v) if frame.len() + eth::TAG_LEN <= buf.len() => {
                    let n = eth::insert_tag(frame, v, &mut buf);
                    &buf[..n]
                }
                Egress::Untag if frame.len() >= eth::HEADER_LEN + eth::TAG_LEN => {
                    let n = eth::strip_tag(frame, &mut buf);
                    &buf[..n]
                }
                _ => frame,
            };
            let port = self.switch.endpoint(a.to).map(|e| e.port);
            if let Some(l) = port.and_then(|p| self.links.link_mut(p, Side::Out)) {
                if l.offer_tagged(now, a.to, bytes) != Verdict::Pass {
                    continue;
                }
            }
            self.console
                .tap(&self.switch, now, a.to, CapDir::Out, bytes);
            self.send_owned(a.to, bytes);
        }
        self.lio.link_actions = actions;
        self.lio.link_scratch = buf;
    }

    /// Send one frame outside the receive batch (released by a link). A
    /// full destination socket queues it (bounded, never pausing anyone).
    pub(super) fn send_owned(&mut self, to: EndpointId, f: &[u8]) {
        let sent = match self
            .dp
            .eps
            .get(to as usize)
            .and_then(Option::as_ref)
            .map(|e| &e.sink)
        {
            Some(Sink::Own { sock, .. }) => {
                if self.flow.is_queued(to) {
                    self.queue_owned(to, f);
                    return;
                }
                sys::send_batch(sock.as_fd(), 1, |_| (f, None)).unwrap_or(0)
            }
            Some(Sink::Shared { addr, via }) => match self.listen.shared.get(*via as usize) {
                Some(fd) => sys::send_batch(fd.as_fd(), 1, |_| (f, Some(&addr.0[..]))).unwrap_or(0),
                None => 0,
            },
            None => return,
        };
        self.stats.send_calls += 1;
        if sent == 1 {
            self.stats.frames_out += 1;
            self.switch.record_tx(to, f.len(), true);
        } else if matches!(
            self.dp
                .eps
                .get(to as usize)
                .and_then(Option::as_ref)
                .map(|e| &e.sink),
            Some(Sink::Own { .. })
        ) {
            self.queue_owned(to, f);
        } else {
            self.switch.record_tx(to, f.len(), false);
        }
    }

    /// Send every output for uml_switch endpoints through the shared socket(s).
    pub(super) fn send_shared(&mut self) {
        for via in 0..self.listen.shared.len() as u32 {
            // indices of outs going through this shared socket
            let mut idx: [u32; sys::MAX_BATCH] = [0; sys::MAX_BATCH];
            let mut k = 0;
            let mut cnt = 0;
            while k <= self.dp.outs.len() {
                let flush = k == self.dp.outs.len() || cnt == sys::MAX_BATCH;
                if flush && cnt > 0 {
                    let fd = self.listen.shared[via as usize].as_fd();
                    let rb = &self.dp.rb;
                    let outs = &self.dp.outs;
                    let scratch = &self.dp.scratch;
                    let slen = &self.dp.scratch_len;
                    let eps = &self.dp.eps;
                    let ids = &idx[..cnt];
                    let mut done = 0;
                    while done < cnt {
                        let res = sys::send_batch(fd, cnt - done, |j| {
                            let o = ids[done + j] as usize;
                            let addr = match eps[outs[o].to as usize].as_ref().map(|e| &e.sink) {
                                Some(Sink::Shared { addr, .. }) => Some(&addr.0[..]),
                                _ => None,
                            };
                            (frame_bytes(rb, outs, scratch, slen, o), addr)
                        });
                        match res {
                            Ok(s) if s > 0 => {
                                for &o in &ids[done..done + s] {
                                    let o = o as usize;
                                    let len = frame_bytes(rb, outs, scratch, slen, o).len();
                                    self.switch.record_tx(outs[o].to, len, true);
                                }
                                done += s;
                            }
                            _ => {
                                // this destination is full or gone: drop one, go on
                                let o = ids[done] as usize;
                                let len = frame_bytes(rb, outs, scratch, slen, o).len();
                                self.switch.record_tx(outs[o].to, len, false);
                                done += 1;
                            }
                        }
                    }
                    cnt = 0;
                }
                if k == self.dp.outs.len() {
                    break;
                }
                let o = &self.dp.outs[k];
                if let Some(Some(EpIo {
                    sink: Sink::Shared { via: v, .. },
                    ..
                })) = self.dp.eps.get(o.to as usize)
                {
                    if *v == via {
                        idx[cnt] = k as u32;
                        cnt += 1;
                    }
                }
                k += 1;
            }
        }
    }
}

pub(super) fn frame_bytes<'a>(
    rb: &'a RecvBatch,
    outs: &[Out],
    scratch: &'a [[u8; SLOT]],
    slen: &[usize],
    k: usize,
) -> &'a [u8] {
    let i = outs[k].frame as usize;
    let slot = match outs[k].egress {
        Egress::AsIs => return rb.frame(i),
        Egress::Tag(_) => 2 * i,
        Egress::Untag => 2 * i + 1,
    };
    if slen[slot] > 0 {
        &scratch[slot][..slen[slot]]
    } else {
        rb.frame(i)
    }
}

//! Flow control for destinations whose socket is full, as a pure state
//! machine: no I/O, the time is passed in (as `switch_core` does with its
//! MAC table ageing).
//!
//! A frame a destination's socket does not take is queued for it
//! ([`Flow::hold`]); the sources of the batch that filled it are paused
//! ([`Flow::pause`]) until it drains ([`Flow::drained`]). A destination
//! that stays full for [`Limits::timeout`] goes into drop mode
//! ([`Flow::expire`]): its queue is dropped, its sources resume, and frames
//! for it are dropped until its socket takes data again. Queues are bounded
//! per destination (frames) and in total (bytes).
//!
//! What the caller must act on is left in three public lists it drains:
//! [`Flow::dropped`] (count as lost), [`Flow::touched`] (recompute the
//! epoll interest: read unless [`Flow::is_paused`], write while
//! [`Flow::wants_write`]) and [`Flow::expired`] (log).

use std::time::Duration;

use switch_core::EndpointId;

/// Bounds of the queues and the stall timeout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Frames queued for one destination at most.
    pub max_frames: usize,
    /// Bytes queued for all destinations together at most.
    pub max_total: usize,
    /// A destination full this long goes into drop mode.
    pub timeout: Duration,
}

/// Frames waiting for one full destination.
#[derive(Default)]
struct Queue {
    buf: Vec<u8>,
    /// (offset, length) in `buf`.
    frames: Vec<(u32, u32)>,
    head: usize,
    /// When the backlog began.
    since: Duration,
    drop_mode: bool,
    want_write: bool,
}

impl Queue {
    fn active(&self) -> bool {
        self.head < self.frames.len()
    }

    fn reset(&mut self) {
        if self.buf.capacity() > 1 << 16 {
            // give back the memory of a big backlog
            self.buf = Vec::new();
            self.frames = Vec::new();
        }
        self.buf.clear();
        self.frames.clear();
        self.head = 0;
    }
}

/// The flow control state of every endpoint.
pub(crate) struct Flow {
    limits: Limits,
    queues: Vec<Queue>,
    /// Destinations with a backlog.
    active: Vec<EndpointId>,
    /// (paused source, full destination)
    paused: Vec<(EndpointId, EndpointId)>,
    /// Destinations that filled up in the current batch.
    newly_full: Vec<EndpointId>,
    /// Bytes in all queues.
    total: usize,
    /// Frames dropped since the caller last looked: (destination, length).
    pub dropped: Vec<(EndpointId, u32)>,
    /// Endpoints whose epoll interest must be recomputed.
    pub touched: Vec<EndpointId>,
    /// Destinations that went into drop mode (full for too long).
    pub expired: Vec<EndpointId>,
}

impl Flow {
    pub fn new(limits: Limits) -> Flow {
        Flow {
            limits,
            queues: Vec::new(),
            active: Vec::new(),
            paused: Vec::new(),
            newly_full: Vec::new(),
            total: 0,
            dropped: Vec::new(),
            touched: Vec::new(),
            expired: Vec::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A new endpoint `ep`: an empty queue, not in drop mode.
    pub fn open(&mut self, ep: EndpointId) {
        let idx = ep as usize;
        if self.queues.len() <= idx {
            self.queues.resize_with(idx + 1, Queue::default);
        }
        self.queues[idx] = Queue::default();
    }

    /// Frames wait for `d` (new frames for it must queue behind them).
    pub fn is_queued(&self, d: EndpointId) -> bool {
        self.queues.get(d as usize).is_some_and(Queue::active)
    }

    /// `d`'s socket must be watched for room.
    pub fn wants_write(&self, d: EndpointId) -> bool {
        self.queues.get(d as usize).is_some_and(|q| q.want_write)
    }

    /// `src` waits for some full destination (its socket is not read).
    pub fn is_paused(&self, src: EndpointId) -> bool {
        !self.paused.is_empty() && self.paused.iter().any(|p| p.0 == src)
    }

    /// `d` stayed full too long: frames for it are dropped until it drains.
    pub fn drop_mode(&self, d: EndpointId) -> bool {
        self.queues.get(d as usize).is_some_and(|q| q.drop_mode)
    }

    /// Bytes queued for all destinations.
    #[cfg(test)]
    pub fn queued_bytes(&self) -> usize {
        self.total
    }

    /// Frames queued for `d`.
    pub fn queued(&self, d: EndpointId) -> usize {
        self.queues
            .get(d as usize)
            .map_or(0, |q| q.frames.len() - q.head)
    }

    /// The `j`th frame queued for `d` (0 = the next to send).
    pub fn queued_frame(&self, d: EndpointId, j: usize) -> &[u8] {
        let q = &self.queues[d as usize];
        let (off, len) = q.frames[q.head + j];
        &q.buf[off as usize..(off + len) as usize]
    }

    /// The earliest time a backlog times out.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.active
            .iter()
            .map(|&d| self.queues[d as usize].since + self.limits.timeout)
            .min()
    }

    /// `d`'s socket did not take `f` at `now`: queue it, or drop it (in
    /// drop mode, or over the bounds). Either way `d` is watched for room.
    pub fn hold(&mut self, d: EndpointId, f: &[u8], now: Duration) {
        let Some(q) = self.queues.get_mut(d as usize) else {
            self.dropped.push((d, f.len() as u32));
            return;
        };
        if q.drop_mode
            || q.frames.len() - q.head >= self.limits.max_frames
            || self.total + f.len() > self.limits.max_total
        {
            self.dropped.push((d, f.len() as u32));
        } else {
            if !q.active() {
                q.since = now;
                self.active.push(d);
            }
            self.total += f.len();
            let off = q.buf.len() as u32;
            q.buf.extend_from_slice(f);
            q.frames.push((off, f.len() as u32));
        }
        if !q.want_write {
            q.want_write = true;
            self.touched.push(d);
        }
    }

    /// End of a batch's frames for `d`: if `d` has a backlog, the sources
    /// of the batch get paused for it by [`Flow::pause`].
    pub fn filled(&mut self, d: EndpointId) {
        if self.is_queued(d) {
            self.newly_full.push(d);
        }
    }

    /// Some destination filled up in this batch.
    pub fn any_filled(&self) -> bool {
        !self.newly_full.is_empty()
    }

    /// Pause the batch's sources `srcs` (those `can_pause` allows: a shared
    /// socket cannot be paused one client at a time) for every destination
    /// that filled up in this batch.
    pub fn pause(&mut self, srcs: &[EndpointId], can_pause: impl Fn(EndpointId) -> bool) {
        for (i, &src) in srcs.iter().enumerate() {
            if i > 0 && srcs[i - 1] == src || !can_pause(src) {
                continue;
            }
            let was = self.is_paused(src);
            for &d in &self.newly_full {
                if !self.paused.contains(&(src, d)) {
                    self.paused.push((src, d));
                }
            }
            if !was && self.is_paused(src) {
                self.touched.push(src);
            }
        }
        self.newly_full.clear();
    }

    /// The first `n` queued frames of `d` went out.
    pub fn sent(&mut self, d: EndpointId, n: usize) {
        let Some(q) = self.queues.get_mut(d as usize) else {
            return;
        };
        for j in 0..n {
            self.total -= q.frames[q.head + j].1 as usize;
        }
        q.head += n;
    }

    /// `d`'s socket took everything queued (or had room with nothing
    /// queued): leave drop mode, stop watching for room, resume the
    /// sources waiting for it.
    pub fn drained(&mut self, d: EndpointId) {
        let Some(q) = self.queues.get_mut(d as usize) else {
            return;
        };
        for &(_, len) in &q.frames[q.head..] {
            self.total -= len as usize;
            self.dropped.push((d, len));
        }
        q.reset();
        q.drop_mode = false;
        q.want_write = false;
        self.active.retain(|&x| x != d);
        self.touched.push(d);
        self.resume(d);
    }

    /// Destinations full since `timeout` before `now`: drop their queue,
    /// put them in drop mode, let their sources go on.
    pub fn expire(&mut self, now: Duration) {
        let mut i = 0;
        while i < self.active.len() {
            let d = self.active[i];
            let q = &mut self.queues[d as usize];
            if now.saturating_sub(q.since) < self.limits.timeout {
                i += 1;
                continue;
            }
            for &(_, len) in &q.frames[q.head..] {
                self.total -= len as usize;
                self.dropped.push((d, len));
            }
            q.reset();
            q.drop_mode = true;
            self.active.swap_remove(i);
            self.resume(d);
            self.expired.push(d);
        }
    }

    /// Endpoint `ep` left: its queue is dropped, sources waiting for it
    /// resume, and it waits for nobody.
    pub fn remove(&mut self, ep: EndpointId) {
        if let Some(q) = self.queues.get_mut(ep as usize) {
            for &(_, len) in &q.frames[q.head..] {
                self.total -= len as usize;
                self.dropped.push((ep, len));
            }
            *q = Queue::default();
        }
        self.active.retain(|&d| d != ep);
        self.newly_full.retain(|&d| d != ep);
        self.paused.retain(|p| p.0 != ep);
        self.resume(ep);
    }

    fn resume(&mut self, dest: EndpointId) {
        let mut i = 0;
        while i < self.paused.len() {
            if self.paused[i].1 == dest {
                let src = self.paused.swap_remove(i).0;
                if !self.is_paused(src) && !self.touched.contains(&src) {
                    self.touched.push(src);
                }
            } else {
                i += 1;
            }
        }
        // a source resumed above may have been paused again by another
        // destination later in the list: recheck at the caller (touched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn flow() -> Flow {
        let mut f = Flow::new(Limits {
            max_frames: 4,
            max_total: 1000,
            timeout: 200 * MS,
        });
        for ep in 0..8 {
            f.open(ep);
        }
        f
    }

    fn take(v: &mut Vec<EndpointId>) -> Vec<EndpointId> {
        let mut t = std::mem::take(v);
        t.sort_unstable();
        t.dedup();
        t
    }

    #[test]
    fn window_closes_when_destination_is_full_and_opens_when_it_drains() {
        let mut f = flow();
        // a batch from sources 1 and 3 (1 twice) fills destination 2
        f.hold(2, b"aaaa", 10 * MS);
        f.hold(2, b"bb", 10 * MS);
        f.filled(2);
        assert!(f.any_filled());
        f.pause(&[1, 1, 3], |_| true);
        assert!(f.is_paused(1) && f.is_paused(3) && !f.is_paused(2));
        assert!(f.wants_write(2) && f.is_queued(2));
        assert_eq!(take(&mut f.touched), vec![1, 2, 3]);
        assert_eq!((f.queued(2), f.queued_bytes()), (2, 6));
        assert_eq!(f.queued_frame(2, 0), b"aaaa");
        // room for one frame only: still full, still paused
        f.sent(2, 1);
        assert_eq!(f.queued_frame(2, 0), b"bb");
        assert!(f.is_paused(1));
        f.sent(2, 1);
        f.drained(2);
        assert!(!f.is_paused(1) && !f.is_paused(3));
        assert!(!f.wants_write(2) && !f.is_queued(2));
        assert_eq!(take(&mut f.touched), vec![1, 2, 3]);
        assert_eq!(f.queued_bytes(), 0);
        assert!(f.dropped.is_empty());
        assert_eq!(f.next_deadline(), None);
    }

    #[test]
    fn shared_socket_sources_are_never_paused() {
        let mut f = flow();
        f.hold(2, b"x", Duration::ZERO);
        f.filled(2);
        f.pause(&[5, 6], |s| s != 5);
        assert!(!f.is_paused(5) && f.is_paused(6));
    }

    #[test]
    fn source_waits_for_every_full_destination() {
        let mut f = flow();
        f.hold(2, b"x", Duration::ZERO);
        f.filled(2);
        f.hold(4, b"y", Duration::ZERO);
        f.filled(4);
        f.pause(&[1], |_| true);
        f.sent(2, 1);
        f.drained(2);
        assert!(f.is_paused(1), "4 is still full");
        f.sent(4, 1);
        f.drained(4);
        assert!(!f.is_paused(1));
    }

    #[test]
    fn stalled_peer_times_out_into_drop_mode_until_it_drains() {
        let mut f = flow();
        let t0 = 1000 * MS;
        f.hold(2, b"aaa", t0);
        f.hold(2, b"bb", t0 + 50 * MS);
        f.filled(2);
        f.pause(&[1], |_| true);
        assert_eq!(f.next_deadline(), Some(t0 + 200 * MS));
        f.touched.clear();
        // just before the timeout: nothing happens
        f.expire(t0 + 199 * MS);
        assert!(f.expired.is_empty() && f.is_paused(1) && f.is_queued(2));
        // at the timeout: queue dropped (counted), source resumed
        f.expire(t0 + 200 * MS);
        assert_eq!(f.expired, vec![2]);
        assert_eq!(f.dropped, vec![(2, 3), (2, 2)]);
        assert!(!f.is_paused(1) && !f.is_queued(2) && f.drop_mode(2));
        assert_eq!(take(&mut f.touched), vec![1]);
        assert_eq!(f.queued_bytes(), 0);
        assert_eq!(f.next_deadline(), None);
        // drop mode: new frames for 2 are dropped, nobody is paused
        f.dropped.clear();
        f.hold(2, b"c", t0 + 300 * MS);
        f.filled(2);
        f.pause(&[1], |_| true);
        assert_eq!(f.dropped, vec![(2, 1)]);
        assert!(!f.is_paused(1) && f.wants_write(2));
        // the socket takes data again: out of drop mode, queues again
        f.drained(2);
        assert!(!f.drop_mode(2));
        f.dropped.clear();
        f.hold(2, b"d", t0 + 400 * MS);
        assert!(f.dropped.is_empty() && f.is_queued(2));
        assert_eq!(f.next_deadline(), Some(t0 + 600 * MS));
    }

    #[test]
    fn queues_are_bounded_per_destination_and_in_total() {
        let mut f = flow();
        for _ in 0..6 {
            f.hold(2, b"12345", Duration::ZERO);
        }
        assert_eq!(f.queued(2), 4);
        assert_eq!(f.dropped, vec![(2, 5), (2, 5)]);
        f.dropped.clear();
        // 20 bytes queued for 2: 980 more fit in total
        f.hold(3, &[0u8; 981], Duration::ZERO);
        assert_eq!(f.dropped, vec![(3, 981)]);
        f.hold(3, &[0u8; 980], Duration::ZERO);
        assert_eq!(f.queued_bytes(), 1000);
        assert_eq!(f.queued(3), 1);
    }

    #[test]
    fn leaving_endpoints_release_and_are_released() {
        let mut f = flow();
        f.hold(2, b"abc", Duration::ZERO);
        f.filled(2);
        f.pause(&[1, 3], |_| true);
        // the paused source 3 leaves: forgotten
        f.remove(3);
        assert!(!f.is_paused(3));
        f.touched.clear();
        // the full destination leaves: its queue is lost, 1 resumes
        f.remove(2);
        assert_eq!(f.dropped, vec![(2, 3)]);
        assert!(!f.is_paused(1));
        assert_eq!(f.touched, vec![1]);
        assert_eq!((f.queued_bytes(), f.next_deadline()), (0, None));
        // a new endpoint reusing the number starts clean
        f.open(2);
        assert!(!f.wants_write(2) && !f.is_queued(2));
    }

    #[test]
    fn unknown_destination_drops() {
        let mut f = flow();
        f.hold(99, b"x", Duration::ZERO);
        assert_eq!(f.dropped, vec![(99, 1)]);
    }
}

//! Flow control's I/O side: the pure [`Flow`] state machine decides, this
//! sends queued frames, counts drops and keeps each data socket's epoll
//! interest in line (read unless paused, write while frames wait).

use std::os::fd::AsFd;
use std::time::Duration;

use switch_core::EndpointId;
use umlkit_sys::net::{self as sys, Interest};

use super::datapath::{EpIo, Sink};
use super::token::Token;
use super::Server;
use crate::flow::{Flow, Limits};

/// Frames queued for a destination whose socket buffer is full; the
/// sources feeding it are paused meanwhile (flow control).
const PEND_MAX_FRAMES: usize = 1024;
/// Bytes queued for all destinations together, at most.
const PEND_MAX_TOTAL: usize = 32 << 20;
/// A destination that stays full this long is in "drop mode": its queue is
/// dropped (counted) and sources resume; frames for it are dropped until
/// its socket drains.
const PEND_TIMEOUT: Duration = Duration::from_millis(200);

pub(super) fn new_flow() -> Flow {
    Flow::new(Limits {
        max_frames: PEND_MAX_FRAMES,
        max_total: PEND_MAX_TOTAL,
        timeout: PEND_TIMEOUT,
    })
}

impl Server {
    /// Act on what the flow state machine left: count dropped frames, log
    /// destinations gone into drop mode, update epoll interests.
    pub(super) fn apply_flow(&mut self) {
        for (d, len) in self.flow.dropped.drain(..) {
            self.switch.record_tx(d, len as usize, false);
        }
        let mut expired = std::mem::take(&mut self.flow.expired);
        for d in expired.drain(..) {
            let peer = self.ctl.peer(d);
            self.log.peer(&format!(
                "endpoint {d} (client {peer}): socket full for {} ms, dropping its frames until it drains",
                self.flow.limits().timeout.as_millis()
            ));
        }
        self.flow.expired = expired;
        let mut touched = std::mem::take(&mut self.flow.touched);
        for ep in touched.drain(..) {
            self.update_interest(ep);
        }
        self.flow.touched = touched;
    }

    /// Queue one frame outside the receive batch (released by a link) for
    /// a full destination (bounded, never pausing anyone).
    pub(super) fn queue_owned(&mut self, to: EndpointId, f: &[u8]) {
        let now = self.now();
        self.flow.hold(to, f, now);
        self.apply_flow();
    }

    /// Frames outs[pos..end] for `to` could not be sent now: queue them (the
    /// sources get paused) unless the destination is in drop mode or its
    /// queue is full; dropped frames are counted.
    pub(super) fn hold_back(&mut self, to: EndpointId, pos: usize, end: usize, now: Duration) {
        for k in pos..end {
            self.flow.hold(to, self.dp.frame(k), now);
        }
        self.flow.filled(to);
        self.apply_flow();
    }

    /// Pause the data-socket sources of the current batch: each waits for
    /// the destinations that filled up.
    pub(super) fn pause_sources(&mut self) {
        let dp = &self.dp;
        self.flow.pause(&dp.src_eps, |s| dp.own_socket(s));
        self.apply_flow();
    }

    /// Epoll interest of a data socket: read unless paused, write while
    /// frames wait for it.
    pub(super) fn update_interest(&mut self, ep: EndpointId) {
        let Some(Some(EpIo {
            sink: Sink::Own { sock, .. },
            ..
        })) = self.dp.eps.get(ep as usize)
        else {
            return;
        };
        let write = self.flow.wants_write(ep);
        let read = !self.flow.is_paused(ep);
        let _ = self.epoll.modify(
            sock.as_fd(),
            Token::Data(ep).encode(),
            Interest { read, write },
        );
    }

    /// The destination's socket has room again: send what waits for it.
    pub(super) fn flush_pending(&mut self, d: EndpointId) {
        let fd = match self.dp.eps.get(d as usize).and_then(Option::as_ref) {
            Some(EpIo {
                sink: Sink::Own { sock, .. },
                ..
            }) => sock.as_fd(),
            _ => return,
        };
        while self.flow.queued(d) > 0 {
            let cnt = self.flow.queued(d).min(sys::MAX_BATCH);
            let flow = &self.flow;
            let sent = sys::send_batch(fd, cnt, |j| (flow.queued_frame(d, j), None)).unwrap_or(0);
            for j in 0..sent {
                self.switch
                    .record_tx(d, self.flow.queued_frame(d, j).len(), true);
            }
            self.flow.sent(d, sent);
            if sent < cnt {
                return; // still full: wait for the next EPOLLOUT
            }
        }
        self.flow.drained(d);
        self.apply_flow();
    }

    /// Destinations full for longer than PEND_TIMEOUT: drop their queue,
    /// enter drop mode, let the sources go on.
    pub(super) fn expire_pending(&mut self, now: Duration) {
        self.flow.expire(now);
        self.apply_flow();
    }
}

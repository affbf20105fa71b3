//! Bounded, non-blocking outgoing queues for the supervisor's socket clients
//! (exec and console).
//!
//! The supervisor must never wait for a client: the agent line reader, the
//! console pump and every other client would stall behind one `umlkit exec
//! g -- dmesg | less` nobody reads or one suspended `umlkit console`
//! (issue 8.2). Each client gets a [`Sink`]: [`Sink::send`] only appends to
//! an in-memory queue (a short mutex, no I/O) and a writer thread of the
//! client does the blocking socket writes. What happens when the queue
//! reaches its byte limit is the sink's [`Overflow`] policy:
//!
//! - [`Overflow::Disconnect`] (exec clients): past the limit, a client that
//!   has taken nothing for [`STALL`] (or whose queue reached
//!   [`HARD_FACTOR`] times the limit) is not worth waiting for; the socket
//!   is shut down (which also wakes the writer thread out of a blocked
//!   write), the client sees the connection end, and the supervisor's
//!   reader of that client kills its processes. A client that reads, only
//!   slower than the guest writes (a busy host), is not cut off.
//! - [`Overflow::Drop`] (console clients): the chunk is dropped and counted;
//!   the client stays attached and gets later output once it reads again.

use std::collections::VecDeque;
use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What to do when a client's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Shut the client's socket down.
    Disconnect,
    /// Drop the new data (counted in [`Sink::dropped`]).
    Drop,
}

/// Queue limit of an exec client: generous enough for a pager that reads in
/// bursts, small enough that a few stuck clients cost little memory.
pub const EXEC_BACKLOG: usize = 8 << 20;
/// Past its limit, a [`Overflow::Disconnect`] client is cut off once it has
/// taken nothing for this long, since data started waiting for it.
pub const STALL: Duration = Duration::from_secs(2);
/// ... and in any case once its queue holds this many times its limit.
pub const HARD_FACTOR: usize = 4;
/// Queue limit of a console client: an interactive viewer, `console.log`
/// keeps everything.
pub const CONSOLE_BACKLOG: usize = 64 << 10;
/// Socket send buffer of a console client (keeps what sits unread in the
/// kernel, beyond the backlog, small as well).
pub const CONSOLE_SNDBUF: i32 = 32 << 10;

struct Queue {
    chunks: VecDeque<Vec<u8>>,
    bytes: usize,
    /// No more data will be accepted (error, overflow or finish).
    closed: bool,
    /// Write what is queued, then end (the owner is done with the client).
    finishing: bool,
    /// The client last took data (a write completed), or data started
    /// waiting for it in an empty queue.
    progress: Instant,
    /// The producer was asked to pause (see [`Inner::flow`]).
    paused: bool,
}

struct Inner {
    q: Mutex<Queue>,
    cv: Condvar,
    stream: UnixStream,
    limit: usize,
    policy: Overflow,
    dropped: Arc<AtomicU64>,
    /// Backpressure for [`Overflow::Disconnect`] clients that read, only
    /// slower than their producer: called with `true` to pause the producer
    /// (queue past the limit) and `false` to resume it (queue drained to a
    /// quarter of the limit). Never called with the queue lock held.
    flow: Option<Flow>,
}

/// See [`Inner::flow`].
pub type Flow = Box<dyn Fn(bool) + Send + Sync>;

/// The sending half of one client; clones share the queue.
#[derive(Clone)]
pub struct Sink(Arc<Inner>);

fn lock(m: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sink {
    /// Start the writer thread of a client. `stream` is used for writing
    /// and for the shutdown on overflow (pass a clone of the client's socket).
    /// `dropped` counts what overflow cost (shared by the clients of a kind).
    pub fn new(
        stream: UnixStream,
        limit: usize,
        policy: Overflow,
        dropped: Arc<AtomicU64>,
    ) -> Sink {
        Sink::build(stream, limit, policy, dropped, None)
    }

    /// An [`Overflow::Disconnect`] sink with backpressure: past `limit` a
    /// client that still reads gets its producer paused (`flow(true)`)
    /// instead of being cut off, and resumed (`flow(false)`) once it caught
    /// up; one that takes nothing for [`STALL`] is disconnected as usual.
    pub fn with_flow(
        stream: UnixStream,
        limit: usize,
        dropped: Arc<AtomicU64>,
        flow: Flow,
    ) -> Sink {
        Sink::build(stream, limit, Overflow::Disconnect, dropped, Some(flow))
    }

    fn build(
        stream: UnixStream,
        limit: usize,
        policy: Overflow,
        dropped: Arc<AtomicU64>,
        flow: Option<Flow>,
    ) -> Sink {
        let inner = Arc::new(Inner {
            q: Mutex::new(Queue {
                chunks: VecDeque::new(),
                bytes: 0,
                closed: false,
                finishing: false,
                progress: Instant::now(),
                paused: false,
            }),
            cv: Condvar::new(),
            stream,
            limit,
            policy,
            dropped,
            flow,
        });
        let w = inner.clone();
        std::thread::spawn(move || writer(w));
        Sink(inner)
    }

    /// Cut the client off: nothing more is queued or written, its socket
    /// is shut down.
    fn disconnect(&self, mut q: std::sync::MutexGuard<'_, Queue>) {
        q.closed = true;
        q.chunks.clear();
        q.bytes = 0;
        drop(q);
        self.0.dropped.fetch_add(1, Ordering::Relaxed);
        let _ = self.0.stream.shutdown(Shutdown::Both);
        self.0.cv.notify_all();
    }

    /// Queue `data` for the client without blocking. False when the client
    /// is gone or was disconnected (now or before); with [`Overflow::Drop`]
    /// a full queue drops `data` and still answers true.
    pub fn send(&self, data: Vec<u8>) -> bool {
        let mut q = lock(&self.0.q);
        if q.closed {
            return false;
        }
        if q.bytes + data.len() > self.0.limit {
            match self.0.policy {
                Overflow::Drop => {
                    self.0
                        .dropped
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    return true;
                }
                Overflow::Disconnect
                    if q.progress.elapsed() < STALL
                        && q.bytes + data.len() <= self.0.limit * HARD_FACTOR =>
                {
                    // still reading, only slower than the producer: pause
                    // the producer (with a watch that cuts the client off
                    // if it then stops reading altogether)
                    if let Some(flow) = &self.0.flow {
                        if !q.paused {
                            q.paused = true;
                            q.bytes += data.len();
                            q.chunks.push_back(data);
                            self.0.cv.notify_all();
                            drop(q);
                            flow(true);
                            let me = self.clone();
                            std::thread::spawn(move || me.watch_paused());
                            return true;
                        }
                    }
                }
                Overflow::Disconnect => {
                    self.disconnect(q);
                    return false;
                }
            }
        }
        if q.bytes == 0 {
            q.progress = Instant::now();
        }
        q.bytes += data.len();
        q.chunks.push_back(data);
        self.0.cv.notify_all();
        true
    }

    /// While the producer is paused: cut the client off once it has taken
    /// nothing for [`STALL`]; end when it resumed or closed.
    fn watch_paused(&self) {
        loop {
            std::thread::sleep(STALL / 8);
            let q = lock(&self.0.q);
            if q.closed || !q.paused {
                return;
            }
            if q.bytes > 0 && q.progress.elapsed() >= STALL {
                self.disconnect(q);
                return;
            }
        }
    }

    /// The shared overflow counter: bytes dropped ([`Overflow::Drop`]) or
    /// clients disconnected ([`Overflow::Disconnect`]).
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// The client no longer takes data (write error or overflow).
    pub fn is_closed(&self) -> bool {
        lock(&self.0.q).closed
    }

    /// Write what is queued, then let the writer thread end.
    pub fn finish(&self) {
        lock(&self.0.q).finishing = true;
        self.0.cv.notify_all();
    }
}

fn writer(inner: Arc<Inner>) {
    let mut out = &inner.stream;
    loop {
        let chunk = {
            let mut q = lock(&inner.q);
            loop {
                if let Some(c) = q.chunks.pop_front() {
                    q.bytes -= c.len();
                    break c;
                }
                if q.closed || q.finishing {
                    q.closed = true;
                    return;
                }
                q = inner.cv.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        if out.write_all(&chunk).is_err() {
            let mut q = lock(&inner.q);
            q.closed = true;
            q.chunks.clear();
            q.bytes = 0;
            return;
        }
        let resume = {
            let mut q = lock(&inner.q);
            q.progress = Instant::now();
            let resume = q.paused && q.bytes <= inner.limit / 4;
            if resume {
                q.paused = false;
            }
            resume
        };
        if resume {
            if let Some(flow) = &inner.flow {
                flow(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Issue 8.2: a client that never reads must not block the sender; past
    /// the limit it is disconnected and its socket ends.
    #[test]
    fn unread_exec_client_is_disconnected_without_blocking() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let s = Sink::new(ours, 64 << 10, Overflow::Disconnect, Default::default());
        let t = Instant::now();
        let mut sent = 0usize;
        while s.send(vec![7u8; 4096]) {
            sent += 4096;
            assert!(sent < 64 << 20, "never overflowed");
        }
        assert!(t.elapsed() < Duration::from_secs(5), "send blocked");
        assert!(s.is_closed());
        assert_eq!(s.dropped(), 1);
        // the reader sees the data that got through, then the end
        theirs
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut all = Vec::new();
        theirs.read_to_end(&mut all).unwrap();
        assert!(all.len() <= sent);
    }

    /// Regression: `lab logs` of a 64 MiB startup log (a client that reads
    /// all the time, only slower than the guest writes on a busy host) was
    /// cut off as soon as 8 MiB were queued.
    #[test]
    fn slow_but_reading_exec_client_gets_everything() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let limit = 64 << 10;
        let s = Sink::new(ours, limit, Overflow::Disconnect, Default::default());
        let total = 2 * limit + (limit / 2);
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            let mut got = 0usize;
            while got < total {
                std::thread::sleep(Duration::from_millis(2));
                match theirs.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got
        });
        // all of it offered at once: over the limit, under the hard limit
        for _ in 0..total / 4096 {
            assert!(s.send(vec![3u8; 4096]), "a reading client was cut off");
        }
        s.finish();
        assert_eq!(reader.join().unwrap(), total);
        assert_eq!(s.dropped(), 0);
    }

    /// A producer much faster than its reader is paused, not cut off, and
    /// resumed once the reader caught up (`lab logs` of a 64 MiB log on a
    /// busy host, `exec g -- cat big > file`).
    #[test]
    fn fast_producer_is_paused_and_resumed_for_a_reading_client() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let limit = 64 << 10;
        let events = Arc::new(Mutex::new(Vec::<bool>::new()));
        let ev = events.clone();
        let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let p2 = paused.clone();
        let s = Sink::with_flow(
            ours,
            limit,
            Default::default(),
            Box::new(move |pause| {
                p2.store(pause, Ordering::SeqCst);
                ev.lock().unwrap().push(pause);
            }),
        );
        let total = 40 * limit; // ten times the hard limit
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            let mut got = 0usize;
            while got < total {
                std::thread::sleep(Duration::from_micros(200));
                match theirs.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got
        });
        let mut sent = 0;
        while sent < total {
            // a paused producer sends nothing until resumed
            if paused.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            assert!(s.send(vec![5u8; 4096]), "a reading client was cut off");
            sent += 4096;
        }
        s.finish();
        assert_eq!(reader.join().unwrap(), total);
        assert_eq!(s.dropped(), 0);
        let ev = events.lock().unwrap();
        assert!(ev.contains(&true) && ev.contains(&false), "{ev:?}");
    }

    /// A paused producer whose client stops reading: the client is cut off
    /// after [`STALL`] (nothing more is sent that could notice).
    #[test]
    fn paused_client_that_stops_reading_is_cut_off() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let p2 = paused.clone();
        let s = Sink::with_flow(
            ours,
            64 << 10,
            Default::default(),
            Box::new(move |p| p2.store(p, Ordering::SeqCst)),
        );
        // a well-behaved producer: sends while not paused, until cut off
        let t = Instant::now();
        while !s.is_closed() {
            assert!(t.elapsed() < Duration::from_secs(20), "never cut off");
            if paused.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            s.send(vec![1u8; 4096]);
        }
        assert_eq!(s.dropped(), 1);
    }

    #[test]
    fn console_sink_drops_and_counts_then_delivers_again() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let s = Sink::new(ours, 16 << 10, Overflow::Drop, Default::default());
        for _ in 0..200 {
            assert!(s.send(vec![1u8; 4096]));
        }
        assert!(s.dropped() > 0);
        // drain what was queued and written, then fresh output arrives
        theirs.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = Vec::new();
        assert!(wait_for(|| {
            if let Ok(n) = theirs.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            lock(&s.0.q).chunks.is_empty()
        }));
        assert!(s.send(b"fresh".to_vec()));
        assert!(wait_for(|| {
            if let Ok(n) = theirs.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            got.ends_with(b"fresh")
        }));
    }

    #[test]
    fn finish_flushes_then_ends() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let s = Sink::new(ours, 1 << 20, Overflow::Disconnect, Default::default());
        assert!(s.send(b"abc".to_vec()));
        s.finish();
        drop(s);
        theirs
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut all = Vec::new();
        theirs.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"abc");
    }
}

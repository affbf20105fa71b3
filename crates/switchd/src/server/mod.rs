//! The event loop: epoll with a typed token per source, signalfd for clean
//! shutdown, batched `recvmmsg`/`sendmmsg` on the data path.
//!
//! The [`Server`] composes one part per concern, each a module owning its
//! state: [`listen`] (the sockets clients connect to), [`handshake`]
//! (control connections and port requests), [`datapath`] (frames in,
//! through the switch, out), [`flowio`] (flow control around the pure
//! [`crate::flow`] state machine), [`console`] (management connections and
//! capture streams, with the one capture tap). This file has the loop.

mod console;
mod datapath;
mod flowio;
mod handshake;
mod listen;
mod token;

use std::path::Path;
use std::time::{Duration, Instant};

use switch_core::emu::LinkTable;
use switch_core::{Config, EndpointId, Switch};
use umlkit_sys::net::{self as sys, Epoll, Event, Interest, SignalFd, TimerFd};

use crate::flow::Flow;
use crate::mgmt;
use crate::{Error, Logger, Options};
use console::Consoles;
use datapath::{Datapath, LinkIo, SLOT};
use handshake::Handshakes;
use listen::Listeners;
use net_proto::ctl::Dialect;
use token::Token;

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// `shutdown` from the management console.
    Shutdown,
    /// SIGINT/SIGTERM/SIGHUP.
    Signal(i32),
}

/// The running switch.
pub struct Server {
    opts: Options,
    pub(crate) log: Logger,
    epoll: Epoll,
    /// Created in [`Server::run`] (a signalfd does not survive daemonizing).
    signals: Option<SignalFd>,
    listen: Listeners,
    ctl: Handshakes,
    dp: Datapath,
    flow: Flow,
    console: Consoles,
    pub(crate) switch: Switch,
    pub(crate) start: Instant,
    pub(crate) mac: [u8; 6],
    exit: Option<ExitReason>,
    pub(crate) stats: LoopStats,
    pub(crate) links: LinkTable,
    lio: LinkIo,
}

/// Event loop counters (shown by `port/stats`): how well batching works.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LoopStats {
    pub waits: u64,
    pub recv_calls: u64,
    pub frames_in: u64,
    pub send_calls: u64,
    pub frames_out: u64,
    /// Port requests refused because the client named a socket it could
    /// not reach itself.
    pub refused_sockets: u64,
    /// Frames released by an emulated link after their endpoint left.
    pub link_orphans: u64,
}

impl Server {
    /// Create every socket and directory; nothing is served until [`Server::run`].
    pub fn bind(opts: Options, log: Logger) -> Result<Server, Error> {
        if opts.vde_dir.is_none() && opts.uml_ctl.is_none() {
            return Err(Error::NothingToServe);
        }
        let epoll = Epoll::new().map_err(Error::Poll)?;
        let listen = Listeners::bind(&opts, &epoll)?;
        let seed = (std::process::id() as u64) << 20 ^ sys::time_usecs() as u64;
        // without a timerfd, link deadlines fall back to epoll's milliseconds
        let timer = TimerFd::new().ok().filter(|t| {
            epoll
                .add(t.fd(), Token::Timer.encode(), Interest::READ)
                .is_ok()
        });
        let s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes();
        let mac = [0x00, 0xff, s[0], s[1], s[2], s[3]];
        Ok(Server {
            switch: Switch::new(Config {
                numports: opts.numports,
                hub: opts.hub,
                max_frame: net_proto::eth::max_frame_for_mtu(opts.mtu),
            }),
            opts,
            log,
            epoll,
            signals: None,
            listen,
            ctl: Handshakes::new(),
            dp: Datapath::new(),
            flow: flowio::new_flow(),
            console: Consoles::new(),
            start: Instant::now(),
            mac,
            exit: None,
            stats: LoopStats::default(),
            links: LinkTable::new(seed),
            lio: LinkIo {
                released: Vec::new(),
                timer,
                timer_armed: None,
                link_actions: Vec::new(),
                link_scratch: vec![0; SLOT],
            },
        })
    }

    /// Run one management command as the console would; returns its
    /// reply (data block, status line, prompt).
    pub fn command(&mut self, line: &str) -> String {
        mgmt::execute(self, line).0
    }

    /// Run a vde_switch rc file (`-f`): one management command per line,
    /// `#` comments and blank lines skipped. Stops at the first command
    /// the switch refuses.
    pub fn run_rc_file(&mut self, path: &Path) -> Result<(), Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::RcRead {
            path: path.to_path_buf(),
            source,
        })?;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let reply = self.command(line);
            let status = crate::client::status_of(&reply);
            if status.0 != 0 {
                return Err(Error::RcCommand {
                    path: path.to_path_buf(),
                    line: i + 1,
                    command: line.to_string(),
                    status: status.1,
                });
            }
        }
        Ok(())
    }

    /// Give up before [`Server::run`]: remove the sockets made by
    /// [`Server::bind`] (and the switch directory if empty).
    pub fn close(mut self) {
        self.shutdown();
    }

    /// Set the impairments of a port (as `link/set`).
    pub fn set_link(
        &mut self,
        port: u32,
        dir: net_proto::link::LinkDir,
        spec: net_proto::link::LinkSpec,
    ) -> Result<(), Error> {
        if port >= self.switch.numports() {
            return Err(Error::NoSuchPort {
                port,
                numports: self.switch.numports(),
            });
        }
        self.links.set(port, dir, spec);
        Ok(())
    }

    pub(crate) fn opts(&self) -> &Options {
        &self.opts
    }

    /// Give the logger to syslog (after daemonizing).
    pub fn logger_mut(&mut self) -> &mut Logger {
        &mut self.log
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Serve until shutdown or a signal, then remove the sockets (and the
    /// switch directory if it is empty).
    pub fn run(mut self) -> Result<ExitReason, Error> {
        let signals = SignalFd::new(&[SIGINT, SIGTERM, SIGHUP]).map_err(Error::Poll)?;
        self.epoll
            .add(signals.fd(), Token::Signal.encode(), Interest::READ)
            .map_err(Error::Poll)?;
        self.signals = Some(signals);
        let mut events = Vec::with_capacity(256);
        let reason = loop {
            let now = self.now();
            let deadline = self.switch.next_deadline();
            if now >= deadline {
                self.switch.gc(now);
                self.expire_handshakes(now);
            }
            self.expire_pending(now);
            self.release_links();
            let mut wait = self.switch.next_deadline().saturating_sub(self.now());
            if let Some(dl) = self.flow.next_deadline() {
                wait = wait.min(dl.saturating_sub(now));
            }
            if let Some(dl) = self.links.next_deadline() {
                let left = dl.saturating_sub(self.now());
                match &self.lio.timer {
                    Some(t) => {
                        if self.lio.timer_armed != Some(dl) {
                            let _ = t.arm(Some(left));
                            self.lio.timer_armed = Some(dl);
                        }
                    }
                    None => wait = wait.min(left),
                }
            }
            let timeout = (wait.as_millis() as i32).clamp(1, 2000);
            // Busy-poll briefly after traffic before sleeping: saves the
            // sleep/wake-up cost per small batch under load.
            events.clear();
            if self.dp.busy && !self.dp.spin.is_zero() {
                let t0 = Instant::now();
                while events.is_empty() && t0.elapsed() < self.dp.spin {
                    self.epoll.wait(&mut events, 0).map_err(Error::Poll)?;
                }
            }
            if events.is_empty() {
                self.epoll.wait(&mut events, timeout).map_err(Error::Poll)?;
            }
            self.stats.waits += 1;
            self.dp.busy = false;
            for ev in &events {
                self.dispatch(*ev);
            }
            if self.console.dirty {
                self.flush_captures();
            }
            if let Some(r) = self.exit {
                break r;
            }
        };
        self.shutdown();
        Ok(reason)
    }

    fn dispatch(&mut self, ev: Event) {
        let Some(tok) = Token::decode(ev.token) else {
            return;
        };
        match tok {
            Token::Signal => {
                if let Some(sig) = self.signals.as_ref().and_then(SignalFd::read) {
                    self.exit = Some(ExitReason::Signal(sig));
                }
            }
            Token::VdeListener => self.accept_ctl(Dialect::Vde),
            Token::UmlListener => self.accept_ctl(Dialect::UmlSwitch),
            Token::MgmtListener => self.accept_mgmt(),
            Token::VecListener => self.accept_vec(),
            Token::Ctl(fd) => self.on_ctl(fd),
            Token::Data(ep) => {
                if ev.writable {
                    self.flush_pending(ep);
                }
                if (ev.readable || ev.hangup) && !self.flow.is_paused(ep) {
                    self.on_data(ep);
                }
            }
            Token::Shared(i) => self.on_shared(i),
            Token::Mgmt(fd) => self.on_mgmt(fd, ev),
            Token::Timer => {
                if let Some(t) = &self.lio.timer {
                    t.clear();
                }
                self.lio.timer_armed = None;
                self.release_links();
            }
        }
    }

    /// Endpoint details for `port/print`: (id, module, description).
    pub(crate) fn endpoint_module(&self, ep: EndpointId) -> &'static str {
        self.dp
            .eps
            .get(ep as usize)
            .and_then(Option::as_ref)
            .map(|e| e.module)
            .unwrap_or("unix prog")
    }

    /// Why endpoint `ep` fails, naming its client, if it does (`port/stats`).
    pub(crate) fn endpoint_trouble(&self, ep: EndpointId) -> Option<String> {
        self.flow.drop_mode(ep).then(|| {
            format!(
                "endpoint {ep} (client {}): socket full, its frames are dropped until it drains",
                self.ctl.peer(ep)
            )
        })
    }

    /// Close one endpoint (port/epclose).
    pub(crate) fn close_endpoint(&mut self, ep: EndpointId) {
        if self.ctl.vectors.contains_key(&ep) {
            self.close_vector(ep);
        } else {
            self.close_ctl(ep);
        }
    }

    fn shutdown(&mut self) {
        let fds: Vec<u32> = self
            .ctl
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| i as u32)
            .collect();
        for fd in fds {
            self.close_ctl(fd);
        }
        let vecs: Vec<u32> = self.ctl.vectors.keys().copied().collect();
        for ep in vecs {
            self.close_vector(ep);
        }
        self.listen.remove_files(&self.opts);
    }
}

use sys::{SIGHUP, SIGINT, SIGTERM};

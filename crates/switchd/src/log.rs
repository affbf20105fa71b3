//! Logging: stderr (or syslog when daemonized), with a rate limit for
//! messages a peer can trigger.

use std::time::Instant;

/// Where log lines go.
pub struct Logger {
    prefix: String,
    syslog: bool,
    /// Token bucket for peer-triggered messages.
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

/// Peer-triggered messages allowed per second (burst of the same size).
const RATE: f64 = 20.0;

impl Logger {
    pub fn new(prefix: &str) -> Logger {
        Logger {
            prefix: prefix.to_string(),
            syslog: false,
            tokens: RATE,
            last: Instant::now(),
            suppressed: 0,
        }
    }

    /// Send further messages to syslog.
    pub fn use_syslog(&mut self, ident: &str) {
        umlkit_sys::net::open_syslog(ident);
        self.syslog = true;
    }

    fn emit(&self, prio: i32, msg: &str) {
        if self.syslog {
            umlkit_sys::net::syslog(prio, msg);
        } else {
            eprintln!("{}{}", self.prefix, msg);
        }
    }

    /// An operator-level message (not rate limited).
    pub fn info(&self, msg: &str) {
        self.emit(umlkit_sys::net::LOG_INFO, msg);
    }

    pub fn error(&self, msg: &str) {
        self.emit(umlkit_sys::net::LOG_ERR, msg);
    }

    /// A message a peer can cause: at most [`RATE`] per second; the number
    /// suppressed is reported with the next one let through.
    pub fn peer(&mut self, msg: &str) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * RATE).min(RATE);
        if self.tokens < 1.0 {
            self.suppressed += 1;
            return;
        }
        self.tokens -= 1.0;
        if self.suppressed > 0 {
            let n = self.suppressed;
            self.suppressed = 0;
            self.emit(
                umlkit_sys::net::LOG_WARNING,
                &format!("({n} messages suppressed)"),
            );
        }
        self.emit(umlkit_sys::net::LOG_WARNING, msg);
    }

    /// Messages suppressed so far and not yet reported.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

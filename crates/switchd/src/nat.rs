//! `umlkit switch --nat`: a port of the switch whose far side is a
//! user-mode NAT (libslirp, as QEMU's user networking): guests on the
//! switch get DHCP (from 10.0.2.15), DNS (10.0.2.3, forwarded to the host's
//! resolvers) and outbound TCP/UDP through the switch user's own sockets,
//! with 10.0.2.2 as their gateway; `--forward` opens host ports that lead
//! to a guest's port. No privileges: nothing but ordinary sockets.
//!
//! The port joins the switch as a VDE client (like the VXLAN port), so
//! every kind of guest on the fabric (daemon, vde, vector) reaches it. Its
//! thread runs slirp's poll loop: frames from the switch go into slirp;
//! frames slirp emits go to the switch, dropped (and counted) when the
//! switch's socket is full, as on a wire.
//!
//! Only well-formed ARP and unfragmented IPv4 frames reach slirp
//! ([`admit`]): Debian's libslirp 4.7.0 crashes (SIGBUS in `slirp_input`)
//! on IPv4 fragments with arbitrary offsets, which any guest can send, and
//! a crash would take the whole switch down. Guests on the NAT therefore
//! cannot send fragmented IPv4 through it (TCP never does; a UDP datagram
//! over the MTU is dropped).
//!
//! [`Nat::new`] binds the host forwards in the calling thread, so a bad or
//! busy port fails `umlkit switch` before anything runs.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use umlkit_sys::slirp::{Config, Slirp};

use crate::plug::{Plug, PlugOptions};
use crate::{Error, Logger};

/// A host-to-guest port forward: `tcp:[HOSTIP:]HOSTPORT:GUESTIP:GUESTPORT`
/// (or `udp:`). The host address defaults to 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub udp: bool,
    pub host: Ipv4Addr,
    pub host_port: u16,
    pub guest: Ipv4Addr,
    pub guest_port: u16,
}

impl Forward {
    /// Parse a forward spec (`tcp:8080:10.0.2.15:80`,
    /// `udp:0.0.0.0:5353:10.0.2.15:53`); the guest address must be on the
    /// NAT network `net`/24 and not the gateway or DNS address.
    pub fn parse(s: &str, cfg: &Config) -> Result<Forward, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let udp = match parts[0] {
            "tcp" => false,
            "udp" => true,
            p => {
                return Err(format!(
                    "'{s}': the protocol must be tcp or udp, not '{p}' (e.g. tcp:8080:10.0.2.15:80)"
                ))
            }
        };
        let (host, rest) = match parts.len() {
            4 => (Ipv4Addr::LOCALHOST, &parts[1..]),
            5 => (
                parts[1]
                    .parse::<Ipv4Addr>()
                    .map_err(|_| format!("'{s}': '{}' is not an IPv4 address", parts[1]))?,
                &parts[2..],
            ),
            _ => {
                return Err(format!(
                    "'{s}': expected PROTO:[HOSTIP:]HOSTPORT:GUESTIP:GUESTPORT, e.g. tcp:8080:10.0.2.15:80"
                ))
            }
        };
        let port = |p: &str| -> Result<u16, String> {
            p.parse::<u16>()
                .ok()
                .filter(|n| *n != 0)
                .ok_or_else(|| format!("'{s}': '{p}' is not a port number (1-65535)"))
        };
        let host_port = port(rest[0])?;
        let guest: Ipv4Addr = rest[1]
            .parse()
            .map_err(|_| format!("'{s}': '{}' is not an IPv4 address", rest[1]))?;
        let guest_port = port(rest[2])?;
        let mask = u32::from(cfg.mask);
        let g = u32::from(guest);
        if g & mask != u32::from(cfg.net) & mask
            || g & !mask == 0
            || g & !mask == !mask
            || guest == cfg.host
            || guest == cfg.dns
        {
            return Err(format!(
                "'{s}': the guest address {guest} is not a guest's address on the NAT network {}/{} (gateway {}, DNS {})",
                cfg.net,
                mask.count_ones(),
                cfg.host,
                cfg.dns
            ));
        }
        Ok(Forward {
            udp,
            host,
            host_port,
            guest,
            guest_port,
        })
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}:{}",
            if self.udp { "udp" } else { "tcp" },
            self.host,
            self.host_port,
            self.guest,
            self.guest_port
        )
    }
}

/// What `--nat` serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatSpec {
    pub config: Config,
    pub forwards: Vec<Forward>,
}

impl NatSpec {
    /// QEMU's defaults, the given forwards (parsed and checked: no two on
    /// the same host port), and the host loopback on or off.
    pub fn new(forwards: &[String], no_host_loopback: bool) -> Result<NatSpec, Error> {
        let config = Config {
            no_host_loopback,
            ..Config::default()
        };
        let mut out: Vec<Forward> = Vec::new();
        for s in forwards {
            let f = Forward::parse(s, &config).map_err(Error::BadForward)?;
            if let Some(o) = out
                .iter()
                .find(|o| o.udp == f.udp && o.host_port == f.host_port)
            {
                return Err(Error::BadForward(format!(
                    "'{s}': host port {} is already forwarded by '{o}'",
                    f.host_port
                )));
            }
            out.push(f);
        }
        Ok(NatSpec {
            config,
            forwards: out,
        })
    }

    /// One line for logs and `port/print`: network, gateway, DNS, DHCP, forwards.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "net {}/{}, gateway {}, DNS {}, DHCP from {}, host loopback {}",
            c.net,
            u32::from(c.mask).count_ones(),
            c.host,
            c.dns,
            c.dhcp_start,
            if c.no_host_loopback {
                "refused".to_string()
            } else {
                format!("at {}", c.host)
            }
        );
        if !self.forwards.is_empty() {
            s.push_str(", forwards ");
            s.push_str(
                &self
                    .forwards
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        s
    }
}

/// Whether a frame from the switch may go into slirp: ARP (28 bytes of
/// payload at least) or IPv4 whose header is whole and consistent and
/// which is not a fragment. Everything else is dropped before libslirp
/// sees it (see the module notes).
pub fn admit(frame: &[u8]) -> bool {
    if frame.len() < 14 {
        return false;
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0806 => frame.len() >= 14 + 28,
        0x0800 => {
            let ip = &frame[14..];
            if ip.len() < 20 || ip[0] >> 4 != 4 {
                return false;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            ihl >= 20 && ihl <= total && total <= ip.len() && frag & 0x3fff == 0
        }
        _ => false,
    }
}

/// Counters of the NAT port (logged when it ends).
#[derive(Debug, Default)]
pub struct NatCounters {
    /// Frames from the switch into slirp.
    pub from_switch: AtomicU64,
    /// Frames from slirp into the switch.
    pub to_switch: AtomicU64,
    /// Frames dropped (switch socket full).
    pub dropped: AtomicU64,
    /// Frames from the switch that slirp does not get ([`admit`]).
    pub filtered: AtomicU64,
}

/// A NAT stack with its host forwards bound, not yet on the switch.
pub struct Nat {
    slirp: Slirp,
    spec: NatSpec,
    /// The port on the switch, while it is up (slirp's frames go there).
    plug: Arc<Mutex<Option<Arc<Plug>>>>,
    counters: Arc<NatCounters>,
    /// Where slirp's complaints about guest frames go (set by [`spawn`]).
    log: Arc<Mutex<Option<Logger>>>,
}

impl Nat {
    /// Create the stack and bind every forward (a bad or busy host port is
    /// an error naming the forward).
    pub fn new(spec: &NatSpec) -> Result<Nat, Error> {
        let plug: Arc<Mutex<Option<Arc<Plug>>>> = Arc::new(Mutex::new(None));
        let counters = Arc::new(NatCounters::default());
        let (p, c) = (plug.clone(), counters.clone());
        let send = move |frame: &[u8]| match p
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|p| p.send(frame))
        {
            Some(Ok(())) => {
                c.to_switch.fetch_add(1, Relaxed);
            }
            _ => {
                c.dropped.fetch_add(1, Relaxed);
            }
        };
        let log: Arc<Mutex<Option<Logger>>> = Arc::new(Mutex::new(None));
        let l = log.clone();
        let guest_error = move |msg: &str| {
            if let Some(l) = l.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                l.peer(&format!("nat: guest error: {msg}"));
            }
        };
        let mut slirp = Slirp::new(&spec.config, send, guest_error).map_err(Error::Nat)?;
        for f in &spec.forwards {
            slirp
                .add_hostfwd(f.udp, f.host, f.host_port, f.guest, f.guest_port)
                .map_err(|source| Error::Forward {
                    spec: f.to_string(),
                    source,
                })?;
        }
        Ok(Nat {
            slirp,
            spec: spec.clone(),
            plug,
            counters,
            log,
        })
    }
}

/// Run the NAT port of the switch at `dir` in a thread, for the life of
/// the process. It takes switch port `port` (the last one: guests asking
/// for ports from 1, as lab machines do, never land on it); when the switch
/// ends the port (`port/epclose`), it joins again, with a growing pause (1 s
/// up to 10 s) while that fails. Slirp's state (connections, leases,
/// forwards) lives on meanwhile.
pub fn spawn(nat: Nat, dir: PathBuf, port: u32, mut log: Logger, peer_log: Logger) {
    std::thread::spawn(move || {
        let Nat {
            mut slirp,
            spec,
            plug,
            counters,
            log: guest_log,
        } = nat;
        *guest_log.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer_log);
        let mut pause = std::time::Duration::from_secs(1);
        let mut said = false;
        loop {
            match open_port(&dir, port, &spec) {
                Ok(p) => {
                    let p = Arc::new(p);
                    *plug.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
                    log.info(&format!("nat: port up: {}", spec.describe()));
                    let why = relay(&mut slirp, &p, &counters);
                    *plug.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    log.info(&format!(
                        "nat: port closed ({why}; from switch {}, to switch {}, dropped {}, filtered {}); joining again",
                        counters.from_switch.load(Relaxed),
                        counters.to_switch.load(Relaxed),
                        counters.dropped.load(Relaxed),
                        counters.filtered.load(Relaxed)
                    ));
                    pause = std::time::Duration::from_secs(1);
                    said = false;
                }
                Err(e) => {
                    if !said {
                        log.peer(&format!("nat: {}; retrying", crate::vxlan::chain(&e)));
                        said = true;
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_secs(10));
                }
            }
        }
    });
}

/// Join the switch at `dir` on port `port`, non-blocking.
fn open_port(dir: &std::path::Path, port: u32, spec: &NatSpec) -> Result<Plug, Error> {
    let opened = Plug::open(
        &dir.display().to_string(),
        &PlugOptions {
            // short: the switch keeps 128 bytes of it, with user and pid
            descr: format!(
                "umlkit nat {}/{} gw {}",
                spec.config.net,
                u32::from(spec.config.mask).count_ones(),
                spec.config.host
            ),
            port: Some(port),
            ..PlugOptions::default()
        },
    );
    opened.and_then(|p| {
        p.set_nonblocking(true).map_err(|source| Error::Plug {
            url: dir.display().to_string(),
            what: "cannot make the NAT port non-blocking".into(),
            source,
        })?;
        Ok(p)
    })
}

/// Slirp's poll loop with the switch port as one more source.
fn relay(slirp: &mut Slirp, plug: &Plug, counters: &NatCounters) -> String {
    let mut buf = vec![0u8; net_proto::stream::MAX_FRAME + 64];
    loop {
        let ready = match slirp.poll(&[plug.data_fd(), plug.ctl_fd()], 1000) {
            Ok(r) => r,
            Err(e) => return format!("poll failed: {e}"),
        };
        if ready & 0b10 != 0 && plug.ctl_closed() {
            return "the switch ended the port".into();
        }
        if ready & 0b01 == 0 {
            continue;
        }
        // drain until the socket would block
        loop {
            match plug.recv(&mut buf) {
                Ok(n) if admit(&buf[..n]) => {
                    counters.from_switch.fetch_add(1, Relaxed);
                    slirp.input(&buf[..n]);
                }
                Ok(_) => {
                    counters.filtered.fetch_add(1, Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return format!("the switch port failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Forward, String> {
        Forward::parse(s, &Config::default())
    }

    #[test]
    fn forward_specs() {
        let f = parse("tcp:8080:10.0.2.15:80").unwrap();
        assert_eq!(
            f,
            Forward {
                udp: false,
                host: Ipv4Addr::LOCALHOST,
                host_port: 8080,
                guest: Ipv4Addr::new(10, 0, 2, 15),
                guest_port: 80
            }
        );
        assert_eq!(f.to_string(), "tcp:127.0.0.1:8080:10.0.2.15:80");
        let u = parse("udp:0.0.0.0:5353:10.0.2.16:53").unwrap();
        assert!(u.udp);
        assert_eq!(u.host, Ipv4Addr::UNSPECIFIED);
        assert_eq!(parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn bad_forward_specs_name_the_problem() {
        for (s, why) in [
            ("sctp:8080:10.0.2.15:80", "tcp or udp"),
            ("tcp:8080", "expected PROTO"),
            ("tcp:8080:80", "expected PROTO"),
            ("tcp:0:10.0.2.15:80", "'0' is not a port"),
            ("tcp:70000:10.0.2.15:80", "'70000' is not a port"),
            ("tcp:8080:10.0.2.15:http", "'http' is not a port"),
            (
                "tcp:localhost:8080:10.0.2.15:80",
                "'localhost' is not an IPv4",
            ),
            ("tcp:8080:10.0.3.15:80", "not a guest's address"),
            ("tcp:8080:10.0.2.2:80", "not a guest's address"),
            ("tcp:8080:10.0.2.3:80", "not a guest's address"),
            ("tcp:8080:10.0.2.255:80", "not a guest's address"),
            ("tcp:8080:10.0.2.15:80:1", "'8080' is not an IPv4"),
            ("", "tcp or udp"),
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    fn ipv4(frag: u16, ihl_words: u8, total: u16, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x40 | ihl_words;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[20..22].copy_from_slice(&frag.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 2, 15]);
        f[30..34].copy_from_slice(&[10, 0, 2, 2]);
        f
    }

    #[test]
    fn admit_lets_through_arp_and_whole_ipv4_only() {
        assert!(admit(&ipv4(0, 5, 28, 8)));
        assert!(admit(&ipv4(0x4000, 5, 28, 8)), "DF is fine");
        assert!(!admit(&ipv4(0x2000, 5, 28, 8)), "MF");
        assert!(!admit(&ipv4(0x0001, 5, 28, 8)), "an offset");
        assert!(!admit(&ipv4(0, 4, 28, 8)), "ihl < 5");
        assert!(!admit(&ipv4(0, 5, 19, 8)), "total < header");
        assert!(!admit(&ipv4(0, 5, 29, 8)), "total > frame");
        assert!(!admit(&ipv4(0, 15, 28, 8)), "header > total");
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(admit(&arp));
        assert!(!admit(&arp[..41]));
        let mut v6 = ipv4(0, 5, 28, 8);
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert!(!admit(&v6));
        assert!(!admit(&[0u8; 13]));
    }

    /// Regression (reliability scenario 90): UDP fragments with arbitrary
    /// offsets crashed the whole switch with SIGBUS inside libslirp 4.7's
    /// `slirp_input`. The same frames go through the port's path here
    /// (filter, then slirp); without the filter this test process dies.
    #[test]
    fn hostile_fragments_do_not_crash_the_nat() {
        let mut s = Slirp::new(&Config::default(), |_| {}, |_| {}).unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut passed = 0;
        for _ in 0..3000 {
            let len = (next() % 300) as usize;
            let mut f = ipv4(next() as u16, 5, (20 + len) as u16, len);
            f[0..6].copy_from_slice(&[0x52, 0x55, 10, 0, 2, 2]);
            f[6..12].copy_from_slice(&[2, 0, 0, 0, 9, 1]);
            for b in &mut f[34..] {
                *b = next() as u8;
            }
            f[18..20].copy_from_slice(&(next() as u16).to_be_bytes());
            let sum = f[14..34]
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum::<u32>();
            let sum = (sum & 0xffff) + (sum >> 16);
            let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
            f[24..26].copy_from_slice(&sum.to_be_bytes());
            if admit(&f) {
                passed += 1;
                s.input(&f);
            }
        }
        assert!(passed > 0, "some unfragmented datagrams went in");
    }

    #[test]
    fn one_host_port_one_forward() {
        let e = NatSpec::new(
            &[
                "tcp:8080:10.0.2.15:80".into(),
                "tcp:8080:10.0.2.16:80".into(),
            ],
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("already forwarded"), "{e}");
        // tcp and udp on one port number are two forwards
        NatSpec::new(
            &[
                "tcp:8080:10.0.2.15:80".into(),
                "udp:8080:10.0.2.15:80".into(),
            ],
            true,
        )
        .unwrap();
    }
}

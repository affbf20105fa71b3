//! `umlkit switch --vxlan vni=N,remote=IP...`: a port of the switch whose
//! far side is a VXLAN segment (RFC 7348) over UDP, so switches on other
//! hosts, or Linux `vxlan` devices, share one Ethernet.
//!
//! Frames leaving the switch through this port are encapsulated and sent
//! to the VTEP that a unicast destination was last seen behind, else
//! flooded to every `remote` and the multicast `group`. Frames arriving
//! with our VNI are decapsulated into the switch; their source MAC teaches
//! the VTEP table. Wrong VNIs and short datagrams are dropped and counted.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_proto::vxlan::{self, VtepTable, VxlanSpec};

use crate::plug::{Plug, PlugOptions};
use crate::{Error, Logger};

/// How long a learned MAC-to-VTEP entry lives without traffic.
const TTL: Duration = Duration::from_secs(300);
/// Most MACs remembered per segment.
const MAX_MACS: usize = 65_536;

/// Counters of a VXLAN port (logged when the port ends).
#[derive(Debug, Default)]
pub struct VxlanCounters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub dropped: AtomicU64,
}

/// Bind the UDP socket of `spec` (joining its group), checked at start.
pub fn bind(spec: &VxlanSpec) -> Result<UdpSocket, Error> {
    let any: IpAddr = match spec.group.or(spec.remotes.first().map(|r| r.ip())) {
        Some(IpAddr::V6(_)) => Ipv6Addr::UNSPECIFIED.into(),
        _ => Ipv4Addr::UNSPECIFIED.into(),
    };
    // a socket bound to a unicast address never sees datagrams sent to a
    // group: with a group, `local` only picks the interface
    let bind_ip = match (spec.group, spec.local) {
        (Some(_), _) | (None, None) => any,
        (None, Some(l)) => l,
    };
    let at = SocketAddr::new(bind_ip, spec.port);
    let sock = UdpSocket::bind(at).map_err(|source| Error::Vxlan {
        what: format!("cannot bind UDP {at}"),
        source,
    })?;
    if let Some(g) = spec.group {
        let r = match (g, spec.local) {
            (IpAddr::V4(g), Some(IpAddr::V4(l))) => sock.join_multicast_v4(&g, &l),
            (IpAddr::V4(g), _) => sock.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED),
            (IpAddr::V6(g), _) => sock.join_multicast_v6(&g, 0),
        };
        r.map_err(|source| Error::Vxlan {
            what: format!("cannot join the multicast group {g}"),
            source,
        })?;
        if let (IpAddr::V4(_), Some(IpAddr::V4(l))) = (g, spec.local) {
            umlkit_sys::net::set_multicast_if_v4(std::os::fd::AsFd::as_fd(&sock), l).map_err(
                |source| Error::Vxlan {
                    what: format!("cannot send multicast through {l}"),
                    source,
                },
            )?;
        }
        let _ = sock.set_multicast_loop_v4(false);
    }
    // as the port sockets: bursts wait in the buffer instead of being
    // dropped (UDP has no flow control; the ~200 KiB default lost half of a
    // 64-byte blast in `umlkit bench net`)
    let buf = crate::Options::default().sock_buf;
    umlkit_sys::net::set_buffer_sizes(std::os::fd::AsFd::as_fd(&sock), buf, buf);
    Ok(sock)
}

/// Run the VXLAN port of the switch at `dir` on the bound `sock`, in two
/// threads, for the life of the process.
pub fn spawn(dir: PathBuf, spec: VxlanSpec, sock: UdpSocket, log: Logger) {
    std::thread::spawn(move || {
        let plug = match open_port(&dir, &spec) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                log.error(&format!("vxlan vni {}: {}", spec.vni, chain(&e)));
                return;
            }
        };
        log.info(&format!(
            "vxlan vni {}: port up, UDP {}, flooding to {}",
            spec.vni,
            sock.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            spec.flood_targets()
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ));
        let table = Arc::new(Mutex::new(VtepTable::new(MAX_MACS)));
        let counters = Arc::new(VxlanCounters::default());
        let t0 = Instant::now();
        let Ok(rx_sock) = sock.try_clone() else {
            log.error("vxlan: cannot share the UDP socket");
            return;
        };
        {
            let (plug, table, counters) = (plug.clone(), table.clone(), counters.clone());
            let vni = spec.vni;
            // vxvde peers listen for unicast on their source port
            let port = (!spec.reply_to_source).then_some(spec.port);
            std::thread::spawn(move || from_udp(&rx_sock, &plug, &table, &counters, vni, port, t0));
        }
        to_udp(&sock, &plug, &table, &counters, &spec, t0);
        log.info(&format!(
            "vxlan vni {}: port closed (sent {}, received {}, dropped {})",
            spec.vni,
            counters.sent.load(Relaxed),
            counters.received.load(Relaxed),
            counters.dropped.load(Relaxed)
        ));
    });
}

pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

fn open_port(dir: &Path, spec: &VxlanSpec) -> Result<Plug, Error> {
    Plug::open(
        &dir.display().to_string(),
        &PlugOptions {
            descr: format!("umlkit vxlan vni={}", spec.vni),
            ..PlugOptions::default()
        },
    )
}

/// Largest VXLAN datagram we handle: header, a jumbo frame, slack.
const SLOT: usize = vxlan::HEADER + net_proto::stream::MAX_FRAME + 64;

/// Send `datagrams` (bytes, destination) with as few `sendmmsg` calls as
/// the socket takes; whatever it would not take at once goes out one at a
/// time, blocking, as before batching (no loss added). `send_one` is the
/// blocking send. Returns how many were sent.
fn send_all(
    fd: std::os::fd::BorrowedFd<'_>,
    datagrams: &[(&[u8], Option<&[u8]>)],
    send_one: &mut dyn FnMut(usize) -> bool,
) -> u64 {
    let mut done = 0;
    let mut sent = 0u64;
    while done < datagrams.len() {
        let rest = &datagrams[done..];
        match umlkit_sys::net::send_batch(fd, rest.len(), |i| rest[i]) {
            Ok(n) if n > 0 => {
                done += n;
                sent += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => {
                // full (or failed): this one the blocking way, then batch on
                sent += send_one(done) as u64;
                done += 1;
            }
        }
    }
    sent
}

/// A socket address as the raw `sockaddr_in`/`sockaddr_in6` bytes that
/// `sendmmsg` takes: the buffer and how much of it is the address (no
/// allocation: this runs for every datagram sent).
fn sockaddr_bytes(a: &SocketAddr) -> ([u8; 28], usize) {
    let mut b = [0u8; 28];
    match a {
        SocketAddr::V4(v4) => {
            b[..2].copy_from_slice(&(libc_af::INET).to_ne_bytes());
            b[2..4].copy_from_slice(&v4.port().to_be_bytes());
            b[4..8].copy_from_slice(&v4.ip().octets());
            (b, 16)
        }
        SocketAddr::V6(v6) => {
            b[..2].copy_from_slice(&(libc_af::INET6).to_ne_bytes());
            b[2..4].copy_from_slice(&v6.port().to_be_bytes());
            b[4..8].copy_from_slice(&v6.flowinfo().to_be_bytes());
            b[8..24].copy_from_slice(&v6.ip().octets());
            b[24..28].copy_from_slice(&v6.scope_id().to_ne_bytes());
            (b, 28)
        }
    }
}

/// The sender of a datagram from raw `sockaddr` bytes (IPv4 or IPv6).
fn sockaddr_from(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    if family == libc_af::INET && b.len() >= 8 {
        let ip: [u8; 4] = b[4..8].try_into().ok()?;
        Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
    } else if family == libc_af::INET6 && b.len() >= 28 {
        let ip: [u8; 16] = b[8..24].try_into().ok()?;
        let scope = u32::from_ne_bytes(b[24..28].try_into().ok()?);
        Some(SocketAddr::V6(std::net::SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            0,
            scope,
        )))
    } else {
        None
    }
}

/// Address family numbers of Linux (`AF_INET`, `AF_INET6`).
mod libc_af {
    pub const INET: u16 = 2;
    pub const INET6: u16 = 10;
}

/// Frames out of the switch, encapsulated to their VTEP or flooded: the
/// first one waited for, then every frame already queued taken with one
/// `recvmmsg` and sent with one `sendmmsg`.
fn to_udp(
    sock: &UdpSocket,
    plug: &Plug,
    table: &Mutex<VtepTable>,
    counters: &VxlanCounters,
    spec: &VxlanSpec,
    t0: Instant,
) {
    use std::os::fd::AsFd;
    let flood = spec.flood_targets();
    let header = vxlan::header(spec.vni);
    let mut first = vec![0u8; SLOT];
    // the first frame plus at most MAX_BATCH - 1 more per round
    let mut batch = umlkit_sys::net::RecvBatch::new(umlkit_sys::net::MAX_BATCH - 1, SLOT);
    // encapsulated datagrams of one round, back to back
    let mut out = vec![0u8; umlkit_sys::net::MAX_BATCH * 2 * SLOT];
    loop {
        let n = match plug.recv(&mut first) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let more = batch.recv(plug.data_fd(), false).unwrap_or(0);
        // each datagram to send: (offset in out, length, destination)
        let mut dests: Vec<(usize, usize, SocketAddr)> = Vec::with_capacity(more + 1);
        let mut at = 0;
        let lookup = |f: &[u8]| {
            let mut dst = [0u8; 6];
            dst.copy_from_slice(&f[..6]);
            table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .lookup(&dst, t0.elapsed(), TTL)
        };
        for i in 0..=more {
            let f: &[u8] = if i == 0 {
                &first[..n]
            } else if batch.truncated(i - 1) {
                counters.dropped.fetch_add(1, Relaxed);
                continue;
            } else {
                batch.frame(i - 1)
            };
            if f.len() < 14 {
                counters.dropped.fetch_add(1, Relaxed);
                continue;
            }
            let len = vxlan::HEADER + f.len();
            out[at..at + vxlan::HEADER].copy_from_slice(&header);
            out[at + vxlan::HEADER..at + len].copy_from_slice(f);
            match lookup(f) {
                Some(v) => dests.push((at, len, v)),
                None => dests.extend(flood.iter().map(|t| (at, len, *t))),
            }
            at += len;
        }
        let addrs: Vec<([u8; 28], usize)> = dests.iter().map(|d| sockaddr_bytes(&d.2)).collect();
        let datagrams: Vec<(&[u8], Option<&[u8]>)> = dests
            .iter()
            .zip(&addrs)
            .map(|(&(off, len, _), (a, n))| (&out[off..off + len], Some(&a[..*n])))
            .collect();
        let sent = send_all(sock.as_fd(), &datagrams, &mut |i| {
            let (off, len, to) = dests[i];
            sock.send_to(&out[off..off + len], to).is_ok()
        });
        counters.sent.fetch_add(sent, Relaxed);
    }
}

/// Datagrams from the segment, decapsulated into the switch: every
/// datagram already queued taken with one `recvmmsg`, their frames sent
/// to the switch with one `sendmmsg`.
fn from_udp(
    sock: &UdpSocket,
    plug: &Plug,
    table: &Mutex<VtepTable>,
    counters: &VxlanCounters,
    vni: u32,
    port: Option<u16>,
    t0: Instant,
) {
    use std::os::fd::AsFd;
    let mut batch = umlkit_sys::net::RecvBatch::new(umlkit_sys::net::MAX_BATCH, SLOT);
    let mut peek = [0u8; 1];
    loop {
        let n = match batch.recv(sock.as_fd(), true) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // nothing queued: wait for a datagram without taking it
                match sock.peek_from(&mut peek) {
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut frames: Vec<&[u8]> = Vec::with_capacity(n);
        for i in 0..n {
            let Some(from) = sockaddr_from(batch.addr(i)) else {
                counters.dropped.fetch_add(1, Relaxed);
                continue;
            };
            let data = batch.frame(i);
            let peer = SocketAddr::new(from.ip(), port.unwrap_or(from.port()));
            if vxlan::is_goodbye(data, vni) {
                // vxvde closing: flood to its MACs again until they show up
                // elsewhere (a new vxvde has a new source port)
                table
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .forget_vtep(peer);
                continue;
            }
            if batch.truncated(i) {
                counters.dropped.fetch_add(1, Relaxed);
                continue;
            }
            let Ok(frame) = vxlan::decode(data, vni) else {
                counters.dropped.fetch_add(1, Relaxed);
                continue;
            };
            let mut src = [0u8; 6];
            src.copy_from_slice(&frame[6..12]);
            // a VTEP sends from any source port (Linux hashes flows over a
            // range) but listens on the VXLAN port: answer it there, unless
            // told to answer at the source port (vxvde)
            table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .learn(src, peer, t0.elapsed());
            frames.push(frame);
        }
        let datagrams: Vec<(&[u8], Option<&[u8]>)> = frames.iter().map(|f| (*f, None)).collect();
        let sent = send_all(plug.data_fd(), &datagrams, &mut |i| {
            plug.send(frames[i]).is_ok()
        });
        counters.received.fetch_add(sent, Relaxed);
        counters
            .dropped
            .fetch_add(frames.len() as u64 - sent, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::{sockaddr_bytes, sockaddr_from};
    use std::net::SocketAddr;

    #[test]
    fn socket_addresses_survive_the_raw_sockaddr_form() {
        for a in ["192.0.2.7:4789", "[2001:db8::1]:4790", "[fe80::1%3]:8472"] {
            let a: SocketAddr = a.parse().unwrap();
            let (b, n) = sockaddr_bytes(&a);
            assert_eq!(sockaddr_from(&b[..n]), Some(a), "{a}");
        }
        assert_eq!(sockaddr_from(&[]), None);
        assert_eq!(sockaddr_from(&[1, 0, 0, 0]), None, "AF_UNIX is no peer");
    }

    /// The kernel's own encoding, read back: what recvmmsg records for a
    /// real UDP sender is parsed to that sender.
    #[test]
    fn a_real_senders_address_is_read_from_recvmmsg() {
        use std::os::fd::AsFd;
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"hello", rx.local_addr().unwrap()).unwrap();
        let mut b = umlkit_sys::net::RecvBatch::new(4, 64);
        let mut n = 0;
        for _ in 0..100 {
            if let Ok(k) = b.recv(rx.as_fd(), true) {
                n = k;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(n, 1);
        assert_eq!(b.frame(0), b"hello");
        assert_eq!(sockaddr_from(b.addr(0)), Some(tx.local_addr().unwrap()));
    }
}

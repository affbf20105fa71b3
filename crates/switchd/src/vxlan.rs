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

/// Frames out of the switch, encapsulated to their VTEP or flooded.
fn to_udp(
    sock: &UdpSocket,
    plug: &Plug,
    table: &Mutex<VtepTable>,
    counters: &VxlanCounters,
    spec: &VxlanSpec,
    t0: Instant,
) {
    let flood = spec.flood_targets();
    let mut buf = vec![0u8; vxlan::HEADER + net_proto::stream::MAX_FRAME + 64];
    buf[..vxlan::HEADER].copy_from_slice(&vxlan::header(spec.vni));
    loop {
        let n = match plug.recv(&mut buf[vxlan::HEADER..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if n < 14 {
            counters.dropped.fetch_add(1, Relaxed);
            continue;
        }
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&buf[vxlan::HEADER..vxlan::HEADER + 6]);
        let known = table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lookup(&dst, t0.elapsed(), TTL);
        let datagram = &buf[..vxlan::HEADER + n];
        let sent = match known {
            Some(v) => sock.send_to(datagram, v).is_ok() as u64,
            None => flood
                .iter()
                .filter(|t| sock.send_to(datagram, *t).is_ok())
                .count() as u64,
        };
        counters.sent.fetch_add(sent, Relaxed);
    }
}

/// Datagrams from the segment, decapsulated into the switch.
fn from_udp(
    sock: &UdpSocket,
    plug: &Plug,
    table: &Mutex<VtepTable>,
    counters: &VxlanCounters,
    vni: u32,
    port: Option<u16>,
    t0: Instant,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let peer = SocketAddr::new(from.ip(), port.unwrap_or(from.port()));
        if vxlan::is_goodbye(&buf[..n], vni) {
            // vxvde closing: flood to its MACs again until they show up
            // elsewhere (a new vxvde has a new source port)
            table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget_vtep(peer);
            continue;
        }
        let Ok(frame) = vxlan::decode(&buf[..n], vni) else {
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
        if plug.send(frame).is_ok() {
            counters.received.fetch_add(1, Relaxed);
        } else {
            counters.dropped.fetch_add(1, Relaxed);
        }
    }
}

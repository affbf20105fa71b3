//! Management console commands run against the server state; output in
//! vde_switch's formats.

use std::fmt::Write;

use net_proto::mgmt::{self as m, MgmtCommand};
use switch_core::{Port, EXPIRE, GC_INTERVAL, HASH_SIZE};

use crate::server::Server;

fn user_str(u: Option<u32>) -> String {
    match u {
        None => "NONE".into(),
        Some(uid) => umlkit_sys::net::user_name(uid).unwrap_or_else(|| uid.to_string()),
    }
}

fn print_port(s: &Server, out: &mut String, n: u32, p: &Port) {
    let _ = writeln!(
        out,
        "Port {:04} untagged_vlan={:04} {}ACTIVE - {}Unnamed Allocatable",
        n,
        p.vlan,
        if p.active() { "" } else { "IN" },
        if p.allocatable { "" } else { "NOT " }
    );
    let _ = writeln!(
        out,
        " Current User: {} Access Control: (User: NONE - Group: NONE)",
        user_str(p.user)
    );
    let c = &p.counters;
    let _ = writeln!(
        out,
        " IN:  pkts {:10}          bytes {:20}",
        c.in_pkts, c.in_bytes
    );
    let _ = writeln!(
        out,
        " OUT: pkts {:10}          bytes {:20}",
        c.out_pkts, c.out_bytes
    );
    for &ep in &p.endpoints {
        let descr = s
            .switch
            .endpoint(ep)
            .map(|e| e.descr.as_str())
            .unwrap_or("");
        let _ = writeln!(
            out,
            "  -- endpoint ID {:04} module {:<12}: {}",
            ep,
            s.endpoint_module(ep),
            descr
        );
    }
}

fn print_ports(s: &Server, port: Option<u32>, all: bool) -> (String, i32) {
    let mut out = String::new();
    match port {
        Some(n) => {
            if n >= s.switch.numports() {
                return (out, m::EINVAL);
            }
            match s.switch.port(n) {
                Some(p) if all || p.active() => print_port(s, &mut out, n, p),
                _ => return (out, m::ENXIO),
            }
        }
        None => {
            for (n, p) in s.switch.ports() {
                if all || p.active() {
                    print_port(s, &mut out, n, p);
                }
            }
        }
    }
    (out, 0)
}

fn print_stats(s: &Server, port: Option<u32>) -> (String, i32) {
    let mut out = String::new();
    for (n, p) in s.switch.ports() {
        if port.is_some_and(|x| x != n) {
            continue;
        }
        let c = &p.counters;
        let _ = writeln!(
            out,
            "Port {:04} in_pkts={} in_bytes={} in_drops={} out_pkts={} out_bytes={} out_drops={}",
            n, c.in_pkts, c.in_bytes, c.in_drops, c.out_pkts, c.out_bytes, c.out_drops
        );
        for &ep in &p.endpoints {
            if let Some(t) = s.endpoint_trouble(ep) {
                let _ = writeln!(out, " -- {t}");
            }
        }
    }
    if port.is_none() {
        let st = s.stats;
        let _ = writeln!(
            out,
            "Loop waits={} recv_calls={} frames_in={} send_calls={} frames_out={} mac_table_full={} refused_sockets={} link_orphans={}",
            st.waits,
            st.recv_calls,
            st.frames_in,
            st.send_calls,
            st.frames_out,
            s.switch.table_full,
            st.refused_sockets,
            st.link_orphans
        );
    }
    (out, 0)
}

fn print_vlan(s: &Server, out: &mut String, v: u16, all: bool) {
    let _ = writeln!(out, "VLAN {:04}", v);
    for (port, tagged, active) in s.switch.vlan_members(v) {
        if !all && !active {
            continue;
        }
        let _ = writeln!(
            out,
            " -- Port {:04} tagged={} active={} status={}",
            port,
            tagged as u8,
            active as u8,
            if active { "Forwarding" } else { "Learning" }
        );
    }
}

fn mac_str(mac: &[u8; 6]) -> String {
    net_proto::MacAddr(*mac).to_string()
}

/// Run one console line. Returns (reply text, close the session, shut the
/// switch down).
pub(crate) fn execute(s: &mut Server, line: &str) -> (String, bool, bool) {
    use MgmtCommand as C;
    let cmd = match m::parse(line) {
        Ok(c) => c,
        Err(errno) => return (m::reply(None, errno), false, false),
    };
    let ok = |data: Option<String>| (m::reply(data.as_deref(), 0), false, false);
    let res = |r: Result<(), switch_core::Error>| match r {
        Ok(()) => (m::reply(None, 0), false, false),
        Err(e) => (m::reply(None, e.errno()), false, false),
    };
    match cmd {
        C::Nothing => (m::PROMPT.to_string(), false, false),
        C::Help(prefix) => ok(Some(m::help_text(prefix.as_deref()))),
        C::Logout => (m::END_OF_SESSION.to_string(), true, false),
        C::Shutdown => (m::END_OF_SESSION.to_string(), true, true),
        C::ShowInfo => {
            let mut out = String::new();
            out.push_str(m::BANNER);
            out.push('\n');
            let _ = writeln!(
                out,
                "pid {} MAC {} uptime {}",
                std::process::id(),
                mac_str(&s.mac),
                s.start.elapsed().as_secs()
            );
            if let Some(p) = &s.opts().mgmt {
                let _ = writeln!(out, "mgmt {} perm {:04o}", p.display(), s.opts().mgmt_mode);
            }
            ok(Some(out))
        }
        C::DsShowInfo => {
            let mut out = String::new();
            if let Some(d) = &s.opts().vde_dir {
                let _ = writeln!(out, "ctl dir {}", d.display());
            }
            let _ = writeln!(out, "std mode {:04o}", s.opts().mode);
            if let Some(u) = &s.opts().uml_ctl {
                let _ = writeln!(out, "uml_switch ctl {}", u.display());
            }
            ok(Some(out))
        }
        C::PortShowInfo => ok(Some(format!(
            "Numports={}\nHUB={}\ncounters=true\n",
            s.switch.numports(),
            s.switch.hub()
        ))),
        C::PortPrint { port, all } => {
            let (out, errno) = print_ports(s, port, all);
            (m::reply(Some(&out), errno), false, false)
        }
        C::PortStats(port) => {
            let (out, errno) = print_stats(s, port);
            (m::reply(Some(&out), errno), false, false)
        }
        C::PortSetNumPorts(n) => match s.switch.set_numports(n) {
            // vde_switch tries to allocate them all (and aborts): say why
            Err(e @ switch_core::Error::TooManyPorts(_)) => {
                (m::reply(Some(&format!("{e}\n")), e.errno()), false, false)
            }
            r => res(r),
        },
        C::PortSetHub(h) => {
            s.switch.set_hub(h);
            ok(None)
        }
        C::PortSetVlan { port, vlan } => res(s.switch.set_port_vlan(port, vlan)),
        C::PortCreateAuto => match s.switch.create_port_auto() {
            Ok(n) => ok(Some(format!("Port {:04}\n", n))),
            Err(e) => (m::reply(None, e.errno()), false, false),
        },
        C::PortCreate(n) => res(s.switch.create_port(n)),
        C::PortRemove(n) => {
            let r = s.switch.remove_port(n);
            if r.is_ok() {
                s.links.remove_port(n);
            }
            res(r)
        }
        C::PortResetCounter(n) => res(s.switch.reset_counters(n)),
        C::PortEpClose { port, id } => {
            let on_port = s.switch.endpoint(id).is_some_and(|e| e.port == port);
            if !on_port {
                return (m::reply(None, m::ENXIO), false, false);
            }
            s.close_endpoint(id);
            ok(None)
        }
        C::HashShowInfo => ok(Some(format!(
            "Hash size {}\nGC interval {} secs\nGC expire {} secs\nMin persistence 3 secs\n",
            HASH_SIZE,
            GC_INTERVAL.as_secs(),
            EXPIRE.as_secs()
        ))),
        C::HashPrint => {
            let now = s.start.elapsed();
            let mut out = String::new();
            for e in s.switch.mac_entries() {
                let _ = writeln!(
                    out,
                    "Hash: {:04} Addr: {} VLAN {:04} to port: {:03}  age {} secs",
                    e.bucket(),
                    e.mac,
                    e.vlan,
                    e.port,
                    now.saturating_sub(e.last_seen).as_secs()
                );
            }
            ok(Some(out))
        }
        C::HashFind { mac, vlan } => match s.switch.lookup(mac, vlan) {
            Some(p) => ok(Some(format!(
                "Hash: Addr: {} VLAN {:04} to port: {:03}\n",
                mac, vlan, p
            ))),
            None => (m::reply(Some(""), m::ENODEV), false, false),
        },
        C::HashDelete { mac, vlan } => res(s.switch.delete_mac(mac, vlan)),
        C::VlanCreate(v) => res(s.switch.create_vlan(v)),
        C::VlanRemove(v) => res(s.switch.remove_vlan(v)),
        C::VlanAddPort { vlan, port } => res(s.switch.vlan_add_port(vlan, port)),
        C::VlanDelPort { vlan, port } => res(s.switch.vlan_del_port(vlan, port)),
        C::VlanPrint { vlan, all } => {
            let mut out = String::new();
            match vlan {
                Some(v) => {
                    if v > switch_core::MAX_VLAN {
                        return (m::reply(Some(""), m::EINVAL), false, false);
                    }
                    if !s.switch.vlan_exists(v) {
                        return (m::reply(Some(""), m::ENXIO), false, false);
                    }
                    print_vlan(s, &mut out, v, all);
                }
                None => {
                    let vs: Vec<u16> = s.switch.vlans().collect();
                    for v in vs {
                        print_vlan(s, &mut out, v, all);
                    }
                }
            }
            ok(Some(out))
        }
        C::LinkSet { port, dir, spec } => {
            if port >= s.switch.numports() {
                return (m::reply(None, m::EINVAL), false, false);
            }
            s.links.set(port, dir, spec);
            ok(None)
        }
        C::LinkShow(port) => match s.links.show(port) {
            Some(text) => ok(Some(text)),
            None => (m::reply(Some(""), m::ENXIO), false, false),
        },
        // only on a console connection (handled by the server loop)
        C::CaptureStart { .. } => (m::reply(None, m::EINVAL), false, false),
        C::LinkClear { port, dir } => {
            if port >= s.switch.numports() {
                return (m::reply(None, m::EINVAL), false, false);
            }
            s.links.clear(port, dir);
            ok(None)
        }
    }
}

use super::*;
use proptest::prelude::*;

const S: Duration = Duration::from_secs(1);

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&[0x08, 0x00]);
    v.extend_from_slice(payload);
    v
}

fn tagged(dst: [u8; 6], src: [u8; 6], vlan: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&[0x81, 0x00]);
    v.extend_from_slice(&vlan.to_be_bytes());
    v.extend_from_slice(&[0x08, 0x00]);
    v.extend_from_slice(payload);
    v
}

fn send(sw: &mut Switch, now: Duration, from: EndpointId, f: &[u8]) -> (Outcome, Vec<Action>) {
    let mut out = Vec::new();
    let o = sw.handle_frame(now, from, f, &mut out);
    out.sort_by_key(|a| a.to);
    (o, out)
}

fn to(eps: &[EndpointId]) -> Vec<Action> {
    eps.iter()
        .map(|&to| Action {
            to,
            egress: Egress::AsIs,
        })
        .collect()
}

fn three(hub: bool) -> Switch {
    let mut sw = Switch::new(Config {
        numports: 32,
        hub,
        ..Config::default()
    });
    assert_eq!(sw.connect(5, PortRequest::Any, Some(0), "A"), Ok(1));
    assert_eq!(sw.connect(6, PortRequest::Any, Some(0), "B"), Ok(2));
    assert_eq!(sw.connect(7, PortRequest::Any, Some(0), "C"), Ok(3));
    sw
}

/// uml-switch-daemon.md §3, the verified three-client table.
#[test]
fn uml_switch_verified_table() {
    let mut sw = three(false);
    let bc = [0xff; 6];
    let (_, out) = send(&mut sw, S, 5, &frame(bc, mac(1), b"x"));
    assert_eq!(out, to(&[6, 7]));
    let (o, out) = send(&mut sw, S, 5, &frame(mac(2), mac(1), b"x"));
    assert_eq!(out, to(&[6, 7]));
    assert!(matches!(o, Outcome::Forwarded { flooded: true, .. }));
    let (o, out) = send(&mut sw, S, 6, &frame(mac(1), mac(2), b"x"));
    assert_eq!(out, to(&[5]));
    assert!(matches!(o, Outcome::Forwarded { flooded: false, .. }));
    let (_, out) = send(&mut sw, S, 5, &frame(mac(2), mac(1), b"x"));
    assert_eq!(out, to(&[6]));
}

#[test]
fn hub_floods_learned_unicast() {
    let mut sw = three(true);
    send(&mut sw, S, 6, &frame([0xff; 6], mac(2), b"x"));
    let (_, out) = send(&mut sw, S, 5, &frame(mac(2), mac(1), b"x"));
    assert_eq!(out, to(&[6, 7]));
    assert!(sw.mac_entries().is_empty());
    // sethub 0 makes it a switch again
    sw.set_hub(false);
    send(&mut sw, S, 6, &frame([0xff; 6], mac(2), b"x"));
    let (_, out) = send(&mut sw, S, 5, &frame(mac(2), mac(1), b"x"));
    assert_eq!(out, to(&[6]));
}

#[test]
fn moved_mac_is_reported_and_same_port_dropped() {
    let mut sw = three(false);
    send(&mut sw, S, 5, &frame([0xff; 6], mac(1), b"x"));
    let (o, _) = send(&mut sw, S, 6, &frame([0xff; 6], mac(1), b"x"));
    assert_eq!(
        o,
        Outcome::Forwarded {
            flooded: true,
            moved: Some(Moved {
                mac: MacAddr(mac(1)),
                vlan: 0,
                from: 1,
                to: 2
            })
        }
    );
    // 6 sends to mac(1), now learned on its own port
    let (o, out) = send(&mut sw, S, 6, &frame(mac(1), mac(2), b"x"));
    assert_eq!(o, Outcome::Dropped(Drop::SamePort));
    assert!(out.is_empty());
}

#[test]
fn jumbo_frames_pass_only_a_switch_with_a_jumbo_mtu() {
    let jumbo = net_proto::eth::max_frame_for_mtu(9000);
    let mut sw = Switch::new(Config {
        numports: 8,
        hub: false,
        max_frame: jumbo,
    });
    assert_eq!(sw.connect(5, PortRequest::Any, Some(0), "A"), Ok(1));
    assert_eq!(sw.connect(6, PortRequest::Any, Some(0), "B"), Ok(2));
    let (o, out) = send(&mut sw, S, 5, &vec![0xffu8; jumbo]);
    assert!(matches!(o, Outcome::Forwarded { .. }), "{o:?}");
    assert_eq!(out, to(&[6]));
    let (o, _) = send(&mut sw, S, 5, &vec![0xffu8; jumbo + 1]);
    assert!(matches!(
        o,
        Outcome::Dropped(Drop::Frame(FrameError::Giant { .. }))
    ));
    // the usual switch drops it; an absurd setting is clamped to the jumbo maximum
    let (o, _) = send(&mut three(false), S, 5, &vec![0xffu8; jumbo]);
    assert!(matches!(
        o,
        Outcome::Dropped(Drop::Frame(FrameError::Giant { .. }))
    ));
    let mut huge = Switch::new(Config {
        max_frame: 1 << 20,
        ..Config::default()
    });
    assert_eq!(huge.connect(5, PortRequest::Any, Some(0), "A"), Ok(1));
    let (o, _) = send(&mut huge, S, 5, &vec![0xffu8; 20_000]);
    assert!(matches!(
        o,
        Outcome::Dropped(Drop::Frame(FrameError::Giant { max: 9234, .. }))
    ));
}

#[test]
fn length_limits_drop_and_count() {
    let mut sw = three(false);
    let (o, out) = send(&mut sw, S, 5, &[0u8; 13]);
    assert_eq!(o, Outcome::Dropped(Drop::Frame(FrameError::Runt(13))));
    assert!(out.is_empty());
    let (o, _) = send(&mut sw, S, 5, &vec![0xffu8; 1519]);
    assert_eq!(
        o,
        Outcome::Dropped(Drop::Frame(FrameError::Giant {
            len: 1519,
            max: 1518
        }))
    );
    let (o, out) = send(&mut sw, S, 5, &vec![0xffu8; 1518]);
    assert!(matches!(o, Outcome::Forwarded { .. }));
    assert_eq!(out.len(), 2);
    let c = sw.port(1).unwrap().counters;
    assert_eq!(c.in_drops, 2);
    assert_eq!(c.in_pkts, 1);
    assert_eq!(c.in_bytes, 1518);
    // 14 bytes exactly is fine
    let (o, _) = send(&mut sw, S, 5, &frame([0xff; 6], mac(1), b""));
    assert!(matches!(o, Outcome::Forwarded { .. }));
    // unknown endpoint
    let (o, _) = send(&mut sw, S, 99, &frame([0xff; 6], mac(1), b""));
    assert_eq!(o, Outcome::Dropped(Drop::UnknownEndpoint));
}

#[test]
fn aging() {
    let mut sw = three(false);
    send(&mut sw, S, 6, &frame([0xff; 6], mac(2), b"x"));
    assert_eq!(sw.gc(S * 100), 0);
    assert_eq!(sw.lookup(MacAddr(mac(2)), 0), Some(2));
    assert_eq!(sw.gc(S * 102), 1);
    assert_eq!(sw.lookup(MacAddr(mac(2)), 0), None);
    let (_, out) = send(&mut sw, S * 103, 5, &frame(mac(2), mac(1), b"x"));
    assert_eq!(out, to(&[6, 7]));
    assert_eq!(sw.next_deadline(), S * 104);
}

#[test]
fn port_allocation() {
    let mut sw = Switch::new(Config {
        numports: 4,
        hub: false,
        ..Config::default()
    });
    assert_eq!(
        sw.connect(10, PortRequest::Number(3), Some(1000), ""),
        Ok(3)
    );
    assert_eq!(
        sw.connect(11, PortRequest::Number(4), Some(1000), ""),
        Err(Error::PortOutOfRange(4))
    );
    assert_eq!(
        sw.connect(11, PortRequest::Number(3), Some(1001), ""),
        Err(Error::PortInUse(3))
    );
    // same user shares the port; root always may
    assert_eq!(
        sw.connect(11, PortRequest::Number(3), Some(1000), ""),
        Ok(3)
    );
    assert_eq!(sw.connect(12, PortRequest::Number(3), Some(0), ""), Ok(3));
    assert_eq!(sw.port(3).unwrap().endpoints, vec![10, 11, 12]);
    assert_eq!(sw.connect(13, PortRequest::Port0, None, ""), Ok(0));
    assert_eq!(sw.connect(14, PortRequest::Any, None, ""), Ok(1));
    assert_eq!(sw.connect(15, PortRequest::Any, None, ""), Ok(2));
    assert_eq!(
        sw.connect(16, PortRequest::Any, None, ""),
        Err(Error::NoFreePort)
    );
    assert_eq!(
        sw.connect(15, PortRequest::Any, None, ""),
        Err(Error::EndpointExists(15))
    );
    // a port is reused after its client leaves, and keeps its settings
    sw.create_vlan(7).unwrap();
    sw.set_port_vlan(1, 7).unwrap();
    assert_eq!(sw.disconnect(14), Ok(1));
    assert!(!sw.port(1).unwrap().active());
    assert_eq!(sw.connect(16, PortRequest::Any, None, ""), Ok(1));
    assert_eq!(sw.port(1).unwrap().vlan, 7);
    assert_eq!(sw.disconnect(99), Err(Error::NoSuchEndpoint(99)));
    // port/create ports are not picked automatically
    sw.disconnect(16).unwrap();
    sw.disconnect(15).unwrap();
    sw.remove_port(2).unwrap();
    sw.create_port(2).unwrap();
    assert_eq!(sw.connect(17, PortRequest::Any, None, ""), Ok(1));
    assert_eq!(
        sw.connect(18, PortRequest::Any, None, ""),
        Err(Error::NoFreePort)
    );
    assert_eq!(sw.connect(18, PortRequest::Number(2), None, ""), Ok(2));
}

#[test]
fn port_admin_errors() {
    let mut sw = three(false);
    assert_eq!(sw.create_port(1).unwrap_err().errno(), 17);
    assert_eq!(sw.remove_port(9).unwrap_err().errno(), 6);
    assert_eq!(sw.remove_port(1).unwrap_err().errno(), 98);
    assert_eq!(sw.set_numports(0).unwrap_err().errno(), 22);
    assert_eq!(sw.set_numports(3).unwrap_err().errno(), 98);
    sw.set_numports(8).unwrap();
    assert_eq!(sw.numports(), 8);
    sw.create_port(7).unwrap();
    assert_eq!(sw.set_numports(5).unwrap_err().errno(), 98);
    assert_eq!(sw.create_port_auto(), Ok(4));
    assert_eq!(sw.create_vlan(4095).unwrap_err().errno(), 22);
    assert_eq!(sw.create_vlan(0).unwrap_err().errno(), 22);
    sw.create_vlan(10).unwrap();
    assert_eq!(sw.create_vlan(10).unwrap_err().errno(), 17);
    sw.vlan_add_port(10, 2).unwrap();
    assert_eq!(sw.remove_vlan(10).unwrap_err().errno(), 98);
    sw.vlan_del_port(10, 2).unwrap();
    sw.remove_vlan(10).unwrap();
    assert_eq!(sw.remove_vlan(10).unwrap_err().errno(), 6);
    sw.reset_counters(None).unwrap();
    assert_eq!(sw.reset_counters(Some(7)), Ok(()));
    assert_eq!(sw.reset_counters(Some(70)).unwrap_err().errno(), 22);
    assert_eq!(sw.vlan_del_port(0, 1).unwrap_err().errno(), 98);
}

/// Issue 8.11: `port/setnumports 100000000` took the switch to 8 GiB and an
/// abort. The number is capped and ports exist only once used.
#[test]
fn setnumports_100000000_is_refused_and_ports_are_lazy() {
    let mut sw = three(false);
    let before = sw.numports();
    let e = sw.set_numports(100_000_000).unwrap_err();
    assert_eq!(e, Error::TooManyPorts(100_000_000));
    assert_eq!(e.errno(), 22);
    assert_eq!(sw.numports(), before, "a refused size changes nothing");
    sw.set_numports(MAX_NUMPORTS).unwrap();
    assert_eq!(sw.ports().count(), 3, "no port is allocated by resizing");
    let top = MAX_NUMPORTS - 1;
    assert_eq!(sw.connect(40, PortRequest::Number(top), None, ""), Ok(top));
    assert_eq!(
        sw.connect(41, PortRequest::Number(MAX_NUMPORTS), None, ""),
        Err(Error::PortOutOfRange(MAX_NUMPORTS))
    );
    assert_eq!(sw.ports().count(), 4);
    // the new far port gets flooded frames like any other
    let mut out = Vec::new();
    sw.handle_frame(S, 40, &frame([0xff; 6], mac(9), b"x"), &mut out);
    assert_eq!(out.len(), 3);
    // a switch asked for too many ports at start is clamped
    let big = Switch::new(Config {
        numports: 100_000_000,
        hub: false,
        ..Config::default()
    });
    assert_eq!(big.numports(), MAX_NUMPORTS);
}

/// vde.md §4, the verified VLAN example: ports 11 untagged VLAN 0; 12
/// untagged VLAN 10; 13 untagged VLAN 0 + tagged VLAN 10.
#[test]
fn vde_verified_vlan_table() {
    let mut sw = Switch::new(Config::default());
    sw.connect(1, PortRequest::Number(11), Some(0), "A")
        .unwrap();
    sw.connect(2, PortRequest::Number(12), Some(0), "B")
        .unwrap();
    sw.connect(3, PortRequest::Number(13), Some(0), "C")
        .unwrap();
    sw.create_vlan(10).unwrap();
    sw.set_port_vlan(12, 10).unwrap();
    sw.vlan_add_port(10, 13).unwrap();
    let bc = [0xff; 6];
    let (a, b, c) = (mac(1), mac(2), mac(3));
    // A bcast -> only C, untagged
    let (_, out) = send(&mut sw, S, 1, &frame(bc, a, b"fromA"));
    assert_eq!(out, to(&[3]));
    // B bcast -> only C, tagged 10
    let (_, out) = send(&mut sw, S, 2, &frame(bc, b, b"fromB"));
    assert_eq!(
        out,
        vec![Action {
            to: 3,
            egress: Egress::Tag(10)
        }]
    );
    // C tagged(10) bcast -> only B, tag stripped
    let (_, out) = send(&mut sw, S, 3, &tagged(bc, c, 10, b"fromC"));
    assert_eq!(
        out,
        vec![Action {
            to: 2,
            egress: Egress::Untag
        }]
    );
    // C tagged unicast to B -> B untagged
    let (_, out) = send(&mut sw, S, 3, &tagged(b, c, 10, b"x"));
    assert_eq!(
        out,
        vec![Action {
            to: 2,
            egress: Egress::Untag
        }]
    );
    // B unicast to C -> C tagged 10
    let (_, out) = send(&mut sw, S, 2, &frame(c, b, b"x"));
    assert_eq!(
        out,
        vec![Action {
            to: 3,
            egress: Egress::Tag(10)
        }]
    );
    // A tagged for VLAN 10: A is no tagged member -> dropped
    let (o, out) = send(&mut sw, S, 1, &tagged(bc, a, 10, b"x"));
    assert_eq!(o, Outcome::Dropped(Drop::VlanFilter));
    assert!(out.is_empty());
    // learning is per VLAN: c learned in VLAN 10 only via tagged frames
    assert_eq!(sw.lookup(MacAddr(c), 10), Some(13));
    assert_eq!(sw.lookup(MacAddr(c), 0), None);
    assert_eq!(
        sw.vlan_members(10),
        vec![(12, false, true), (13, true, true)]
    );
    // NOVLAN port drops untagged
    sw.set_port_vlan(11, NOVLAN).unwrap();
    let (o, _) = send(&mut sw, S, 1, &frame(bc, a, b"x"));
    assert_eq!(o, Outcome::Dropped(Drop::VlanFilter));
}

#[test]
fn multiple_endpoints_on_a_port_all_receive() {
    let mut sw = Switch::new(Config::default());
    sw.connect(1, PortRequest::Any, Some(0), "").unwrap();
    sw.connect(2, PortRequest::Number(3), Some(0), "").unwrap();
    sw.connect(3, PortRequest::Number(3), Some(0), "").unwrap();
    let (_, out) = send(&mut sw, S, 1, &frame([0xff; 6], mac(1), b""));
    assert_eq!(out, to(&[2, 3]));
    sw.record_tx(2, 20, true);
    sw.record_tx(3, 20, false);
    let c = sw.port(3).unwrap().counters;
    assert_eq!((c.out_pkts, c.out_bytes, c.out_drops), (1, 20, 1));
}

#[test]
fn leaving_forgets_addresses_and_delete_mac() {
    let mut sw = three(false);
    send(&mut sw, S, 6, &frame([0xff; 6], mac(2), b""));
    send(&mut sw, S, 7, &frame([0xff; 6], mac(3), b""));
    sw.disconnect(6).unwrap();
    assert_eq!(sw.lookup(MacAddr(mac(2)), 0), None);
    assert_eq!(sw.delete_mac(MacAddr(mac(3)), None), Ok(()));
    assert_eq!(
        sw.delete_mac(MacAddr(mac(3)), None),
        Err(Error::NoSuchEntry)
    );
}

#[test]
fn mac_table_is_bounded() {
    let mut sw = three(false);
    let mut out = Vec::new();
    for i in 0..(MAX_MACS as u32 + 10) {
        let b = i.to_be_bytes();
        let src = [2, 1, b[0], b[1], b[2], b[3]];
        out.clear();
        sw.handle_frame(S, 5, &frame([0xff; 6], src, b""), &mut out);
    }
    assert_eq!(sw.mac_entries().len(), MAX_MACS);
    assert_eq!(sw.table_full, 10);
}

#[derive(Debug, Clone)]
enum Op {
    Connect(u32, Option<u32>),
    Disconnect(u32),
    Frame(u32, u8, u8, Option<u16>, usize),
    Gc(u64),
    SetVlan(u32, u16),
    AddTagged(u16, u32),
    Hub(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u32..8, proptest::option::of(0u32..10)).prop_map(|(e, p)| Op::Connect(e, p)),
        (0u32..8).prop_map(Op::Disconnect),
        (
            0u32..8,
            0u8..6,
            0u8..6,
            proptest::option::of(0u16..3),
            0usize..1530
        )
            .prop_map(|(e, d, s, v, l)| Op::Frame(e, d, s, v, l)),
        (0u64..300).prop_map(Op::Gc),
        (0u32..8, 0u16..3).prop_map(|(p, v)| Op::SetVlan(p, v)),
        (0u16..3, 0u32..8).prop_map(|(v, p)| Op::AddTagged(v, p)),
        any::<bool>().prop_map(Op::Hub),
    ]
}

proptest! {
    /// Whatever happens, actions go only to connected endpoints on other
    /// ports, egress rewriting matches the frame, and counters add up.
    #[test]
    fn invariants(ops in proptest::collection::vec(op(), 1..200)) {
        let mut sw = Switch::new(Config {
            numports: 8,
            hub: false,
            ..Config::default()
        });
        sw.create_vlan(1).unwrap();
        sw.create_vlan(2).unwrap();
        let mut now = Duration::ZERO;
        let mut out = Vec::new();
        for op in ops {
            now += Duration::from_millis(700);
            match op {
                Op::Connect(e, p) => {
                    let req = p.map_or(PortRequest::Any, PortRequest::Number);
                    let _ = sw.connect(e, req, Some(0), "");
                }
                Op::Disconnect(e) => { let _ = sw.disconnect(e); }
                Op::Gc(s) => { sw.gc(now + Duration::from_secs(s)); }
                Op::SetVlan(p, v) => { let _ = sw.set_port_vlan(p, v); }
                Op::AddTagged(v, p) => { let _ = sw.vlan_add_port(v, p); }
                Op::Hub(h) => sw.set_hub(h),
                Op::Frame(e, d, s, v, len) => {
                    let dst = if d == 0 { [0xff; 6] } else { mac(d) };
                    let mut f = match v { Some(v) => tagged(dst, mac(s), v, b""), None => frame(dst, mac(s), b"") };
                    f.resize(len.max(f.len().min(len)), 0);
                    out.clear();
                    let o = sw.handle_frame(now, e, &f, &mut out);
                    let from_port = sw.endpoint(e).map(|x| x.port);
                    if !matches!(o, Outcome::Forwarded { .. }) {
                        prop_assert!(out.is_empty());
                    }
                    let is_tagged = Frame::new_checked(&f).ok().and_then(|x| x.vlan()).is_some();
                    for a in &out {
                        let ep = sw.endpoint(a.to);
                        prop_assert!(ep.is_some());
                        prop_assert!(Some(ep.unwrap().port) != from_port);
                        match a.egress {
                            Egress::Untag => prop_assert!(is_tagged),
                            Egress::Tag(_) => prop_assert!(!is_tagged),
                            Egress::AsIs => {}
                        }
                        if sw.hub() { prop_assert_eq!(a.egress, Egress::AsIs); }
                    }
                }
            }
            for m in sw.mac_entries() {
                prop_assert!(sw.port(m.port).is_some_and(|p| p.active()));
            }
        }
    }
}

#[test]
fn tagged_runt_is_dropped_and_counted_never_forwarded_still_tagged() {
    // trunk C (tagged member of 10) -> access port B (untagged 10): a
    // 16- or 17-byte 802.1Q frame has a VLAN id but no room for the inner
    // type; it could not be untagged, so it must go nowhere
    let mut sw = Switch::new(Config::default());
    sw.connect(2, PortRequest::Number(12), Some(0), "B")
        .unwrap();
    sw.connect(3, PortRequest::Number(13), Some(0), "C")
        .unwrap();
    sw.create_vlan(10).unwrap();
    sw.set_port_vlan(12, 10).unwrap();
    sw.vlan_add_port(10, 13).unwrap();
    let full = tagged([0xff; 6], mac(3), 10, b"");
    for len in [15, 16, 17] {
        let (o, out) = send(&mut sw, S, 3, &full[..len]);
        assert_eq!(o, Outcome::Dropped(Drop::TaggedRunt), "{len} bytes");
        assert!(out.is_empty(), "{len} bytes forwarded: {out:?}");
    }
    assert_eq!(sw.port(13).unwrap().counters.in_drops, 3);
    // 18 bytes (tag and inner type, no payload) still goes, untagged
    let (_, out) = send(&mut sw, S, 3, &full[..18]);
    assert_eq!(
        out,
        vec![Action {
            to: 2,
            egress: Egress::Untag
        }]
    );
}

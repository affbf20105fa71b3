use super::*;
use net_proto::link::LinkDir;
use proptest::prelude::*;

const MS: Duration = Duration::from_millis(1);

fn spec(s: &str) -> LinkSpec {
    LinkSpec::parse(s).unwrap()
}

/// An untagged frame with `payload` bytes of payload, numbered by its first bytes.
fn frame(n: u32, payload: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend(std::iter::repeat_n(0u8, payload));
    let b = n.to_be_bytes();
    let k = b.len().min(payload);
    f[14..14 + k].copy_from_slice(&b[..k]);
    f
}

/// Offer `n` frames 1 ms apart and drain everything; returns the releases.
fn run(link: &mut Link, n: u32, payload: usize) -> Vec<Released> {
    let mut out = Vec::new();
    let mut now = Duration::ZERO;
    for i in 0..n {
        let f = frame(i, payload);
        if link.offer(now, &f) == Verdict::Pass {
            out.push(Released {
                offer: i as u64,
                tag: 0,
                due: now,
                frame: f,
            });
        }
        link.poll(now, &mut out);
        now += MS;
    }
    while let Some(d) = link.next_deadline() {
        link.poll(d, &mut out);
    }
    out
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

/// Within `k` standard deviations of a binomial(n, p) mean.
fn binomial_ok(got: u64, n: u64, p: f64, k: f64) -> bool {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (got as f64 - mean).abs() <= k * sd
}

#[test]
fn neutral_link_passes_everything_without_holding() {
    let mut l = Link::new(LinkSpec::none(), 1);
    for i in 0..1000 {
        assert_eq!(
            l.offer(Duration::from_micros(i), &frame(i as u32, 50)),
            Verdict::Pass
        );
    }
    assert_eq!(l.held(), 0);
    assert_eq!(l.next_deadline(), None);
    let c = l.counters();
    assert_eq!((c.offered, c.passed, c.delayed), (1000, 1000, 0));
}

#[test]
fn loss_only_link_passes_survivors_without_copy() {
    let mut l = Link::new(spec("loss=50%"), 7);
    let mut pass = 0;
    for i in 0..1000 {
        match l.offer(Duration::ZERO, &frame(i, 50)) {
            Verdict::Pass => pass += 1,
            Verdict::Dropped(DropReason::Loss) => {}
            v => panic!("{v:?}"),
        }
    }
    assert_eq!(l.held(), 0);
    assert_eq!(l.counters().delayed, 0);
    assert!(binomial_ok(pass, 1000, 0.5, 5.0), "{pass}");
}

#[test]
fn fixed_delay_is_exact() {
    let mut l = Link::new(spec("delay=10ms"), 1);
    let t0 = Duration::from_millis(3);
    assert_eq!(l.offer(t0, &frame(0, 50)), Verdict::Held);
    assert_eq!(l.next_deadline(), Some(t0 + 10 * MS));
    let mut out = Vec::new();
    assert_eq!(l.poll(t0 + 10 * MS - Duration::from_nanos(1), &mut out), 0);
    assert_eq!(l.poll(t0 + 10 * MS, &mut out), 1);
    assert_eq!(out[0].due, t0 + 10 * MS);
    assert_eq!(out[0].frame, frame(0, 50));
    assert_eq!(l.held_bytes(), 0);
    let out = run(&mut Link::new(spec("delay=10ms"), 1), 100, 50);
    for r in &out {
        assert_eq!(r.due, r.offer as u32 * MS + 10 * MS);
    }
}

#[test]
fn random_loss_within_binomial_bound() {
    let mut l = Link::new(spec("loss=10%"), 42);
    let out = run(&mut l, 10_000, 50);
    let lost = l.counters().dropped_loss;
    assert!(binomial_ok(lost, 10_000, 0.1, 5.0), "lost {lost}");
    assert_eq!(out.len() as u64, 10_000 - lost);
}

fn delays(s: &str, n: u32) -> Vec<f64> {
    let mut l = Link::new(spec(s), 3);
    run(&mut l, n, 50)
        .iter()
        .map(|r| (r.due - r.offer as u32 * MS).as_secs_f64() * 1000.0)
        .collect()
}

#[test]
fn uniform_jitter_distribution() {
    let d = delays("delay=50ms,jitter=10ms,reorder", 10_000);
    let (m, s) = mean_std(&d);
    assert!((m - 50.0).abs() < 0.3, "mean {m}");
    // uniform on [40, 60]: sd = 20/sqrt(12)
    assert!((s - 20.0 / 12f64.sqrt()).abs() < 0.2, "sd {s}");
    assert!(d.iter().all(|&x| (40.0..=60.0).contains(&x)));
}

#[test]
fn normal_jitter_distribution() {
    let d = delays("delay=100ms,jitter=10ms,dist=normal,reorder", 10_000);
    let (m, s) = mean_std(&d);
    assert!((m - 100.0).abs() < 0.5, "mean {m}");
    assert!((s - 10.0).abs() < 0.4, "sd {s}");
    // about 68 % within one sd
    let within = d.iter().filter(|x| (**x - 100.0).abs() <= 10.0).count();
    assert!((6500..7150).contains(&within), "{within}");
}

#[test]
fn jitter_without_reorder_keeps_order() {
    let out = run(&mut Link::new(spec("delay=20ms,jitter=15ms"), 5), 2000, 50);
    assert_eq!(out.len(), 2000);
    assert!(out
        .windows(2)
        .all(|w| w[0].offer < w[1].offer && w[0].due <= w[1].due));
    let out = run(
        &mut Link::new(spec("delay=20ms,jitter=15ms,reorder"), 5),
        2000,
        50,
    );
    assert!(
        out.windows(2).any(|w| w[0].offer > w[1].offer),
        "reorder allowed but nothing reordered"
    );
    assert!(out.windows(2).all(|w| w[0].due <= w[1].due));
}

#[test]
fn bandwidth_release_times_match_rate() {
    // 8 mbit/s = 1 byte per microsecond
    let mut l = Link::new(spec("rate=8mbit"), 1);
    let f = frame(0, 986); // 1000 bytes
    for _ in 0..10 {
        assert_eq!(l.offer(Duration::ZERO, &f), Verdict::Held);
    }
    let mut out = Vec::new();
    l.poll(Duration::from_secs(1), &mut out);
    let dues: Vec<Duration> = out.iter().map(|r| r.due).collect();
    let want: Vec<Duration> = (1..=10).map(|i| i * MS).collect();
    assert_eq!(dues, want);
    // after the bottleneck drained, a frame takes just its own time
    assert_eq!(l.offer(Duration::from_secs(2), &f), Verdict::Held);
    assert_eq!(l.next_deadline(), Some(Duration::from_secs(2) + MS));
    // rate then delay
    let mut l = Link::new(spec("rate=8mbit,delay=5ms"), 1);
    l.offer(Duration::ZERO, &f);
    l.offer(Duration::ZERO, &f);
    let mut out = Vec::new();
    l.poll(Duration::from_secs(1), &mut out);
    assert_eq!(out[0].due, 6 * MS);
    assert_eq!(out[1].due, 7 * MS);
}

#[test]
fn queue_bound_drops_and_counts() {
    let mut l = Link::new(spec("rate=8kbit,queue=5000"), 1);
    let f = frame(0, 986);
    let v: Vec<Verdict> = (0..10).map(|_| l.offer(Duration::ZERO, &f)).collect();
    assert_eq!(v.iter().filter(|v| **v == Verdict::Held).count(), 5);
    assert_eq!(l.counters().dropped_queue, 5);
    assert_eq!(l.held_bytes(), 5000);
    // 1000 bytes at 1 byte/ms: the first leaves at 1 s, then there is room again
    let mut out = Vec::new();
    assert_eq!(l.poll(Duration::from_secs(1), &mut out), 1);
    assert_eq!(l.offer(Duration::from_secs(1), &f), Verdict::Held);
    assert_eq!(
        l.offer(Duration::from_secs(1), &f),
        Verdict::Dropped(DropReason::Queue)
    );
    // the default bound applies without queue=
    let mut l = Link::new(spec("delay=1s"), 1);
    let held = (0..2000)
        .filter(|_| l.offer(Duration::ZERO, &f) == Verdict::Held)
        .count() as u64;
    assert_eq!(held, DEFAULT_QUEUE / 1000);
}

#[test]
fn mtu_counts_payload_not_header() {
    let mut l = Link::new(spec("mtu=1400"), 1);
    assert_eq!(l.offer(Duration::ZERO, &frame(0, 1400)), Verdict::Pass);
    assert_eq!(
        l.offer(Duration::ZERO, &frame(0, 1401)),
        Verdict::Dropped(DropReason::Mtu)
    );
    let mut tagged = frame(0, 1400);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    assert_eq!(l.offer(Duration::ZERO, &tagged), Verdict::Pass);
    assert_eq!(l.counters().dropped_mtu, 1);
    // runts never exceed it
    assert_eq!(l.offer(Duration::ZERO, &[1, 2, 3]), Verdict::Pass);
}

/// Lengths of runs of consecutive losses over `n` frames.
fn bursts(s: &str, n: u32) -> (u64, Vec<u64>) {
    let mut l = Link::new(spec(s), 11);
    let mut runs = Vec::new();
    let mut cur = 0;
    for i in 0..n {
        if l.offer(Duration::ZERO, &frame(i, 50)) == Verdict::Dropped(DropReason::Loss) {
            cur += 1;
        } else if cur > 0 {
            runs.push(cur);
            cur = 0;
        }
    }
    (l.counters().dropped_loss, runs)
}

#[test]
fn gilbert_burst_lengths_and_rate() {
    let (lost, runs) = bursts("loss=10%,burst=4", 200_000);
    let rate = lost as f64 / 200_000.0;
    assert!((rate - 0.10).abs() < 0.01, "loss rate {rate}");
    let mean = runs.iter().sum::<u64>() as f64 / runs.len() as f64;
    assert!((mean - 4.0).abs() < 0.2, "mean burst {mean}");
    // netem gemodel with r = 20 %: mean burst 1/r = 5
    let (_, runs) = bursts("gemodel=1%:20%", 200_000);
    let mean = runs.iter().sum::<u64>() as f64 / runs.len() as f64;
    assert!((mean - 5.0).abs() < 0.3, "mean burst {mean}");
    // random loss has bursts of 1/(1-p)
    let (_, runs) = bursts("loss=10%", 200_000);
    let mean = runs.iter().sum::<u64>() as f64 / runs.len() as f64;
    assert!((mean - 1.0 / 0.9).abs() < 0.05, "mean burst {mean}");
}

#[test]
fn duplication_makes_identical_copies() {
    let mut l = Link::new(spec("dup=20%"), 9);
    let out = run(&mut l, 10_000, 50);
    let dups = l.counters().duplicated;
    assert!(binomial_ok(dups, 10_000, 0.2, 5.0), "{dups}");
    assert_eq!(out.len() as u64, 10_000 + dups);
    for r in &out {
        assert_eq!(r.frame, frame(r.offer as u32, 50));
    }
    // without reorder the copies follow their original
    assert!(out.windows(2).all(|w| w[0].offer <= w[1].offer));
}

#[test]
fn corruption_flips_exactly_one_bit() {
    let mut l = Link::new(spec("corrupt=100%"), 13);
    let out = run(&mut l, 1000, 100);
    assert_eq!(out.len(), 1000);
    for r in &out {
        let orig = frame(r.offer as u32, 100);
        let flipped: u32 = orig
            .iter()
            .zip(&r.frame)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        assert_eq!(flipped, 1);
    }
    let mut l = Link::new(spec("corrupt=5%"), 13);
    run(&mut l, 10_000, 100);
    assert!(binomial_ok(l.counters().corrupted, 10_000, 0.05, 5.0));
}

#[test]
fn set_spec_keeps_held_frames_and_order() {
    let mut l = Link::new(spec("delay=100ms"), 1);
    for i in 0..5 {
        l.offer(i * MS, &frame(i, 50));
    }
    l.set_spec(LinkSpec::none());
    // the neutral link does not overtake what is still held
    assert_eq!(l.offer(10 * MS, &frame(5, 50)), Verdict::Held);
    let mut out = Vec::new();
    l.poll(Duration::from_secs(1), &mut out);
    let got: Vec<(u64, Duration)> = out.iter().map(|r| (r.offer, r.due)).collect();
    let mut want: Vec<(u64, Duration)> = (0..5).map(|i| (i, (i as u32 + 100) * MS)).collect();
    want.push((5, 104 * MS));
    assert_eq!(got, want);
    // once drained, the fast path is back
    assert_eq!(
        l.offer(Duration::from_secs(2), &frame(6, 50)),
        Verdict::Pass
    );
}

#[test]
fn same_seed_same_run() {
    let s = "delay=5ms,jitter=3ms,loss=5%,dup=5%,corrupt=5%,reorder";
    let a = run(&mut Link::new(spec(s), 77), 2000, 60);
    let b = run(&mut Link::new(spec(s), 77), 2000, 60);
    assert_eq!(a, b);
    let c = run(&mut Link::new(spec(s), 78), 2000, 60);
    assert_ne!(a, c);
}

#[derive(Debug, Clone)]
enum Op {
    Offer(usize),
    Advance(u64),
    Spec(usize),
}

const SPECS: &[&str] = &[
    "none",
    "delay=3ms,jitter=2ms",
    "delay=3ms,jitter=2ms,reorder,dup=30%",
    "rate=1mbit,queue=4k",
    "loss=20%,burst=3,corrupt=20%",
    "mtu=500,dup=50%,queue=3k,delay=1ms",
    "delay=2ms,jitter=5ms,dist=normal,rate=10mbit,queue=2k",
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..1600).prop_map(Op::Offer),
        3 => (0u64..5000).prop_map(Op::Advance),
        1 => (0..SPECS.len()).prop_map(Op::Spec),
    ]
}

proptest! {
    /// Whatever happens: frames out are frames in (one bit may flip), each
    /// at most twice; nothing leaves before it is due or in a different
    /// order than it came when reordering is off; an offer never fills the
    /// link beyond its bound; the counters add up; deadlines never go
    /// backwards in time past `now`.
    #[test]
    fn invariants(seed in any::<u64>(), first in 0..SPECS.len(), ops in proptest::collection::vec(op(), 1..300)) {
        let mut l = Link::new(spec(SPECS[first]), seed);
        let mut now = Duration::ZERO;
        let mut offered: Vec<Vec<u8>> = Vec::new();
        let mut seen = vec![0u32; 0];
        let mut out = Vec::new();
        let mut last_due = Duration::ZERO;
        let mut last_offer_fifo: Option<u64> = None;
        let mut ever_reordered = l.spec().reorder;
        for op in ops {
            match op {
                Op::Offer(len) => {
                    let f = frame(offered.len() as u32, len);
                    let before = l.held_bytes();
                    let v = l.offer(now, &f);
                    if l.held_bytes() > before {
                        prop_assert!(l.held_bytes() <= l.queue_bound());
                    }
                    offered.push(f);
                    seen.push(0);
                    if v == Verdict::Pass {
                        let i = offered.len() - 1;
                        seen[i] += 1;
                        last_offer_fifo = Some(i as u64);
                    }
                }
                Op::Advance(us) => {
                    now += Duration::from_micros(us);
                    out.clear();
                    l.poll(now, &mut out);
                    for r in &out {
                        prop_assert!(r.due <= now);
                        prop_assert!(r.due >= last_due, "due times go back");
                        last_due = r.due;
                        let orig = &offered[r.offer as usize];
                        prop_assert_eq!(orig.len(), r.frame.len());
                        let bits: u32 = orig.iter().zip(&r.frame).map(|(a, b)| (a ^ b).count_ones()).sum();
                        prop_assert!(bits <= 1);
                        seen[r.offer as usize] += 1;
                        prop_assert!(seen[r.offer as usize] <= 2);
                        if !ever_reordered {
                            if let Some(p) = last_offer_fifo {
                                prop_assert!(r.offer >= p, "FIFO broken: {} after {}", r.offer, p);
                            }
                            last_offer_fifo = Some(r.offer);
                        }
                    }
                    if let Some(d) = l.next_deadline() {
                        prop_assert!(d > now);
                    }
                }
                Op::Spec(i) => {
                    l.set_spec(spec(SPECS[i]));
                    ever_reordered |= l.spec().reorder;
                }
            }
            let c = *l.counters();
            prop_assert_eq!(
                c.offered + c.duplicated,
                c.passed + c.dropped_mtu + c.dropped_loss + c.dropped_queue + l.held() as u64
            );
            prop_assert_eq!(c.offered, offered.len() as u64);
        }
    }
}

#[test]
fn table_sets_directions_and_polls_all_ports() {
    let mut t = LinkTable::new(5);
    assert!(t.link_mut(3, Side::In).is_none(), "no entry: no emulation");
    t.set(3, LinkDir::Out, spec("delay=10ms"));
    t.set(4, LinkDir::Both, spec("delay=5ms"));
    assert_eq!(t.get(3).unwrap().inbound.spec(), &LinkSpec::none());
    assert_eq!(t.get(3).unwrap().outbound.spec(), &spec("delay=10ms"));
    let f = frame(1, 50);
    assert_eq!(
        t.link_mut(3, Side::In).unwrap().offer(MS, &f),
        Verdict::Pass
    );
    assert_eq!(
        t.link_mut(3, Side::Out).unwrap().offer_tagged(MS, 77, &f),
        Verdict::Held
    );
    assert_eq!(
        t.link_mut(4, Side::In).unwrap().offer(MS, &f),
        Verdict::Held
    );
    assert_eq!(t.next_deadline(), Some(6 * MS));
    let mut out = Vec::new();
    t.poll(6 * MS, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].1), (4, Side::In));
    t.poll(11 * MS, &mut out);
    assert_eq!((out[1].0, out[1].1, out[1].2.tag), (3, Side::Out, 77));
    assert_eq!(t.next_deadline(), None);
    // clear keeps the entry (and its counters), back to neutral
    t.clear(3, LinkDir::Both);
    assert!(t.get(3).unwrap().outbound.spec().is_neutral());
    assert_eq!(t.get(3).unwrap().outbound.counters().passed, 1);
    let show = t.show(Some(3)).unwrap();
    assert_eq!(
        show,
        "Port 0003 in  none\n offered 1 passed 1 lost 0 queue-drop 0 mtu-drop 0 duplicated 0 corrupted 0 delayed 0 held 0 frames 0 bytes\n\
         Port 0003 out none\n offered 1 passed 1 lost 0 queue-drop 0 mtu-drop 0 duplicated 0 corrupted 0 delayed 1 held 0 frames 0 bytes\n"
    );
    assert_eq!(t.show(Some(9)), None);
    assert_eq!(t.show(None).unwrap().lines().count(), 8);
}

#[test]
fn table_streams_differ_per_port_and_side() {
    let mut t = LinkTable::new(1);
    t.set(1, LinkDir::Both, spec("loss=50%"));
    t.set(2, LinkDir::Both, spec("loss=50%"));
    let mut pattern = |port, side| -> Vec<bool> {
        (0..64)
            .map(|i| {
                t.link_mut(port, side)
                    .unwrap()
                    .offer(Duration::ZERO, &frame(i, 10))
                    == Verdict::Pass
            })
            .collect()
    };
    let a = pattern(1, Side::In);
    let b = pattern(1, Side::Out);
    let c = pattern(2, Side::In);
    assert_ne!(a, b);
    assert_ne!(a, c);
}

proptest! {
    /// Rate and fixed delay against a straightforward bottleneck model:
    /// each frame starts when it arrives or when the one before finished,
    /// takes len·8/rate, then the delay.
    #[test]
    fn rate_and_delay_match_bottleneck_model(
        rate_kbit in 1u64..100_000,
        delay_us in 0u64..50_000,
        arrivals in proptest::collection::vec((0u64..3000, 0usize..1500), 1..200),
    ) {
        let s = LinkSpec::parse(&format!("rate={rate_kbit}kbit,delay={delay_us}us,queue=256m")).unwrap();
        let mut l = Link::new(s, 1);
        let rate = rate_kbit * 1000;
        let mut now = Duration::ZERO;
        let mut busy = Duration::ZERO;
        let mut want = Vec::new();
        for (gap_us, payload) in arrivals {
            now += Duration::from_micros(gap_us);
            let f = frame(0, payload);
            prop_assert_eq!(l.offer(now, &f), Verdict::Held);
            let tx = (f.len() as u128 * 8 * 1_000_000_000).div_ceil(rate as u128) as u64;
            busy = now.max(busy) + Duration::from_nanos(tx);
            want.push(busy + Duration::from_micros(delay_us));
        }
        let mut out = Vec::new();
        l.poll(Duration::MAX, &mut out);
        let got: Vec<Duration> = out.iter().map(|r| r.due).collect();
        prop_assert_eq!(got, want);
    }
}

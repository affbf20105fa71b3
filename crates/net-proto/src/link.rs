//! Link impairment settings: the one `key=value,...` syntax shared by CLI
//! flags, the management console and lab files.
//!
//! ```text
//! delay=20ms,jitter=5ms,dist=normal,loss=1%,burst=3,dup=0.5%,corrupt=0.1%,
//! reorder,rate=10mbit,queue=64k,mtu=1400
//! ```
//!
//! Items are separated by commas (or blanks); `none` (or nothing) is the
//! neutral link. Each key may be given once. Units:
//!
//! - times (`delay`, `jitter`): a decimal number with `ns`, `us`, `ms` or
//!   `s` (a unit is required except for `0`);
//! - percentages (`loss`, `dup`, `corrupt`, the four `gemodel` values): a
//!   decimal number with an optional `%` (`1%` = `1`), 0 to 100, at most 7
//!   decimals;
//! - `rate`: bits per second as netem writes them (`bit`, `kbit`, `mbit`,
//!   `gbit`, powers of 1000) or bytes per second as wirefilter writes them
//!   (`B`, `K`, `M`, `G`, powers of 1024); a bare number is refused because
//!   tc reads it as bits and wirefilter as bytes;
//! - `queue`: bytes, optional `k`/`m`/`g` (powers of 1024) and optional
//!   trailing `b`/`B`;
//! - `mtu`: bytes of Ethernet payload (the frame without its 14-byte header
//!   and 802.1Q tag): `mtu=1500` passes every standard frame;
//! - `burst`: mean length of a loss burst in frames (wirefilter `-L`), needs
//!   `loss`; `gemodel=P[:R[:1-H[:1-K]]]` is netem's Gilbert-Elliott model
//!   (defaults `R = 100% - P`, `1-H = 100%`, `1-K = 0%`), exclusive with
//!   `loss`;
//! - `dist`: `uniform` (the default; delay ± jitter) or `normal` (jitter is
//!   the standard deviation);
//! - `reorder` (a flag, or `reorder=yes|no`): let jitter reorder frames;
//!   without it frames leave in the order they came.
//!
//! [`LinkSpec`]'s `Display` writes the canonical form, which parses back to
//! the same value.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// 100 % in [`Prob`] units (parts per billion).
pub const PPB_ONE: u32 = 1_000_000_000;
/// Longest delay or jitter accepted.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Highest rate accepted (bits per second).
pub const MAX_RATE: u64 = 100_000_000_000;
/// Largest queue accepted (bytes).
pub const MAX_QUEUE: u64 = 256 << 20;

/// Errors of the link spec parser; each names the key and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("unknown link setting {0:?} (known: delay, jitter, dist, loss, burst, gemodel, dup, corrupt, reorder, rate, queue, mtu)")]
    UnknownKey(String),
    #[error("link setting {0} needs a value ({0}=...)")]
    MissingValue(&'static str),
    #[error("link setting {key}={value:?}: {why}")]
    BadValue {
        key: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("link setting {0} given twice")]
    Duplicate(&'static str),
    #[error("link settings conflict: {0}")]
    Conflict(String),
}

/// A probability in parts per billion (`PPB_ONE` = always).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Prob(u32);

impl Prob {
    pub const ZERO: Prob = Prob(0);
    pub const ONE: Prob = Prob(PPB_ONE);

    /// None when above 100 %.
    pub fn from_ppb(ppb: u32) -> Option<Prob> {
        (ppb <= PPB_ONE).then_some(Prob(ppb))
    }

    pub fn ppb(self) -> u32 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / PPB_ONE as f64
    }

    /// 100 % minus this.
    pub fn complement(self) -> Prob {
        Prob(PPB_ONE - self.0)
    }
}

impl fmt::Display for Prob {
    /// As a percentage: `1%`, `0.5%`, `0.0000001%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_decimal(f, self.0 as u64, 7)?;
        f.write_str("%")
    }
}

impl FromStr for Prob {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Prob, &'static str> {
        let n = s.strip_suffix('%').unwrap_or(s);
        let v = parse_decimal(n, 7)
            .ok_or("expected a percentage such as 1% or 0.5%, at most 7 decimals")?;
        u32::try_from(v)
            .ok()
            .and_then(Prob::from_ppb)
            .ok_or("a percentage must be between 0% and 100%")
    }
}

/// Distribution of the jitter around the delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dist {
    /// Uniform in `delay ± jitter` (netem without a table, wirefilter `U`).
    #[default]
    Uniform,
    /// Normal with mean `delay` and standard deviation `jitter`.
    Normal,
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dist::Uniform => "uniform",
            Dist::Normal => "normal",
        })
    }
}

/// netem's Gilbert-Elliott parameters: `p` good→bad, `r` bad→good, `h1`
/// (1-h) loss probability in the bad state, `k1` (1-k) in the good state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gemodel {
    pub p: Prob,
    pub r: Prob,
    pub h1: Prob,
    pub k1: Prob,
}

impl fmt::Display for Gemodel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}", self.p, self.r, self.h1, self.k1)
    }
}

/// Mean burst length in thousandths of a frame (`burst=2.5` = 2500).
pub type MilliFrames = u32;

/// Which way a frame crosses a port's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkDir {
    /// Frames the port sends into the switch.
    In,
    /// Frames the switch sends to the port.
    Out,
    Both,
}

impl LinkDir {
    pub fn parse(s: &str) -> Option<LinkDir> {
        match s {
            "in" => Some(LinkDir::In),
            "out" => Some(LinkDir::Out),
            "both" => Some(LinkDir::Both),
            _ => None,
        }
    }
}

impl fmt::Display for LinkDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkDir::In => "in",
            LinkDir::Out => "out",
            LinkDir::Both => "both",
        })
    }
}

/// The impairments of one direction of a link. `Default` is the neutral
/// link (nothing changed, nothing held).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LinkSpec {
    pub delay: Duration,
    pub jitter: Duration,
    pub dist: Dist,
    /// Random loss, or with `burst` the stationary loss of a bursty model.
    pub loss: Prob,
    /// Mean loss burst length (wirefilter `-L`), needs `loss`.
    pub burst: Option<MilliFrames>,
    /// Explicit Gilbert-Elliott model (exclusive with `loss`).
    pub gemodel: Option<Gemodel>,
    /// Probability that a frame is sent twice.
    pub dup: Prob,
    /// Probability that a frame has one bit flipped.
    pub corrupt: Prob,
    /// Jitter may reorder frames.
    pub reorder: bool,
    /// Bottleneck rate in bits per second.
    pub rate: Option<u64>,
    /// Most bytes held in the link (delay line and bottleneck); None = the
    /// default of the emulator.
    pub queue: Option<u64>,
    /// Largest Ethernet payload passed.
    pub mtu: Option<u32>,
}

/// The keys, in canonical order.
pub const KEYS: &[&str] = &[
    "delay", "jitter", "dist", "loss", "burst", "gemodel", "dup", "corrupt", "reorder", "rate",
    "queue", "mtu",
];

impl LinkSpec {
    /// The neutral link.
    pub fn none() -> LinkSpec {
        LinkSpec::default()
    }

    pub fn is_neutral(&self) -> bool {
        *self == LinkSpec::default()
    }

    /// Parse a whole spec (`key=value,...`, `none` or empty) and validate it.
    pub fn parse(s: &str) -> Result<LinkSpec, SpecError> {
        let mut spec = LinkSpec::default();
        let mut seen = Vec::new();
        for item in s
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|i| !i.is_empty())
        {
            if item == "none" {
                continue;
            }
            let (k, v) = match item.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            let key = spec.set(k, v)?;
            if seen.contains(&key) {
                return Err(SpecError::Duplicate(key));
            }
            seen.push(key);
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Set one setting (a CLI flag or one `key=value` item); returns the
    /// canonical key. Call [`LinkSpec::validate`] after the last one.
    pub fn set(&mut self, key: &str, value: Option<&str>) -> Result<&'static str, SpecError> {
        let key: &'static str = KEYS
            .iter()
            .find(|k| **k == key)
            .copied()
            .ok_or_else(|| SpecError::UnknownKey(key.to_string()))?;
        if key == "reorder" {
            self.reorder = match value {
                None | Some("yes" | "on" | "1" | "true") => true,
                Some("no" | "off" | "0" | "false") => false,
                Some(v) => return Err(bad(key, v, "expected yes or no")),
            };
            return Ok(key);
        }
        let v = value.ok_or(SpecError::MissingValue(key))?;
        let prob = |v: &str| v.parse::<Prob>().map_err(|why| bad(key, v, why));
        match key {
            "delay" => self.delay = parse_duration(v).map_err(|why| bad(key, v, why))?,
            "jitter" => self.jitter = parse_duration(v).map_err(|why| bad(key, v, why))?,
            "dist" => {
                self.dist = match v {
                    "uniform" | "u" | "U" => Dist::Uniform,
                    "normal" | "n" | "N" => Dist::Normal,
                    _ => return Err(bad(key, v, "expected uniform or normal")),
                }
            }
            "loss" => self.loss = prob(v)?,
            "burst" => {
                let b = parse_decimal(v, 3)
                    .and_then(|b| u32::try_from(b).ok())
                    .ok_or_else(|| bad(key, v, "expected a number of frames such as 3 or 2.5"))?;
                if b < 1000 {
                    return Err(bad(key, v, "a mean burst is at least 1 frame"));
                }
                self.burst = Some(b);
            }
            "gemodel" => {
                let parts: Vec<&str> = v.split(':').collect();
                if parts.len() > 4 {
                    return Err(bad(key, v, "expected P[:R[:1-H[:1-K]]]"));
                }
                let p = prob(parts[0])?;
                let get = |i: usize, d: Prob| parts.get(i).map_or(Ok(d), |s| prob(s));
                self.gemodel = Some(Gemodel {
                    p,
                    r: get(1, p.complement())?,
                    h1: get(2, Prob::ONE)?,
                    k1: get(3, Prob::ZERO)?,
                });
            }
            "dup" => self.dup = prob(v)?,
            "corrupt" => self.corrupt = prob(v)?,
            "rate" => self.rate = Some(parse_rate(v).map_err(|why| bad(key, v, why))?),
            "queue" => self.queue = Some(parse_bytes(v).map_err(|why| bad(key, v, why))?),
            "mtu" => {
                let m = v
                    .parse::<u32>()
                    .ok()
                    .filter(|m| (1..=65535).contains(m))
                    .ok_or_else(|| bad(key, v, "expected payload bytes from 1 to 65535"))?;
                self.mtu = Some(m);
            }
            _ => unreachable!("every key of KEYS is handled"),
        }
        Ok(key)
    }

    /// Check the settings together.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.gemodel.is_some() && (!self.loss.is_zero() || self.burst.is_some()) {
            return Err(SpecError::Conflict(
                "gemodel replaces loss and burst: give one or the other".into(),
            ));
        }
        if let Some(b) = self.burst {
            if self.loss.is_zero() {
                return Err(SpecError::Conflict(
                    "burst needs loss (e.g. loss=5%,burst=3)".into(),
                ));
            }
            if self.burst_model().is_none() {
                return Err(SpecError::Conflict(format!(
                    "loss={} cannot be reached with mean bursts of {} frames (needs burst >= loss/(100%-loss))",
                    self.loss,
                    Milli(b)
                )));
            }
        }
        Ok(())
    }

    /// The Gilbert model behind `loss` + `burst`: `r = 1/burst`, `p = loss·r/(1-loss)`,
    /// lose every frame in the bad state and none in the good one, so the
    /// stationary loss is `loss` and bursts last `burst` frames on average.
    fn burst_model(&self) -> Option<Gemodel> {
        let b = self.burst?;
        let r = (PPB_ONE as u64 * 1000 / b as u64) as u32;
        if self.loss == Prob::ONE {
            return Some(Gemodel {
                p: Prob::ONE,
                r: Prob::ZERO,
                h1: Prob::ONE,
                k1: Prob::ZERO,
            });
        }
        let l = self.loss.0 as u128;
        let p = l * r as u128 / (PPB_ONE as u128 - l);
        let p = u32::try_from(p).ok().and_then(Prob::from_ppb)?;
        Some(Gemodel {
            p,
            r: Prob(r),
            h1: Prob::ONE,
            k1: Prob::ZERO,
        })
    }

    /// The loss model to run: None (no loss), Random, or a Gilbert-Elliott chain.
    pub fn loss_model(&self) -> LossModel {
        if let Some(g) = self.gemodel {
            return LossModel::Gilbert(g);
        }
        if self.loss.is_zero() {
            return LossModel::None;
        }
        match self.burst_model() {
            Some(g) => LossModel::Gilbert(g),
            None => LossModel::Random(self.loss),
        }
    }
}

/// What [`LinkSpec::loss_model`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossModel {
    None,
    Random(Prob),
    Gilbert(Gemodel),
}

fn bad(key: &'static str, value: &str, why: &'static str) -> SpecError {
    SpecError::BadValue {
        key,
        value: value.to_string(),
        why,
    }
}

struct Milli(u32);
impl fmt::Display for Milli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_decimal(f, self.0 as u64, 3)
    }
}

struct Dur(Duration);
impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        let (div, unit) = if ns == 0 {
            (1, "ms")
        } else if ns.is_multiple_of(1_000_000_000) {
            (1_000_000_000, "s")
        } else if ns.is_multiple_of(1_000_000) {
            (1_000_000, "ms")
        } else if ns.is_multiple_of(1_000) {
            (1_000, "us")
        } else {
            (1, "ns")
        };
        write!(f, "{}{}", ns / div, unit)
    }
}

struct Rate(u64);
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (m, u) in [
            (1_000_000_000, "gbit"),
            (1_000_000, "mbit"),
            (1_000, "kbit"),
        ] {
            if b.is_multiple_of(m) {
                return write!(f, "{}{}", b / m, u);
            }
        }
        if b.is_multiple_of(8) {
            let by = b / 8;
            for (m, u) in [(1u64 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")] {
                if by.is_multiple_of(m) {
                    return write!(f, "{}{}", by / m, u);
                }
            }
        }
        write!(f, "{b}bit")
    }
}

struct Bytes(u64);
impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (m, u) in [(1u64 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")] {
            if b.is_multiple_of(m) {
                return write!(f, "{}{}", b / m, u);
            }
        }
        write!(f, "{b}")
    }
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = Vec::new();
        if !self.delay.is_zero() {
            items.push(format!("delay={}", Dur(self.delay)));
        }
        if !self.jitter.is_zero() {
            items.push(format!("jitter={}", Dur(self.jitter)));
        }
        if self.dist != Dist::default() {
            items.push(format!("dist={}", self.dist));
        }
        if !self.loss.is_zero() {
            items.push(format!("loss={}", self.loss));
        }
        if let Some(b) = self.burst {
            items.push(format!("burst={}", Milli(b)));
        }
        if let Some(g) = self.gemodel {
            items.push(format!("gemodel={g}"));
        }
        if !self.dup.is_zero() {
            items.push(format!("dup={}", self.dup));
        }
        if !self.corrupt.is_zero() {
            items.push(format!("corrupt={}", self.corrupt));
        }
        if self.reorder {
            items.push("reorder".into());
        }
        if let Some(r) = self.rate {
            items.push(format!("rate={}", Rate(r)));
        }
        if let Some(q) = self.queue {
            items.push(format!("queue={}", Bytes(q)));
        }
        if let Some(m) = self.mtu {
            items.push(format!("mtu={m}"));
        }
        if items.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&items.join(","))
        }
    }
}

impl FromStr for LinkSpec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<LinkSpec, SpecError> {
        LinkSpec::parse(s)
    }
}

/// `v` with `scale` implied decimals, written without trailing zeros.
fn write_decimal(f: &mut fmt::Formatter<'_>, v: u64, scale: u32) -> fmt::Result {
    let d = 10u64.pow(scale);
    let (int, frac) = (v / d, v % d);
    if frac == 0 {
        write!(f, "{int}")
    } else {
        let s = format!("{:0width$}", frac, width = scale as usize);
        write!(f, "{int}.{}", s.trim_end_matches('0'))
    }
}

/// A non-negative decimal as an integer with `scale` implied decimals;
/// None if malformed, too precise or too large.
fn parse_decimal(s: &str, scale: u32) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > scale as usize || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let i: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut fr: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    fr *= 10u64.pow(scale - frac.len() as u32);
    i.checked_mul(10u64.pow(scale))?.checked_add(fr)
}

/// Split `12.5ms` into `("12.5", "ms")`.
fn split_unit(s: &str) -> (&str, &str) {
    let i = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s.split_at(i)
}

/// A time with unit (`20ms`, `1.5s`, `250us`, `0`).
pub fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    let (n, unit) = split_unit(s);
    let scale = match unit {
        "ns" => 1u64,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "" if parse_decimal(n, 0) == Some(0) => 1,
        "" => return Err("a time needs a unit: ns, us, ms or s"),
        _ => return Err("unknown time unit (use ns, us, ms or s)"),
    };
    // as many decimals as stay whole nanoseconds
    let decimals = match scale {
        1 => 0,
        1_000 => 3,
        1_000_000 => 6,
        _ => 9,
    };
    let v =
        parse_decimal(n, decimals).ok_or("expected a number such as 20ms, nanosecond precision")?;
    let ns = v
        .checked_mul(scale / 10u64.pow(decimals))
        .ok_or("time too large")?;
    let d = Duration::from_nanos(ns);
    if d > MAX_DELAY {
        return Err("at most 3600s");
    }
    Ok(d)
}

/// A rate in bits per second (`10mbit`, `128K`).
pub fn parse_rate(s: &str) -> Result<u64, &'static str> {
    let (n, unit) = split_unit(s);
    let (mul, bytes) = match unit.to_ascii_lowercase().as_str() {
        "bit" => (1u64, false),
        "kbit" => (1_000, false),
        "mbit" => (1_000_000, false),
        "gbit" => (1_000_000_000, false),
        "b" => (1, true),
        "k" | "kb" => (1 << 10, true),
        "m" | "mb" => (1 << 20, true),
        "g" | "gb" => (1 << 30, true),
        "" => return Err("a rate needs a unit: bit/kbit/mbit/gbit (bits, as tc) or B/K/M/G (bytes, as wirefilter)"),
        u if u.ends_with("bps") => {
            return Err("write bits as kbit/mbit or bytes as K/M/G (tc's bps means bytes)")
        }
        _ => return Err("unknown rate unit (use bit, kbit, mbit, gbit, or B, K, M, G)"),
    };
    let v = parse_decimal(n, 3).ok_or("expected a number such as 10mbit, at most 3 decimals")?;
    let bits = (v as u128) * mul as u128 * if bytes { 8 } else { 1 };
    if !bits.is_multiple_of(1000) {
        return Err("a rate must be a whole number of bits per second");
    }
    let bits = bits / 1000;
    if bits == 0 {
        return Err("a rate must be above 0");
    }
    if bits > MAX_RATE as u128 {
        return Err("at most 100gbit");
    }
    Ok(bits as u64)
}

/// A size in bytes (`64k`, `1M`, `65536`, `1500B`).
pub fn parse_bytes(s: &str) -> Result<u64, &'static str> {
    let (n, unit) = split_unit(s);
    let unit = unit.to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let mul: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err("unknown size unit (use k, m or g: powers of 1024)"),
    };
    let v: u64 = n
        .parse()
        .map_err(|_| "expected a whole number of bytes such as 64k")?;
    let b = v.checked_mul(mul).ok_or("size too large")?;
    if b == 0 {
        return Err("a queue must hold at least 1 byte");
    }
    if b > MAX_QUEUE {
        return Err("at most 256m");
    }
    Ok(b)
}

/// One direction of one port as `link/show` prints it (two lines:
/// `Port NNNN in|out SPEC`, then the counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownLink {
    pub port: u32,
    /// `in` (from the port's machine) or `out` (to it)
    pub dir: String,
    /// The settings as `link set` takes them
    pub spec: String,
    /// `offered`, `passed`, `lost`, `queue-drop`, `mtu-drop`, `duplicated`,
    /// `corrupted`, `delayed`, `held-frames`, `held-bytes`, in that order
    pub counters: Vec<(String, u64)>,
}

/// Parse the `link/show` text of the switch console (the reader of
/// `umlkit link show --json`); the line number of a line it cannot read.
pub fn parse_show(text: &str) -> Result<Vec<ShownLink>, String> {
    let mut v: Vec<ShownLink> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = || format!("link/show line {}: cannot read {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("Port ") {
            let mut w = rest.split_whitespace();
            let port = w.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
            let dir = w.next().ok_or_else(bad)?.to_string();
            let spec = w.collect::<Vec<_>>().join(" ");
            v.push(ShownLink {
                port,
                dir,
                spec,
                counters: Vec::new(),
            });
        } else if line.starts_with(' ') {
            let cur = v
                .last_mut()
                .filter(|l| l.counters.is_empty())
                .ok_or_else(bad)?;
            let w: Vec<&str> = line.split_whitespace().collect();
            let mut i = 0;
            while i < w.len() {
                if w[i] == "held" && w.len() >= i + 5 {
                    let f = w[i + 1].parse().map_err(|_| bad())?;
                    let b = w[i + 3].parse().map_err(|_| bad())?;
                    cur.counters.push(("held-frames".into(), f));
                    cur.counters.push(("held-bytes".into(), b));
                    i += 5;
                } else {
                    let val = w.get(i + 1).and_then(|x| x.parse().ok()).ok_or_else(bad)?;
                    cur.counters.push((w[i].to_string(), val));
                    i += 2;
                }
            }
        } else if !line.trim().is_empty() {
            return Err(bad());
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_show_text_parses() {
        let text = "Port 0001 in  delay=20ms,loss=1%\n offered 10 passed 9 lost 1 queue-drop 0 mtu-drop 0 duplicated 0 corrupted 0 delayed 9 held 2 frames 128 bytes\nPort 0001 out none\n offered 0 passed 0 lost 0 queue-drop 0 mtu-drop 0 duplicated 0 corrupted 0 delayed 0 held 0 frames 0 bytes\n";
        let v = parse_show(text).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].port, v[0].dir.as_str()), (1, "in"));
        assert_eq!(v[0].spec, "delay=20ms,loss=1%");
        assert_eq!(v[0].counters[1], ("passed".to_string(), 9));
        assert_eq!(v[0].counters[8], ("held-frames".to_string(), 2));
        assert_eq!(v[0].counters[9], ("held-bytes".to_string(), 128));
        assert_eq!(v[1].counters.len(), 10);
        assert!(parse_show("Port x in\n").unwrap_err().contains("line 1"));
        assert!(
            parse_show(" offered 1\n").is_err(),
            "counters before a port"
        );
        assert!(parse_show("junk\n").is_err());
    }
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn full_example_parses() {
        let s = LinkSpec::parse(
            "delay=20ms,jitter=5ms,dist=normal,loss=1%,burst=3,dup=0.5%,corrupt=0.01%,reorder,rate=10mbit,queue=64k,mtu=1400",
        )
        .unwrap();
        assert_eq!(s.delay, ms(20));
        assert_eq!(s.jitter, ms(5));
        assert_eq!(s.dist, Dist::Normal);
        assert_eq!(s.loss.ppb(), 10_000_000);
        assert_eq!(s.burst, Some(3000));
        assert_eq!(s.dup.ppb(), 5_000_000);
        assert_eq!(s.corrupt.ppb(), 100_000);
        assert!(s.reorder);
        assert_eq!(s.rate, Some(10_000_000));
        assert_eq!(s.queue, Some(65536));
        assert_eq!(s.mtu, Some(1400));
        assert_eq!(
            s.to_string(),
            "delay=20ms,jitter=5ms,dist=normal,loss=1%,burst=3,dup=0.5%,corrupt=0.01%,reorder,rate=10mbit,queue=64k,mtu=1400"
        );
    }

    #[test]
    fn neutral_forms() {
        for s in ["", "none", " , ", "reorder=no"] {
            assert!(LinkSpec::parse(s).unwrap().is_neutral(), "{s:?}");
        }
        assert_eq!(LinkSpec::none().to_string(), "none");
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
        assert!(parse_duration("20").unwrap_err().contains("unit"));
        assert!(parse_duration("20min").is_err());
        assert!(parse_duration("1.5ns").is_err());
        assert!(parse_duration("3601s").is_err());
        assert_eq!(parse_rate("10mbit"), Ok(10_000_000));
        assert_eq!(parse_rate("1.5mbit"), Ok(1_500_000));
        assert_eq!(parse_rate("128K"), Ok(128 * 1024 * 8));
        assert_eq!(parse_rate("1M"), Ok(8 << 20));
        assert_eq!(parse_rate("100B"), Ok(800));
        assert!(parse_rate("100").unwrap_err().contains("unit"));
        assert!(parse_rate("1mbps").unwrap_err().contains("bytes"));
        assert!(parse_rate("0kbit").is_err());
        assert!(parse_rate("101gbit").is_err());
        assert_eq!(parse_bytes("64k"), Ok(65536));
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("1M"), Ok(1 << 20));
        assert_eq!(parse_bytes("1500B"), Ok(1500));
        assert_eq!(parse_bytes("1500"), Ok(1500));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("1t").is_err());
        assert!(parse_bytes("1.5k").is_err());
    }

    #[test]
    fn rate_display_picks_the_exact_unit() {
        let show = |r| {
            LinkSpec {
                rate: Some(r),
                ..LinkSpec::none()
            }
            .to_string()
        };
        assert_eq!(show(10_000_000), "rate=10mbit");
        assert_eq!(show(8 << 20), "rate=1M");
        assert_eq!(show(128 * 1024 * 8), "rate=128K");
        assert_eq!(show(12_345), "rate=12345bit");
    }

    #[test]
    fn percentages() {
        assert_eq!("1".parse::<Prob>().unwrap(), "1%".parse().unwrap());
        assert_eq!("100%".parse::<Prob>(), Ok(Prob::ONE));
        assert!("100.1%".parse::<Prob>().is_err());
        assert!("-1%".parse::<Prob>().is_err());
        assert!("0.00000001%".parse::<Prob>().is_err());
        assert!("1.%".parse::<Prob>().is_err());
        assert_eq!(Prob::from_ppb(1).unwrap().to_string(), "0.0000001%");
        assert_eq!(".5%".parse::<Prob>().unwrap().to_string(), "0.5%");
    }

    #[test]
    fn gemodel_defaults_as_netem() {
        let s = LinkSpec::parse("gemodel=1%").unwrap();
        let g = s.gemodel.unwrap();
        assert_eq!(g.r.to_string(), "99%");
        assert_eq!(g.h1, Prob::ONE);
        assert_eq!(g.k1, Prob::ZERO);
        assert_eq!(s.to_string(), "gemodel=1%:99%:100%:0%");
        let s = LinkSpec::parse("gemodel=1%:30%:80%:0.1%").unwrap();
        assert_eq!(LinkSpec::parse(&s.to_string()).unwrap(), s);
        assert!(LinkSpec::parse("gemodel=1:2:3:4:5").is_err());
    }

    #[test]
    fn burst_maps_to_gilbert() {
        let s = LinkSpec::parse("loss=20%,burst=4").unwrap();
        match s.loss_model() {
            LossModel::Gilbert(g) => {
                assert_eq!(g.r.to_string(), "25%");
                // p = 0.2 * 0.25 / 0.8
                assert_eq!(g.p.to_string(), "6.25%");
                assert_eq!(g.h1, Prob::ONE);
                assert_eq!(g.k1, Prob::ZERO);
            }
            m => panic!("{m:?}"),
        }
        assert_eq!(
            LinkSpec::parse("loss=1%").unwrap().loss_model(),
            LossModel::Random("1%".parse().unwrap())
        );
        assert_eq!(LinkSpec::none().loss_model(), LossModel::None);
    }

    #[test]
    fn errors_name_key_and_value() {
        let e = LinkSpec::parse("delay=20").unwrap_err();
        assert_eq!(
            e.to_string(),
            "link setting delay=\"20\": a time needs a unit: ns, us, ms or s"
        );
        assert_eq!(
            LinkSpec::parse("lossy=1%").unwrap_err(),
            SpecError::UnknownKey("lossy".into())
        );
        assert_eq!(
            LinkSpec::parse("loss=1%,loss=2%").unwrap_err(),
            SpecError::Duplicate("loss")
        );
        assert_eq!(
            LinkSpec::parse("delay").unwrap_err(),
            SpecError::MissingValue("delay")
        );
        assert!(matches!(
            LinkSpec::parse("burst=3").unwrap_err(),
            SpecError::Conflict(_)
        ));
        assert!(matches!(
            LinkSpec::parse("loss=1%,gemodel=1%").unwrap_err(),
            SpecError::Conflict(_)
        ));
        // 90% loss with single-frame bursts is impossible
        let e = LinkSpec::parse("loss=90%,burst=1").unwrap_err();
        assert!(e.to_string().contains("cannot be reached"), "{e}");
        assert!(LinkSpec::parse("dist=pareto").is_err());
        assert!(LinkSpec::parse("mtu=0").is_err());
        assert!(LinkSpec::parse("reorder=maybe").is_err());
    }

    #[test]
    fn flag_style_set() {
        let mut s = LinkSpec::none();
        s.set("delay", Some("10ms")).unwrap();
        s.set("reorder", None).unwrap();
        s.set("loss", Some("2")).unwrap();
        s.validate().unwrap();
        assert_eq!(s.to_string(), "delay=10ms,loss=2%,reorder");
    }

    fn prob() -> impl Strategy<Value = Prob> {
        prop_oneof![Just(Prob::ZERO), (0..=PPB_ONE).prop_map(Prob)]
    }

    fn dur() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::ZERO),
            (0u64..=3_600_000_000_000).prop_map(Duration::from_nanos),
            (0u64..=3_600_000).prop_map(Duration::from_millis)
        ]
    }

    fn spec() -> impl Strategy<Value = LinkSpec> {
        (
            (
                dur(),
                dur(),
                any::<bool>(),
                prob(),
                prob(),
                prob(),
                any::<bool>(),
            ),
            (
                proptest::option::of(1..=MAX_RATE),
                proptest::option::of(1..=MAX_QUEUE),
                proptest::option::of(1u32..=65535),
                proptest::option::of((prob(), prob(), prob(), prob())),
                proptest::option::of(1000u32..100_000),
            ),
        )
            .prop_map(
                |(
                    (delay, jitter, n, loss, dup, corrupt, reorder),
                    (rate, queue, mtu, ge, burst),
                )| {
                    let mut s = LinkSpec {
                        delay,
                        jitter,
                        dist: if n { Dist::Normal } else { Dist::Uniform },
                        loss,
                        burst: None,
                        gemodel: None,
                        dup,
                        corrupt,
                        reorder,
                        rate,
                        queue,
                        mtu,
                    };
                    if let Some((p, r, h1, k1)) = ge {
                        s.loss = Prob::ZERO;
                        s.gemodel = Some(Gemodel { p, r, h1, k1 });
                    } else if !loss.is_zero() {
                        s.burst = burst;
                        if s.validate().is_err() {
                            s.burst = None;
                        }
                    }
                    s
                },
            )
    }

    proptest! {
        #[test]
        fn display_round_trips(s in spec()) {
            let text = s.to_string();
            prop_assert_eq!(LinkSpec::parse(&text), Ok(s), "{}", text);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,64}") {
            let _ = LinkSpec::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_keys(k in proptest::sample::select(KEYS), v in "[0-9.:%a-zA-Z]{0,12}") {
            let _ = LinkSpec::parse(&format!("{k}={v}"));
        }
    }
}

//! The native lab description, `lab.toml`: the same things lab.conf says and
//! more (addresses, routes, link emulation fields, captures). Both lab.conf
//! dialects are read into this model, so the planner sees one type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};

/// Which lab flavour the lab follows: decides hub vs learning bridge, how
/// `shared/` is offered and the default sysctls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Netkit: hubs, `shared/` copied into every root, unknown lines are comments.
    Netkit,
    /// Kathará: learning bridges, `shared/` mounted at /shared, strict syntax.
    #[default]
    Kathara,
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dialect::Netkit => "netkit",
            Dialect::Kathara => "kathara",
        })
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "netkit" => Ok(Dialect::Netkit),
            "kathara" | "kathará" => Ok(Dialect::Kathara),
            _ => Err(format!("unknown dialect {s:?} (netkit or kathara)")),
        }
    }
}

/// Highest interface number N of ethN a lab may use (lab.conf and lab.toml).
pub const MAX_IFACE_INDEX: u32 = 63;

/// Largest guest memory a lab may ask for, in MiB (1 TiB).
pub const MAX_MEM_MB: u32 = 1 << 20;

/// `mem` of lab.toml: 1 MiB ..= [`MAX_MEM_MB`]. Checked while decoding, so
/// the error carries the file's line and column.
fn de_mem<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    let v = u64::deserialize(d)?;
    if v == 0 || v > u64::from(MAX_MEM_MB) {
        return Err(serde::de::Error::custom(format!(
            "mem must be 1 ..= {MAX_MEM_MB} MiB (1 TiB), not {v}"
        )));
    }
    Ok(Some(v as u32))
}

/// `index` of lab.toml: 0 ..= [`MAX_IFACE_INDEX`], checked while decoding.
fn de_index<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    let v = u64::deserialize(d)?;
    if v > u64::from(MAX_IFACE_INDEX) {
        return Err(serde::de::Error::custom(format!(
            "interface index {v} too large (0 ..= {MAX_IFACE_INDEX})"
        )));
    }
    Ok(Some(v as u32))
}

/// A whole lab (the root of lab.toml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LabFile {
    #[serde(default)]
    pub lab: LabMeta,
    /// Machines by name.
    #[serde(default)]
    pub machines: BTreeMap<String, Machine>,
    /// Collision domains by name (optional: a domain named by an interface
    /// exists even without an entry here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domains: BTreeMap<String, Domain>,
    /// Image name mapping (`"kathara/pox" = "kathara/sdn"`): looked up
    /// before the user's file and the built-in names (`crate::images`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, String>,
}

/// Lab metadata (LAB_* lines of lab.conf).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LabMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<String>,
    /// Behaviour flavour (switch mode, shared/, sysctls).
    #[serde(default)]
    pub dialect: Dialect,
    /// Memory floor in MiB: machines asking for less get this much (default
    /// `plan::MEM_FLOOR_MB`, measured; `lab start --min-mem` overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_mem: Option<u32>,
}

/// One machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Guest memory in MiB (default 64, Kathará/Netkit `M[mem]`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_mem"
    )]
    pub mem: Option<u32>,
    /// Image name: "default" (the umlkit busybox image), a built-in name
    /// (`kathara/frr`, `umlkit image ls`) or one mapped in `[images]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Interfaces eth0, eth1, ... in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Routes added after the addresses: `"DEST via GW"` or `"default via GW"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Enable IPv6 (Kathará default: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    /// Commands run in the guest after the startup scripts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<String>,
    /// `key=value` sysctls set at boot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctl: Vec<String>,
    /// `NAME=value` environment for the startup scripts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Extra kernel parameters (Netkit `M[append]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_args: Vec<String>,
    /// Machines that must be up before this one (lab.dep).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Host uplinks (Netkit `M[N]=tap,HOST_IP,GUEST_IP`): recorded, not
    /// applied (`bridged` is the NAT uplink): the interface stays unplugged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uplinks: Vec<Uplink>,
    /// One more interface, after the others (Kathará's `M[bridged]=true`),
    /// on the lab's NAT switch (`umlkit switch --nat`): configured by DHCP
    /// (10.0.2.15 on), outbound TCP/UDP through the host user's sockets.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bridged: bool,
}

/// The collision domain of bridged interfaces: the lab's NAT switch (not a
/// name a lab may give a domain).
pub const NAT_DOMAIN: &str = "(nat)";

/// A host uplink of a machine (Netkit's `tap` collision domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Uplink {
    /// Interface number N of ethN.
    pub index: u32,
    /// Host side address (IPv4).
    pub host: String,
    /// Guest side address (IPv4).
    pub guest: String,
}

/// One network interface of a machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Collision domain the interface is plugged into.
    pub domain: String,
    /// Interface number N of ethN; default: its position in the list
    /// (Netkit labs may skip numbers).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_index"
    )]
    pub index: Option<u32>,
    /// Fixed MAC (`aa:bb:cc:dd:ee:ff`); default: derived from the umid and
    /// interface name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Addresses (`10.0.0.1/24`) configured at boot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Link emulation on the frames this interface sends (as `tc netem` on
    /// it would): applied by the switch to its port (direction `in`) from
    /// the machine's first frame on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkEmulation>,
    /// Capture this interface (both directions) from `lab start` to
    /// `STATE/capture/MACHINE-IF.pcapng`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capture: bool,
}

/// How a collision domain is switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainMode {
    /// Every frame to every port (Netkit's uml_switch -hub).
    Hub,
    /// Learning bridge (Kathará's Linux bridge).
    Switch,
}

/// One collision domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Hub or switch; default from the dialect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<DomainMode>,
    /// Capture the domain's traffic from `lab start` to
    /// `STATE/capture/DOMAIN.pcapng`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capture: bool,
    /// Link emulation on every port of the domain (frames on their way out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkEmulation>,
}

/// Link emulation parameters (applied by `umlkit switch`; docs/links.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinkEmulation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_kbit: Option<u64>,
    /// More settings in the switch's syntax (`dist=normal,burst=3,queue=64k`,
    /// or all of them: `delay=20ms,rate=10mbit`); a key given twice is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
}

impl LinkEmulation {
    /// The switch's link settings (`delay=10ms,loss=1.5%,rate=1000kbit`);
    /// Err names the value the switch would refuse.
    pub fn spec(&self) -> std::result::Result<net_proto::link::LinkSpec, String> {
        let mut items = Vec::new();
        if let Some(d) = self.delay_ms {
            items.push(format!("delay={d}ms"));
        }
        if let Some(j) = self.jitter_ms {
            items.push(format!("jitter={j}ms"));
        }
        if let Some(l) = self.loss_percent {
            items.push(format!("loss={l}%"));
        }
        if let Some(b) = self.bandwidth_kbit {
            items.push(format!("rate={b}kbit"));
        }
        if let Some(s) = self
            .spec
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            items.push(s.to_string());
        }
        if items.is_empty() {
            return Ok(net_proto::link::LinkSpec::none());
        }
        net_proto::link::LinkSpec::parse(&items.join(",")).map_err(|e| e.to_string())
    }
}

impl LabFile {
    /// Decode lab.toml text; `file` is only used in error messages.
    pub fn from_toml(text: &str, file: &std::path::Path) -> Result<LabFile> {
        let lab: LabFile = toml::from_str(text).map_err(|e| LabError::Toml {
            file: file.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        lab.validate(file)?;
        Ok(lab)
    }

    /// Encode as lab.toml text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("lab model always serializes")
    }

    /// Check the rules that serde cannot: names, MACs, addresses, references.
    pub fn validate(&self, file: &std::path::Path) -> Result<()> {
        let bad = |rule: String| LabError::Invalid {
            file: file.to_path_buf(),
            rule,
        };
        crate::images::ImageMap {
            file: file.to_path_buf(),
            entries: self.images.clone(),
        }
        .check()?;
        for (name, m) in &self.machines {
            check_machine_name(name, self.lab.dialect).map_err(&bad)?;
            for (i, itf) in m.interfaces.iter().enumerate() {
                if itf.domain.is_empty() {
                    return Err(bad(format!(
                        "machine {name} eth{i}: empty collision domain"
                    )));
                }
                if itf.domain == NAT_DOMAIN {
                    return Err(bad(format!(
                        "machine {name} eth{i}: collision domain {NAT_DOMAIN} is reserved for bridged machines' NAT (bridged = true)"
                    )));
                }
                if let Some(mac) = &itf.mac {
                    crate::mac::parse_mac(mac)
                        .map_err(|e| bad(format!("machine {name} eth{i}: {e}")))?;
                }
                for a in &itf.addresses {
                    parse_cidr(a).map_err(|e| bad(format!("machine {name} eth{i}: {e}")))?;
                }
                if let Some(l) = &itf.link {
                    l.spec().map_err(|e| {
                        bad(format!(
                            "machine {name} eth{}: link emulation: {e}",
                            itf.index.unwrap_or(i as u32)
                        ))
                    })?;
                }
            }
            for d in &m.depends_on {
                if !self.machines.contains_key(d) {
                    return Err(bad(format!(
                        "machine {name} depends on unknown machine {d}"
                    )));
                }
            }
            if let Some(mem) = m.mem.filter(|&v| v == 0 || v > MAX_MEM_MB) {
                return Err(bad(format!(
                    "machine {name}: mem must be 1 ..= {MAX_MEM_MB} MiB (1 TiB), not {mem}"
                )));
            }
            if let Some((i, itf)) = m
                .interfaces
                .iter()
                .enumerate()
                .find(|(_, itf)| itf.index.is_some_and(|n| n > MAX_IFACE_INDEX))
            {
                return Err(bad(format!(
                    "machine {name} interface {i}: index {} too large (0 ..= {MAX_IFACE_INDEX})",
                    itf.index.unwrap_or_default()
                )));
            }
            for up in &m.uplinks {
                for (what, a) in [("host", &up.host), ("guest", &up.guest)] {
                    a.parse::<std::net::Ipv4Addr>().map_err(|_| {
                        bad(format!(
                            "machine {name} uplink eth{}: {what} address {a:?} is not an IPv4 address",
                            up.index
                        ))
                    })?;
                }
                let taken = m
                    .interfaces
                    .iter()
                    .enumerate()
                    .any(|(i, itf)| itf.index.unwrap_or(i as u32) == up.index);
                if taken {
                    return Err(bad(format!(
                        "machine {name}: eth{} is both an interface and an uplink",
                        up.index
                    )));
                }
                if up.index > MAX_IFACE_INDEX {
                    return Err(bad(format!(
                        "machine {name} uplink: index {} too large (0 ..= {MAX_IFACE_INDEX})",
                        up.index
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Machine names: never a path (no `/`, not `.`/`..`, no leading `-` or `.`),
/// printable ASCII; Kathará additionally requires `[a-z0-9_]{1,30}`.
pub fn check_machine_name(name: &str, dialect: Dialect) -> std::result::Result<(), String> {
    if dialect == Dialect::Kathara {
        let ok = !name.is_empty()
            && name.len() <= 30
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(format!(
                "machine name {name:?} breaks Kathará's rule [a-z0-9_]{{1,30}}"
            ));
        }
        return Ok(());
    }
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !ok {
        return Err(format!(
            "machine name {name:?} is not allowed (letters, digits, _ - . ; at most 32; not starting with - or .)"
        ));
    }
    Ok(())
}

/// Parse `A.B.C.D/N` or an IPv6 `addr/N`.
pub fn parse_cidr(s: &str) -> std::result::Result<(std::net::IpAddr, u8), String> {
    let (a, n) = s
        .split_once('/')
        .ok_or_else(|| format!("address {s:?} has no /prefix length"))?;
    let ip: std::net::IpAddr = a
        .parse()
        .map_err(|_| format!("address {s:?} is not an IP address"))?;
    let n: u8 = n
        .parse()
        .map_err(|_| format!("address {s:?}: bad prefix length"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if n > max {
        return Err(format!("address {s:?}: prefix length above {max}"));
    }
    Ok((ip, n))
}

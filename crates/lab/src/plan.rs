//! The planner: a lab model -> a typed plan (switches per collision domain,
//! machines with interfaces, MACs, memory, start waves, every file under one
//! per-lab state dir). Pure: the caller passes the lab's paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::conf::start_waves;
use crate::error::{LabError, Result};
use crate::images::{self, ImageMap};
use crate::mac::{derive_mac, format_mac, parse_mac};
use crate::model::{Dialect, DomainMode, LabFile, LinkEmulation, NAT_DOMAIN};

/// Default guest memory (MiB).
pub const DEFAULT_MEM_MB: u32 = 64;

/// Default memory (MiB) of a machine booting the Debian lab image (an
/// `[image]` Kathará name) without `mem`: Kathará gives containers no limit,
/// and at 64 MiB four FRR routers booting at once lost zebra to the OOM
/// killer (guest MemTotal ~33 MB; Kathara-Labs' OSPF single-area lab took
/// ~60 s to start with routes missing, docs/kathara-labs.md). At 128 the
/// guest has 107 MB, ~76 MB available with FRR running; an idle converged
/// FRR router uses ~67 MiB of host memory (docs/images.md). RAM is allocated
/// lazily, so only what is used costs.
pub const LAB_IMAGE_MEM_MB: u32 = 128;

/// Memory floor (MiB) for lab machines: Netkit-era labs ask for 16 or 32
/// MiB, which a 6.1 kernel with the default image cannot boot with its
/// startup work. Measured (docs/labs.md, "Memory floor"): at 40 MiB 7 of 10
/// three-machine lab starts failed (OOM kills of the exec agent during the
/// folder copy; guest MemTotal 13-29 MB); at 48 all booted but with as little
/// as 6.5 MB left; at 64 at least 19 MB stayed available. Guest RAM is allocated lazily by the host,
/// so the floor costs only what a guest really uses. `[lab] min_mem` /
/// `lab start --min-mem` override it (never below `guest::MIN_MEM_MB`).
pub const MEM_FLOOR_MB: u32 = 64;

/// Per-lab identity: 8 hex digits of SHA-1 of the canonical lab folder. Two
/// labs never share switches, sockets, umids or state.
pub fn lab_id(lab_dir: &Path) -> String {
    let d = Sha1::digest(lab_dir.as_os_str().as_encoded_bytes());
    d[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// One switch (collision domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchPlan {
    pub domain: String,
    /// Switch directory; the control socket is `dir/ctl`.
    pub dir: PathBuf,
    pub pidfile: PathBuf,
    pub hub: bool,
    pub capture: bool,
    pub link: Option<LinkEmulation>,
    /// Management console of an `umlkit switch` (link settings at run time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mgmt: Option<PathBuf>,
    /// The lab's NAT switch (`umlkit switch --nat`) of bridged machines.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat: bool,
}

impl SwitchPlan {
    pub fn ctl(&self) -> PathBuf {
        self.dir.join("ctl")
    }
}

/// One interface of a machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IfacePlan {
    pub name: String,
    pub index: u32,
    pub domain: String,
    /// Index into `Plan::switches`.
    pub switch: usize,
    pub mac: String,
    pub addresses: Vec<String>,
    /// The switch port this interface asks for (`ethN=vde,DIR,MAC,PORT`):
    /// 1, 2, ... per domain, by machine name then interface, so link
    /// settings and captures know it before the machine sends a frame.
    /// 0 in plans saved before ports were planned (learned from the MAC).
    #[serde(default)]
    pub port: u32,
    /// Link emulation on the frames this interface sends (switch port
    /// direction `in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkEmulation>,
    /// Configured by DHCP at boot (a bridged machine's NAT interface).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dhcp: bool,
}

/// One machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachinePlan {
    pub name: String,
    pub umid: String,
    pub mem_mb: u32,
    /// Per-machine state folder (COW, console log, boot script, exec spool).
    pub dir: PathBuf,
    pub interfaces: Vec<IfacePlan>,
    pub routes: Vec<String>,
    pub ipv6: bool,
    /// Sysctls applied at boot: dialect defaults then the lab's.
    pub sysctl: Vec<String>,
    pub env: Vec<String>,
    pub exec: Vec<String>,
    pub kernel_args: Vec<String>,
    pub depends_on: Vec<String>,
    /// The built-in image recipe this machine boots ([`images::resolve`]);
    /// `None`: the default busybox image.
    #[serde(default)]
    pub image: Option<String>,
    /// The `[image]` the lab names, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// How `image_name` became `image` when not directly: the mapping
    /// (`"kathara/pox" = "kathara/sdn" (FILE [images])`) or the stand-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_via: Option<String>,
}

/// A capture started with the lab (`capture = true` on a domain or an
/// interface) and ended by `lab stop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapturePlan {
    /// `DOMAIN` or `MACHINE:IF`.
    pub name: String,
    /// Index into `Plan::switches`.
    pub switch: usize,
    /// Only this port (an interface's capture); None: the whole domain.
    pub port: Option<u32>,
    /// The pcapng file (under `STATE/capture/`).
    pub file: PathBuf,
}

impl Plan {
    /// `MACHINE:IF` of each planned port of switch `si` (pcapng interface
    /// names).
    pub fn port_names(&self, si: usize) -> BTreeMap<u32, String> {
        self.machines
            .iter()
            .flat_map(|m| {
                m.interfaces
                    .iter()
                    .filter(move |i| i.switch == si && i.port > 0)
                    .map(move |i| (i.port, format!("{}:{}", m.name, i.name)))
            })
            .collect()
    }
}

/// A whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub name: String,
    pub id: String,
    pub dialect: Dialect,
    pub lab_dir: PathBuf,
    pub state_dir: PathBuf,
    /// `uml_dir=` of every guest of this lab.
    pub uml_dir: PathBuf,
    pub switches: Vec<SwitchPlan>,
    pub machines: Vec<MachinePlan>,
    /// Machine names per start wave (lab.dep order).
    pub waves: Vec<Vec<String>>,
    pub notes: Vec<String>,
    /// Trusted lab (`lab start --host-access`): the lab folder is shared
    /// live through hostfs and host-side kernel arguments pass. Otherwise
    /// machines see a read-only copy ([`Plan::lab_disk`]) and no host path.
    #[serde(default)]
    pub host_access: bool,
    /// Captures started with the lab.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<CapturePlan>,
}

impl Plan {
    pub fn machine(&self, name: &str) -> Option<&MachinePlan> {
        self.machines.iter().find(|m| m.name == name)
    }
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
    pub fn image(&self) -> PathBuf {
        self.state_dir.join("root.img")
    }
    /// The read-only ext4 copy of the lab folder machines mount at /hostlab.
    pub fn lab_disk(&self) -> PathBuf {
        self.state_dir.join("hostlab.img")
    }
}

/// Kathará's defaults inside every device.
pub const KATHARA_SYSCTLS: &[&str] = &[
    "net.ipv4.ip_forward=1",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
    "net.ipv4.icmp_ratelimit=0",
];

/// Kathará's sysctls for a machine with IPv6 (`ipv6=true`).
pub const KATHARA_IPV6_SYSCTLS: &[&str] = &[
    "net.ipv6.conf.all.forwarding=1",
    "net.ipv6.conf.default.forwarding=1",
    "net.ipv6.conf.all.accept_ra=0",
    "net.ipv6.conf.default.accept_ra=0",
    "net.ipv6.icmp.ratelimit=0",
];

/// Make the plan. `state_dir` is the lab's own state folder.
pub fn plan(lab: &LabFile, lab_dir: &Path, state_dir: &Path) -> Result<Plan> {
    plan_with(lab, lab_dir, state_dir, None)
}

/// [`plan`] with the user's image mapping (`images::load_user_map`),
/// consulted after the lab's own `[images]` table.
pub fn plan_with(
    lab: &LabFile,
    lab_dir: &Path,
    state_dir: &Path,
    user_images: Option<&ImageMap>,
) -> Result<Plan> {
    let id = lab_id(lab_dir);
    let dialect = lab.lab.dialect;
    let mut notes = Vec::new();
    let mut domains: BTreeMap<&str, ()> = BTreeMap::new();
    for m in lab.machines.values() {
        for i in &m.interfaces {
            domains.insert(&i.domain, ());
        }
    }
    for d in lab.domains.keys() {
        domains.insert(d, ());
    }
    if lab.machines.values().any(|m| m.bridged) {
        domains.insert(NAT_DOMAIN, ());
    }
    let switches: Vec<SwitchPlan> = domains
        .keys()
        .enumerate()
        .map(|(i, d)| {
            let conf = lab.domains.get(*d);
            let mode = conf.and_then(|c| c.mode).unwrap_or(match dialect {
                Dialect::Netkit => DomainMode::Hub,
                Dialect::Kathara => DomainMode::Switch,
            });
            SwitchPlan {
                domain: d.to_string(),
                dir: state_dir.join("sw").join(i.to_string()),
                pidfile: state_dir.join("sw").join(format!("{i}.pid")),
                hub: mode == DomainMode::Hub,
                capture: conf.is_some_and(|c| c.capture),
                link: conf.and_then(|c| c.link.clone()),
                mgmt: Some(state_dir.join("sw").join(format!("{i}.mgmt"))),
                nat: *d == NAT_DOMAIN,
            }
        })
        .collect();
    for s in &switches {
        if let Some(l) = &s.link {
            let spec = l
                .spec()
                .map_err(|e| LabError::Run(format!("domain {}: link emulation: {e}", s.domain)))?;
            notes.push(format!(
                "domain {}: link emulation {spec} on every port (applied by umlkit switch, not by vde_switch)",
                s.domain
            ));
        }
    }
    let sw_index: BTreeMap<&str, usize> = switches
        .iter()
        .enumerate()
        .map(|(i, s)| (s.domain.as_str(), i))
        .collect();

    let floor = lab
        .lab
        .min_mem
        .unwrap_or(MEM_FLOOR_MB)
        .max(guest::MIN_MEM_MB);
    let mut raised: Vec<String> = Vec::new();
    let mut machines = Vec::new();
    let mut next_port: Vec<u32> = vec![1; switches.len()];
    let mut captures: Vec<CapturePlan> = switches
        .iter()
        .enumerate()
        .filter(|(_, s)| s.capture)
        .map(|(i, s)| CapturePlan {
            name: s.domain.clone(),
            switch: i,
            port: None,
            file: state_dir
                .join("capture")
                .join(format!("{}.pcapng", file_part(&s.domain, i))),
        })
        .collect();
    let lab_images = ImageMap {
        file: lab_dir.join("lab.toml"),
        entries: lab.images.clone(),
    };
    // image names without an image: one note per name (any tag), naming
    // its machines
    let mut missing: BTreeMap<String, (Vec<String>, images::Resolved)> = BTreeMap::new();
    for (name, m) in &lab.machines {
        for up in &m.uplinks {
            notes.push(format!(
                "{name} eth{}: Netkit tap uplink (host {}, guest {}) is recorded, not applied (a NAT uplink is `bridged = true` / Kathará's M[bridged]=true): the interface is left unplugged",
                up.index, up.host, up.guest
            ));
        }
        let resolved = images::resolve(m.image.as_deref(), Some(&lab_images), user_images);
        let image = resolved.recipe.clone();
        let image_via = resolved.via.clone();
        if let (Some(img), Some(_)) = (&m.image, resolved.missing) {
            missing
                .entry(image::recipe::repo_of(img))
                .or_insert_with(|| (Vec::new(), resolved.clone()))
                .0
                .push(name.clone());
        }
        let asked = m.mem.unwrap_or(if image.is_some() {
            LAB_IMAGE_MEM_MB
        } else {
            DEFAULT_MEM_MB
        });
        if asked < floor {
            raised.push(format!("{name} ({asked})"));
        }
        let umid = format!("{name}-{id}");
        let mut interfaces: Vec<IfacePlan> = Vec::new();
        for (pos, itf) in m.interfaces.iter().enumerate() {
            let index = itf.index.unwrap_or(pos as u32);
            if interfaces.iter().any(|i| i.index == index) {
                return Err(LabError::Invalid {
                    file: lab_dir.to_path_buf(),
                    rule: format!("machine {name}: interface eth{index} given twice"),
                });
            }
            let ifname = format!("eth{index}");
            let mac = match &itf.mac {
                Some(s) => format_mac(&parse_mac(s).map_err(|rule| LabError::Invalid {
                    file: lab_dir.to_path_buf(),
                    rule: format!("machine {name} {ifname}: {rule}"),
                })?),
                None => format_mac(&derive_mac(&umid, &ifname)),
            };
            let switch = sw_index[itf.domain.as_str()];
            let port = next_port[switch];
            next_port[switch] += 1;
            if let Some(l) = &itf.link {
                let spec = l.spec().map_err(|e| LabError::Invalid {
                    file: lab_dir.to_path_buf(),
                    rule: format!("machine {name} {ifname}: link emulation: {e}"),
                })?;
                notes.push(format!(
                    "{name} {ifname}: link emulation {spec} on the frames it sends (port {port} of domain {}; applied by umlkit switch, not by vde_switch)",
                    itf.domain
                ));
            }
            if itf.capture {
                captures.push(CapturePlan {
                    name: format!("{name}:{ifname}"),
                    switch,
                    port: Some(port),
                    file: state_dir
                        .join("capture")
                        .join(format!("{name}-{ifname}.pcapng")),
                    // (machine names are never paths: check_machine_name)
                });
            }
            interfaces.push(IfacePlan {
                name: ifname,
                index,
                domain: itf.domain.clone(),
                switch,
                mac,
                addresses: itf.addresses.clone(),
                port,
                link: itf.link.clone(),
                dhcp: false,
            });
        }
        if m.bridged {
            // Kathará puts the bridged interface after the others
            let index = interfaces
                .iter()
                .map(|i| i.index + 1)
                .chain(m.uplinks.iter().map(|u| u.index + 1))
                .max()
                .unwrap_or(0);
            let ifname = format!("eth{index}");
            let switch = sw_index[NAT_DOMAIN];
            let port = next_port[switch];
            next_port[switch] += 1;
            notes.push(format!(
                "{name} {ifname}: bridged: NAT uplink by DHCP (10.0.2.0/24, gateway 10.0.2.2; outbound TCP/UDP through your own sockets; the host's own 127.0.0.1 through 10.0.2.2 only with `lab start --host-access`)"
            ));
            interfaces.push(IfacePlan {
                name: ifname.clone(),
                index,
                domain: NAT_DOMAIN.to_string(),
                switch,
                mac: format_mac(&derive_mac(&umid, &ifname)),
                addresses: Vec::new(),
                port,
                link: None,
                dhcp: true,
            });
        }
        let ipv6 = m.ipv6.unwrap_or(dialect == Dialect::Netkit);
        let mut sysctl: Vec<String> = Vec::new();
        if dialect == Dialect::Kathara {
            sysctl.extend(KATHARA_SYSCTLS.iter().map(|s| s.to_string()));
        }
        if ipv6 && dialect == Dialect::Kathara {
            sysctl.extend(KATHARA_IPV6_SYSCTLS.iter().map(|s| s.to_string()));
        }
        if !ipv6 {
            sysctl.push("net.ipv6.conf.all.disable_ipv6=1".into());
            sysctl.push("net.ipv6.conf.default.disable_ipv6=1".into());
        }
        sysctl.extend(m.sysctl.iter().cloned());
        machines.push(MachinePlan {
            name: name.clone(),
            umid,
            mem_mb: asked.max(floor),
            dir: state_dir.join("m").join(name),
            interfaces,
            routes: m.routes.clone(),
            ipv6,
            sysctl,
            env: m.env.clone(),
            exec: m.exec.clone(),
            kernel_args: {
                let mut k = m.kernel_args.clone();
                if ipv6 {
                    // lab images keep IPv6 disabled unless asked for
                    k.push("umlkit.ipv6=1".into());
                }
                k
            },
            depends_on: m.depends_on.clone(),
            image,
            image_name: m.image.clone(),
            image_via,
        });
    }
    for (img, (who, r)) in &missing {
        notes.push(images::missing_note(
            img,
            who,
            r,
            user_images.map(|u| u.file.as_path()),
        ));
    }
    if !raised.is_empty() {
        notes.push(format!(
            "memory raised to the floor of {floor} MiB (below it the kernel with the default image and its startup work may not boot) for: {}; set `min_mem` in lab.toml [lab] or `--min-mem N` to change the floor",
            raised.join(", ")
        ));
    }
    let names: Vec<String> = lab.machines.keys().cloned().collect();
    let deps: BTreeMap<String, Vec<String>> = lab
        .machines
        .iter()
        .map(|(k, m)| (k.clone(), m.depends_on.clone()))
        .collect();
    let waves = start_waves(&names, &deps, &lab_dir.join("lab.dep"))?;
    Ok(Plan {
        name: lab
            .lab
            .name
            .clone()
            .or_else(|| {
                lab_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| id.clone()),
        id,
        dialect,
        lab_dir: lab_dir.to_path_buf(),
        state_dir: state_dir.to_path_buf(),
        uml_dir: state_dir.join("uml"),
        switches,
        machines,
        waves,
        notes,
        host_access: false,
        captures,
    })
}

/// A domain name as a file name: itself when it is plain (letters, digits,
/// `_ - .`, not starting with `.`), else `domainN` (never a path).
fn file_part(domain: &str, i: usize) -> String {
    let plain = !domain.is_empty()
        && domain.len() <= 64
        && !domain.starts_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if plain {
        domain.to_string()
    } else {
        format!("domain{i}")
    }
}

/// Restrict waves to `only` plus everything they depend on (transitively).
pub fn select(plan: &Plan, only: &[String]) -> Result<Vec<Vec<String>>> {
    if only.is_empty() {
        return Ok(plan.waves.clone());
    }
    let mut want: Vec<String> = Vec::new();
    let mut todo: Vec<String> = only.to_vec();
    while let Some(n) = todo.pop() {
        let m = plan.machine(&n).ok_or_else(|| {
            LabError::Run(format!("machine {n} is not part of lab {}", plan.name))
        })?;
        if !want.contains(&n) {
            want.push(n);
            todo.extend(m.depends_on.iter().cloned());
        }
    }
    Ok(plan
        .waves
        .iter()
        .map(|w| {
            w.iter()
                .filter(|m| want.contains(m))
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|w: &Vec<String>| !w.is_empty())
        .collect())
}

//! Typed guest configuration and the pure kernel command-line builder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Smallest `mem=` the Debian 6.1 kernel boots the default image with:
/// below ~33 MiB it panics early ("Failed to allocate ... bytes for node 0
/// memory map"); 40 MiB leaves a margin.
pub const MIN_MEM_MB: u32 = 40;

/// One disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// The image (the shared base when a COW is used).
    pub image: PathBuf,
    /// Explicit COW file; `None` = an automatic per-guest COW in the state
    /// dir (recreated at each start) unless `readonly` or `no_cow`.
    pub cow: Option<PathBuf>,
    /// Attach read-only (`ubdNr=`), no COW.
    pub readonly: bool,
    /// Write to the image itself (no COW).
    #[serde(default)]
    pub no_cow: bool,
}

impl DiskSpec {
    /// A disk with an automatic COW over `image`.
    pub fn new(image: impl Into<PathBuf>) -> DiskSpec {
        DiskSpec {
            image: image.into(),
            cow: None,
            readonly: false,
            no_cow: false,
        }
    }

    /// Parse `IMAGE[:cow=PATH|:ro|:nocow]`.
    pub fn parse(s: &str) -> Result<DiskSpec, String> {
        let mut parts = s.split(':');
        let image = parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or("empty image path")?;
        let mut d = DiskSpec::new(image);
        for p in parts {
            match p {
                "ro" => d.readonly = true,
                "nocow" => d.no_cow = true,
                _ if p.starts_with("cow=") => d.cow = Some(PathBuf::from(&p[4..])),
                _ => {
                    return Err(format!(
                        "unknown disk option '{p}' (expected cow=PATH, ro or nocow)"
                    ))
                }
            }
        }
        Ok(d)
    }
}

/// How an interface reaches its switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transport {
    /// uml_switch / vde_switch control socket (kernel `daemon` transport;
    /// no helper process).
    Daemon { ctl: PathBuf },
    /// VDE switch directory (kernel `vde` transport; the kernel spawns `vde_plug`).
    Vde { dir: PathBuf, port: Option<u32> },
    /// The switch's vector socket `DIR/vec` (`umlkit switch --vector`; the
    /// kernel's vector driver, `bess` transport: batched, no helper). The
    /// guest names the interface `ethN` at boot (the driver says `vecN`).
    /// `mtu`: jumbo frames (the switch needs `--mtu` as large).
    Vector {
        sock: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u32>,
    },
}

/// One network interface (`eth<N>` in the order given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSpec {
    pub transport: Transport,
    /// `None` = a stable locally administered MAC derived from guest name and index.
    pub mac: Option<[u8; 6]>,
}

impl NetSpec {
    /// Parse `SWITCH[,mac=aa:bb:..][,vde|,vector[,mtu=N]][,port=N]`: a directory holding `ctl`
    /// uses the daemon transport on `DIR/ctl` (fewest hops), a socket path the
    /// daemon transport on it; `,vde` (or `port=N`, which only the vde transport
    /// can ask for) forces the vde transport on a directory.
    pub fn parse(s: &str) -> Result<NetSpec, String> {
        let mut parts = s.split(',');
        let sw = PathBuf::from(
            parts
                .next()
                .filter(|p| !p.is_empty())
                .ok_or("empty switch path")?,
        );
        let (mut mac, mut vde, mut port, mut vector) = (None, false, None, false);
        let mut mtu = None;
        for p in parts {
            if let Some(m) = p.strip_prefix("mac=") {
                mac = Some(parse_mac(m).ok_or_else(|| format!("invalid MAC '{m}'"))?);
            } else if p == "vde" {
                vde = true;
            } else if p == "vector" {
                vector = true;
            } else if let Some(n) = p.strip_prefix("port=") {
                port = Some(n.parse().map_err(|_| format!("invalid port '{n}'"))?);
            } else if let Some(n) = p.strip_prefix("mtu=") {
                let max = net_proto::eth::MAX_MTU as u32;
                mtu = Some(
                    n.parse()
                        .ok()
                        .filter(|m| (68..=max).contains(m))
                        .ok_or_else(|| format!("invalid mtu '{n}' (68 to {max})"))?,
                );
            } else {
                return Err(format!(
                    "unknown net option '{p}' (expected mac=, vde, vector, mtu=, port=)"
                ));
            }
        }
        if mtu.is_some() && !vector {
            return Err(
                "'mtu=' needs 'vector' (the legacy transports carry 1500-byte frames)".into(),
            );
        }
        if vector && (vde || port.is_some()) {
            return Err("'vector' takes no 'vde' or 'port=' (the switch picks the port)".into());
        }
        let transport = if vector {
            if !sw.is_dir() {
                return Err(format!(
                    "'vector' needs a switch directory (umlkit switch -s DIR --vector): {} is not one",
                    sw.display()
                ));
            }
            Transport::Vector {
                sock: sw.join("vec"),
                mtu,
            }
        } else if vde || port.is_some() {
            // only the vde transport can ask the switch for a port: `port=`
            // implies it (it was silently ignored on the daemon transport)
            Transport::Vde { dir: sw, port }
        } else if sw.is_dir() {
            Transport::Daemon {
                ctl: sw.join("ctl"),
            }
        } else {
            Transport::Daemon { ctl: sw }
        };
        Ok(NetSpec { transport, mac })
    }
}

/// Parse `aa:bb:cc:dd:ee:ff` ([`net_proto::eth::MacAddr`]'s parser).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    net_proto::eth::MacAddr::parse(s).map(|m| m.0)
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A stable MAC for interface `idx` of guest `name`: `02:75:` + 4 hash bytes.
pub fn default_mac(name: &str, idx: usize) -> [u8; 6] {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes().chain([0, idx as u8]) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let b = h.to_be_bytes();
    [0x02, 0x75, b[0], b[1], b[2], b[3]]
}

/// Where con0 goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ConsoleMode {
    /// The terminal of `umlkit run` (foreground only).
    Stdio,
    /// A pty held by the supervisor (`umlkit console NAME` attaches).
    #[default]
    Pty,
    /// No console.
    None,
}

/// Everything needed to start a guest. Paths should be absolute (relative
/// ones are made absolute by `Store::start`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestConfig {
    /// Guest name = umid = default host name. `[A-Za-z0-9_.-]`, at most 32 chars.
    pub name: String,
    pub mem_mb: u32,
    pub disks: Vec<DiskSpec>,
    pub nets: Vec<NetSpec>,
    /// Host directory shared as hostfs (mounted at `umlkit.hostfs`, default `/hostlab`).
    pub hostfs: Option<PathBuf>,
    /// UML kernel (default: see `find_kernel`).
    pub kernel: Option<PathBuf>,
    /// Extra kernel arguments, appended last (they win), e.g. `umlkit.ip.eth0=10.0.0.1/24`.
    pub extra_args: Vec<String>,
    pub console: ConsoleMode,
}

impl GuestConfig {
    pub fn new(name: &str) -> GuestConfig {
        GuestConfig {
            name: name.to_string(),
            mem_mb: 64,
            disks: Vec::new(),
            nets: Vec::new(),
            hostfs: None,
            kernel: None,
            extra_args: Vec::new(),
            console: ConsoleMode::Pty,
        }
    }
}

/// Check a guest name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

/// The auto-COW path of disk `idx` in guest dir `dir`.
pub fn auto_cow(dir: &Path, idx: usize) -> PathBuf {
    dir.join(format!("ubd{idx}.cow"))
}

/// Inputs of the command-line builder that are not part of the config.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The guest's state dir (auto COWs live here).
    pub dir: PathBuf,
    /// Private uml_dir.
    pub uml_dir: PathBuf,
    /// Host fd number of the agent's serial line in the kernel process.
    pub agent_fd: Option<i32>,
}

/// Build the kernel command line (pure).
pub fn kernel_args(cfg: &GuestConfig, l: &Layout) -> Vec<String> {
    let mut a = vec![
        format!("umid={}", cfg.name),
        format!("uml_dir={}/", l.uml_dir.display()),
        format!("mem={}M", cfg.mem_mb),
        "con=null".to_string(),
        match cfg.console {
            ConsoleMode::None => "con0=null".to_string(),
            _ => "con0=fd:0,fd:1".to_string(),
        },
        "ssl=null".to_string(),
    ];
    if let Some(fd) = l.agent_fd {
        a.push(format!("ssl1=fd:{fd}"));
    }
    for (i, d) in cfg.disks.iter().enumerate() {
        let img = d.image.display();
        if d.readonly {
            a.push(format!("ubd{i}r={img}"));
        } else if d.no_cow {
            a.push(format!("ubd{i}={img}"));
        } else {
            let cow = d.cow.clone().unwrap_or_else(|| auto_cow(&l.dir, i));
            a.push(format!("ubd{i}={},{img}", cow.display()));
        }
    }
    if !cfg.disks.is_empty() {
        a.push("root=/dev/ubda".into());
        a.push(if cfg.disks[0].readonly { "ro" } else { "rw" }.into());
    }
    for (i, n) in cfg.nets.iter().enumerate() {
        let mac = format_mac(&n.mac.unwrap_or_else(|| default_mac(&cfg.name, i)));
        match &n.transport {
            Transport::Daemon { ctl } => {
                a.push(format!("eth{i}=daemon,{mac},unix,{}", ctl.display()))
            }
            Transport::Vde { dir, port } => a.push(format!(
                "eth{i}=vde,{},{mac},{}",
                dir.display(),
                port.map(|p| p.to_string()).unwrap_or_default()
            )),
            Transport::Vector { sock, mtu } => {
                a.push(format!(
                    "vec{i}:transport=bess,dst={},mac={mac}{}",
                    sock.display(),
                    mtu.map(|m| format!(",mtu={m}")).unwrap_or_default()
                ));
                // the image's rcS renames it before configuring addresses
                a.push(format!("umlkit.ifname.vec{i}=eth{i}"));
            }
        }
    }
    if let Some(h) = &cfg.hostfs {
        a.push(format!("hostfs={}", h.display()));
        a.push("umlkit.hostfs=/hostlab".into());
    } else if !cfg.extra_args.iter().any(|x| x.starts_with("hostfs=")) {
        // Without a share, hostfs would reach the host's whole `/` (root in
        // the guest can `mount -t hostfs none /mnt`). `hostfs=DIR` only
        // prefixes guest paths lexically, so a file is the only root below
        // which no host path resolves.
        a.push(NO_HOSTFS.into());
    }
    a.push(format!("umlkit.hostname={}", cfg.name));
    a.extend(cfg.extra_args.iter().cloned());
    a
}

/// The hostfs root of a guest that shares no host directory: a file, so
/// `mount -t hostfs` in the guest reaches no host path.
pub const NO_HOSTFS: &str = "hostfs=/dev/null";

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            dir: "/s/g1".into(),
            uml_dir: "/s/g1/u".into(),
            agent_fd: Some(3),
        }
    }

    #[test]
    fn full_command_line() {
        let mut c = GuestConfig::new("g1");
        c.disks.push(DiskSpec::new("/img/base.img"));
        c.disks.push(DiskSpec::parse("/img/data.img:ro").unwrap());
        c.disks
            .push(DiskSpec::parse("/img/x.img:cow=/c/x.cow").unwrap());
        c.nets.push(NetSpec {
            transport: Transport::Daemon {
                ctl: "/sw/ctl".into(),
            },
            mac: Some([2, 0, 0, 0, 0, 1]),
        });
        c.nets.push(NetSpec {
            transport: Transport::Vde {
                dir: "/vde".into(),
                port: Some(4),
            },
            mac: None,
        });
        c.hostfs = Some("/share".into());
        c.extra_args = vec!["umlkit.ip.eth0=10.0.0.1/24".into()];
        let m = format_mac(&default_mac("g1", 1));
        assert_eq!(
            kernel_args(&c, &layout()),
            vec![
                "umid=g1",
                "uml_dir=/s/g1/u/",
                "mem=64M",
                "con=null",
                "con0=fd:0,fd:1",
                "ssl=null",
                "ssl1=fd:3",
                "ubd0=/s/g1/ubd0.cow,/img/base.img",
                "ubd1r=/img/data.img",
                "ubd2=/c/x.cow,/img/x.img",
                "root=/dev/ubda",
                "rw",
                "eth0=daemon,02:00:00:00:00:01,unix,/sw/ctl",
                &format!("eth1=vde,/vde,{m},4"),
                "hostfs=/share",
                "umlkit.hostfs=/hostlab",
                "umlkit.hostname=g1",
                "umlkit.ip.eth0=10.0.0.1/24",
            ]
        );
    }

    #[test]
    fn console_none_and_no_agent() {
        let mut c = GuestConfig::new("x");
        c.console = ConsoleMode::None;
        let l = Layout {
            agent_fd: None,
            ..layout()
        };
        let a = kernel_args(&c, &l);
        assert!(a.contains(&"con0=null".to_string()));
        assert!(!a.iter().any(|x| x.starts_with("ssl1=")));
        assert!(!a.iter().any(|x| x.starts_with("root=")));
    }

    /// Issue 8: a guest started without `--hostfs` could mount the host's
    /// whole `/` with `mount -t hostfs none /mnt` (no `hostfs=` meant `/`).
    #[test]
    fn guest_without_a_share_gets_no_host_filesystem() {
        let c = GuestConfig::new("x");
        let a = kernel_args(&c, &layout());
        assert_eq!(
            a.iter()
                .filter(|x| x.starts_with("hostfs="))
                .collect::<Vec<_>>(),
            [NO_HOSTFS]
        );
        let mut c = GuestConfig::new("x");
        c.hostfs = Some("/srv/share".into());
        let a = kernel_args(&c, &layout());
        assert!(a.contains(&"hostfs=/srv/share".to_string()), "{a:?}");
        assert!(!a.iter().any(|x| x == NO_HOSTFS), "{a:?}");
        let mut c = GuestConfig::new("x");
        c.extra_args.push("hostfs=/explicit".into());
        let a = kernel_args(&c, &layout());
        assert!(!a.iter().any(|x| x == NO_HOSTFS), "{a:?}");
    }

    #[test]
    fn vector_interface_is_renamed_eth_at_boot() {
        let mut c = GuestConfig::new("x");
        c.nets.push(NetSpec {
            transport: Transport::Daemon {
                ctl: "/a/ctl".into(),
            },
            mac: None,
        });
        c.nets.push(NetSpec {
            transport: Transport::Vector {
                sock: "/sw/vec".into(),
                mtu: None,
            },
            mac: Some([2, 0, 0, 0, 0, 7]),
        });
        let a = kernel_args(&c, &layout());
        assert!(
            a.contains(&"vec1:transport=bess,dst=/sw/vec,mac=02:00:00:00:00:07".to_string()),
            "{a:?}"
        );
        assert!(a.contains(&"umlkit.ifname.vec1=eth1".to_string()), "{a:?}");
        assert!(a.iter().any(|x| x.starts_with("eth0=daemon,")), "{a:?}");
    }

    #[test]
    fn parsing() {
        assert!(DiskSpec::parse("a.img:bogus").is_err());
        assert!(DiskSpec::parse("").is_err());
        assert_eq!(
            parse_mac("02:00:0a:0b:0c:ff"),
            Some([2, 0, 10, 11, 12, 255])
        );
        assert_eq!(parse_mac("02:00"), None);
        let n = NetSpec::parse("/nonexistent/sock,mac=02:00:00:00:00:09").unwrap();
        assert_eq!(
            n.transport,
            Transport::Daemon {
                ctl: "/nonexistent/sock".into()
            }
        );
        assert!(NetSpec::parse("/x,what").is_err());
        // port= implies the vde transport (the only one that asks for a port)
        assert_eq!(
            NetSpec::parse("/sw,port=3").unwrap().transport,
            Transport::Vde {
                dir: "/sw".into(),
                port: Some(3)
            }
        );
        let v = NetSpec::parse("/sw,vde,port=3").unwrap();
        assert_eq!(
            v.transport,
            Transport::Vde {
                dir: "/sw".into(),
                port: Some(3)
            }
        );
        let tmp = tempfile::tempdir().unwrap();
        let sw = tmp.path().display().to_string();
        let v = NetSpec::parse(&format!("{sw},vector")).unwrap();
        assert_eq!(
            v.transport,
            Transport::Vector {
                sock: tmp.path().join("vec"),
                mtu: None
            }
        );
        let j = NetSpec::parse(&format!("{sw},vector,mtu=9000")).unwrap();
        assert_eq!(
            j.transport,
            Transport::Vector {
                sock: tmp.path().join("vec"),
                mtu: Some(9000)
            }
        );
        let mut c = GuestConfig::new("x");
        c.nets.push(j);
        let a = kernel_args(&c, &layout());
        assert!(
            a.iter()
                .any(|x| x.starts_with("vec0:transport=bess,") && x.ends_with(",mtu=9000")),
            "{a:?}"
        );
        assert!(NetSpec::parse(&format!("{sw},mtu=9000"))
            .unwrap_err()
            .contains("needs 'vector'"));
        assert!(NetSpec::parse(&format!("{sw},vector,mtu=9217")).is_err());
        assert!(NetSpec::parse(&format!("{sw},vector,mtu=x")).is_err());
        assert!(NetSpec::parse("/nonexistent/dir,vector").is_err());
        assert!(NetSpec::parse(&format!("{sw},vector,vde")).is_err());
        assert!(NetSpec::parse(&format!("{sw},vector,port=2")).is_err());
        assert!(valid_name("r1.lab-2_x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(33)));
        let m = default_mac("r1", 0);
        assert_eq!(m[0] & 1, 0, "unicast");
        assert_eq!(m[0] & 2, 2, "locally administered");
        assert_ne!(default_mac("r1", 0), default_mac("r1", 1));
    }
}

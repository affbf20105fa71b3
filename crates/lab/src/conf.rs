//! lab.conf reader for the Netkit and Kathará dialects (pure: text in, model
//! out).
//!
//! Syntax shared by both: `#` comments, blank lines, `MACHINE[KEY]=VALUE`
//! with an optional `"..."` around VALUE, and `LAB_DESCRIPTION`, `LAB_VERSION`,
//! `LAB_AUTHOR`, `LAB_EMAIL`, `LAB_WEB` (Kathará also `LAB_NAME`). A numeric
//! KEY is an interface number, its VALUE the collision domain (Kathará:
//! `DOMAIN/MAC`). Other keys are device options.
//!
//! Netkit (read as Netkit's lstart reads it): `machines="a b c"` lists the
//! machines, lines that are not assignments are comments, KEY may be any
//! vstart option, long (`mem`, `con0`, `append`, `exec`, `eth0`, ...) or
//! short (`M` is `--mem`, `e` is `--exec`, ...), any machine name vstart
//! accepts, interface numbers may have gaps, the first setting of a key wins,
//! spaces in values are removed with a warning, and `tap,HOST_IP,GUEST_IP`
//! is the host uplink. Kathará rejects most of that: names match
//! `[a-z0-9_]{1,30}`, interfaces are numbered from eth0 without gaps. In both,
//! an unknown key is kept going past with one warning per key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::dialect::{decide, Evidence, FolderFacts};
use crate::error::{LabError, Result};
use crate::model::{check_machine_name, Dialect, Interface, LabFile, Uplink};

/// Something lab.conf asked for that umlkit does not do as asked, with what
/// was done instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub line: usize,
    pub machine: Option<String>,
    pub key: String,
    pub message: String,
    /// The key had no effect (unknown, or known but not honoured).
    pub ignored: bool,
    /// Later `machine (line N)` places with the same key and message: each
    /// key is reported once.
    pub also: Vec<String>,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.machine {
            Some(m) => write!(f, "line {}: {m}[{}]: {}", self.line, self.key, self.message)?,
            None => write!(f, "line {}: {}: {}", self.line, self.key, self.message)?,
        }
        if !self.also.is_empty() {
            write!(f, " (also {})", self.also.join(", "))?;
        }
        Ok(())
    }
}

/// Add `n`, or fold it into an earlier note with the same key and message
/// (one warning per key, naming its first line).
fn push_note(notes: &mut Vec<Note>, n: Note) {
    if let Some(prev) = notes
        .iter_mut()
        .find(|p| p.key == n.key && p.message == n.message && p.machine.is_some())
    {
        if let Some(m) = n.machine {
            prev.also.push(format!("{m} (line {})", n.line));
            return;
        }
    }
    notes.push(n);
}

/// A lab.conf key that had no effect, with where it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    pub key: String,
    /// First line using it.
    pub line: usize,
    /// `machine (line N)` for every use.
    pub uses: Vec<String>,
}

impl std::fmt::Display for IgnoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.key, self.uses.join(", "))
    }
}

/// The result of reading lab.conf.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfRead {
    pub lab: LabFile,
    /// Netkit `machines=` list, if given (it replaces directory discovery).
    pub machines_line: Option<Vec<String>>,
    /// How the dialect was chosen.
    pub dialect_reason: String,
    pub notes: Vec<Note>,
}

impl ConfRead {
    /// Keys that had no effect (unknown, or known but not honoured), once
    /// each, in file order.
    pub fn ignored_keys(&self) -> Vec<IgnoredKey> {
        let mut v: Vec<IgnoredKey> = Vec::new();
        for n in self.notes.iter().filter(|n| n.ignored) {
            let Some(m) = &n.machine else { continue };
            let mut uses = vec![format!("{m} (line {})", n.line)];
            uses.extend(n.also.iter().cloned());
            match v.iter_mut().find(|k| k.key == n.key) {
                Some(k) => k.uses.extend(uses),
                None => v.push(IgnoredKey {
                    key: n.key.clone(),
                    line: n.line,
                    uses,
                }),
            }
        }
        v.sort_by_key(|k| k.line);
        v
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Meta {
        key: String,
        value: String,
    },
    MachinesList(Vec<String>),
    Option {
        machine: String,
        key: String,
        value: String,
    },
    Junk(String),
    Global {
        key: String,
    },
}

const KATHARA_ONLY_KEYS: &[&str] = &[
    "image",
    "bridged",
    "ipv6",
    "sysctl",
    "env",
    "num_terms",
    "cpus",
    "port",
    "shell",
    "volume",
    "privileged",
    "ulimit",
    "entrypoint",
    "args",
];
const NETKIT_ONLY_KEYS: &[&str] = &[
    "con0",
    "con1",
    "append",
    "filesystem",
    "kernel",
    "model-fs",
    "xterm",
    "hostlab",
    "hosthome",
    "eth",
    "M",
    "f",
    "k",
    "W",
    "no-hosthome",
];
const META_KEYS: &[&str] = &[
    "LAB_DESCRIPTION",
    "LAB_VERSION",
    "LAB_AUTHOR",
    "LAB_EMAIL",
    "LAB_WEB",
    "LAB_NAME",
];

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

fn tokenize(line: &str) -> Option<Entry> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let Some((lhs, rhs)) = t.split_once('=') else {
        return Some(Entry::Junk(t.to_string()));
    };
    let lhs = lhs.trim();
    if let Some(open) = lhs.find('[') {
        if !lhs.ends_with(']') || open == 0 {
            return Some(Entry::Junk(t.to_string()));
        }
        let machine = lhs[..open].trim().to_string();
        let key = lhs[open + 1..lhs.len() - 1].trim().to_string();
        if key.is_empty() || machine.contains(char::is_whitespace) {
            return Some(Entry::Junk(t.to_string()));
        }
        return Some(Entry::Option {
            machine,
            key,
            value: unquote(rhs),
        });
    }
    if lhs == "machines" {
        return Some(Entry::MachinesList(
            unquote(rhs)
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        ));
    }
    if lhs.starts_with("LAB_") {
        return Some(Entry::Meta {
            key: lhs.to_string(),
            value: unquote(rhs),
        });
    }
    if lhs.contains(char::is_whitespace) || lhs.is_empty() {
        return Some(Entry::Junk(t.to_string()));
    }
    Some(Entry::Global {
        key: lhs.to_string(),
    })
}

/// Parse a memory size: a number with an optional k/m/g suffix (optional
/// trailing `b`), in MiB; a bare number is MiB (Netkit's unit).
pub fn parse_mem_mb(v: &str) -> std::result::Result<u32, String> {
    let s = v.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mul_kb): (&str, u64) = if let Some(n) = s.strip_suffix('k') {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 1024)
    } else if let Some(n) = s.strip_suffix('g') {
        (n, 1024 * 1024)
    } else {
        (s, 1024)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("memory {v:?} is not a size (e.g. 128, 128m, 1g)"))?;
    let mb = n.saturating_mul(mul_kb) / 1024;
    if mb == 0 || mb > u64::from(crate::model::MAX_MEM_MB) {
        return Err(format!("memory {v:?} out of range (1 MiB .. 1 TiB)"));
    }
    Ok(mb as u32)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// Split `DOMAIN/MAC` (the MAC part only when it parses as a MAC).
fn split_domain_mac(v: &str) -> (String, Option<String>) {
    if let Some((d, m)) = v.rsplit_once('/') {
        if crate::mac::parse_mac(m).is_ok() {
            return (d.to_string(), Some(m.to_ascii_lowercase()));
        }
    }
    (v.to_string(), None)
}

/// vstart's short options (`M[M]=32` is `vstart -M 32`) by their long name.
const NETKIT_SHORT: &[(&str, &str)] = &[
    ("M", "mem"),
    ("e", "exec"),
    ("k", "kernel"),
    ("m", "model-fs"),
    ("f", "filesystem"),
    ("l", "hostlab"),
    ("w", "hostwd"),
    ("H", "no-hosthome"),
    ("W", "no-cow"),
    ("D", "hide-disk-file"),
    ("F", "foreground"),
    ("p", "print"),
    ("q", "quiet"),
    ("v", "verbose"),
    ("h", "help"),
    ("L", "L"),
];

/// Netkit vstart options that only steer the host side of vstart (disk
/// files, terminals, output): nothing to do in umlkit.
const NETKIT_NOOP: &[&str] = &[
    "hostwd",
    "no-cow",
    "hide-disk-file",
    "foreground",
    "print",
    "quiet",
    "verbose",
    "help",
    "version",
    "test",
    "L",
];

/// A Netkit `tap,HOST_IP,GUEST_IP` collision domain.
fn parse_tap(v: &str) -> std::result::Result<Uplink, String> {
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let ip = |s: &str, what: &str| {
        s.parse::<std::net::Ipv4Addr>().map_err(|_| {
            format!("tap: {what} {s:?} is not an IPv4 address (expected tap,HOST_IP,GUEST_IP)")
        })
    };
    match parts.as_slice() {
        ["tap", host, guest] => Ok(Uplink {
            index: 0,
            host: ip(host, "host address")?.to_string(),
            guest: ip(guest, "guest address")?.to_string(),
        }),
        _ => Err(format!("tap: expected tap,HOST_IP,GUEST_IP, found {v:?}")),
    }
}

/// Read lab.conf text. `file` is used in messages only; `force` overrides
/// dialect detection (from lab.conf alone: see [`parse_lab_conf_in`]).
pub fn parse_lab_conf(text: &str, file: &Path, force: Option<Dialect>) -> Result<ConfRead> {
    parse_lab_conf_in(text, file, force, &FolderFacts::default())
}

/// Read lab.conf text of a folder showing `folder` (used by dialect
/// detection when lab.conf itself is not decisive).
pub fn parse_lab_conf_in(
    text: &str,
    file: &Path,
    force: Option<Dialect>,
    folder: &FolderFacts,
) -> Result<ConfRead> {
    let entries: Vec<(usize, Entry)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| tokenize(l).map(|e| (i + 1, e)))
        .collect();

    let (dialect, dialect_reason) = match force {
        Some(d) => (d, format!("{d} (forced)")),
        None => decide(&conf_evidence(&entries), folder),
    };
    let syn = |line: usize, rule: String| LabError::Syntax {
        file: file.to_path_buf(),
        line,
        rule,
    };

    let mut lab = LabFile::default();
    lab.lab.dialect = dialect;
    let mut notes = Vec::new();
    let mut machines_line = None;
    let mut ifaces: BTreeMap<String, BTreeMap<u32, (usize, Interface)>> = BTreeMap::new();
    let mut taps: BTreeMap<String, BTreeMap<u32, usize>> = BTreeMap::new();
    let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
    // Netkit: the first setting of a parameter wins (lstart warns).
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let netkit = dialect == Dialect::Netkit;

    for (line, e) in entries {
        match e {
            Entry::Junk(t) => match dialect {
                Dialect::Netkit => notes.push(Note {
                    line,
                    machine: None,
                    key: "(line)".into(),
                    message: format!("not an assignment, treated as a comment: {t}"),
                    ignored: false,
                    also: Vec::new(),
                }),
                Dialect::Kathara => {
                    return Err(syn(
                        line,
                        format!("Kathará: expected MACHINE[KEY]=VALUE or LAB_*=VALUE, found {t:?}"),
                    ))
                }
            },
            Entry::Global { key } => match dialect {
                Dialect::Netkit => notes.push(Note {
                    line,
                    machine: None,
                    key: key.clone(),
                    message: "unknown global setting, ignored".into(),
                    ignored: false,
                    also: Vec::new(),
                }),
                Dialect::Kathara => {
                    return Err(syn(line, format!("Kathará: unknown global setting {key}")))
                }
            },
            Entry::MachinesList(list) => {
                if dialect == Dialect::Kathara {
                    return Err(syn(
                        line,
                        "Kathará: `machines=` is a Netkit setting (devices are the names used in M[...] lines)".into(),
                    ));
                }
                for m in &list {
                    check_machine_name(m, dialect).map_err(|r| syn(line, r))?;
                }
                machines_line = Some(list);
            }
            Entry::Meta { key, value } => {
                let meta = &mut lab.lab;
                match key.as_str() {
                    "LAB_DESCRIPTION" => meta.description = Some(value),
                    "LAB_VERSION" => meta.version = Some(value),
                    "LAB_AUTHOR" => meta.author = Some(value),
                    "LAB_EMAIL" => meta.email = Some(value),
                    "LAB_WEB" => meta.web = Some(value),
                    "LAB_NAME" => meta.name = Some(value),
                    _ => notes.push(Note {
                        line,
                        machine: None,
                        key,
                        message: format!(
                            "unknown metadata (known: {}), ignored",
                            META_KEYS.join(", ")
                        ),
                        ignored: false,
                        also: Vec::new(),
                    }),
                }
            }
            Entry::Option {
                machine,
                key: orig_key,
                value,
            } => {
                check_machine_name(&machine, dialect).map_err(|r| syn(line, r))?;
                first_line.entry(machine.clone()).or_insert(line);
                let m = lab.machines.entry(machine.clone()).or_default();
                let note = |key: &str, message: String, ignored: bool| Note {
                    line,
                    machine: Some(machine.clone()),
                    key: key.to_string(),
                    message,
                    ignored,
                    also: Vec::new(),
                };
                // Netkit passes M[X] to vstart as -X (one letter) or --X;
                // M[ethN] is --ethN, M[appendN] is --append.
                let mut key = orig_key.clone();
                let mut value = value;
                if netkit {
                    if let Some((_, long)) = NETKIT_SHORT.iter().find(|(s, _)| *s == key) {
                        key = long.to_string();
                    }
                    if let Some(n) = key.strip_prefix("eth").filter(|n| n.parse::<u32>().is_ok()) {
                        key = n.to_string();
                    }
                    if key.starts_with("append") {
                        key = "append".into();
                    }
                }
                if let Ok(n) = key.parse::<u32>() {
                    if n > crate::model::MAX_IFACE_INDEX {
                        return Err(syn(
                            line,
                            format!(
                                "interface number {n} too large (0..{})",
                                crate::model::MAX_IFACE_INDEX
                            ),
                        ));
                    }
                    let map = ifaces.entry(machine.clone()).or_default();
                    let tmap = taps.entry(machine.clone()).or_default();
                    let prev = map.get(&n).map(|(p, _)| *p).or(tmap.get(&n).copied());
                    if let Some(prev) = prev {
                        if netkit {
                            push_note(&mut notes, note(&orig_key, format!(
                                "interface eth{n} already given on line {prev}; Netkit keeps the first"
                            ), true));
                            continue;
                        }
                        return Err(syn(
                            line,
                            format!(
                                "{machine}[{n}]: interface eth{n} already given on line {prev}"
                            ),
                        ));
                    }
                    if netkit && (value.trim() == "tap" || value.trim_start().starts_with("tap,")) {
                        let mut up = parse_tap(&value.replace(char::is_whitespace, ""))
                            .map_err(|r| syn(line, format!("{machine}[{orig_key}]: {r}")))?;
                        up.index = n;
                        // Reported once, by the planner (lab.toml has it too).
                        tmap.insert(n, line);
                        m.uplinks.push(up);
                        continue;
                    }
                    let (mut domain, mac) = split_domain_mac(&value);
                    if netkit {
                        // lstart removes spaces, underscores, commas and dots
                        // from collision domain names, with a warning.
                        let clean: String = domain
                            .chars()
                            .filter(|c| !c.is_whitespace() && !matches!(c, '_' | ',' | '.'))
                            .collect();
                        if clean != domain && !clean.is_empty() {
                            push_note(&mut notes, note(&orig_key, format!(
                                "collision domain {domain:?} has characters Netkit removes (spaces _ , .): renamed to {clean:?} as Netkit does"
                            ), false));
                            domain = clean;
                        }
                    }
                    if domain.is_empty() {
                        return Err(syn(line, format!("{machine}[{n}]: empty collision domain")));
                    }
                    if domain.contains(char::is_whitespace) {
                        return Err(syn(
                            line,
                            format!("{machine}[{n}]: collision domain {domain:?} contains spaces"),
                        ));
                    }
                    map.insert(
                        n,
                        (
                            line,
                            Interface {
                                domain,
                                mac,
                                ..Default::default()
                            },
                        ),
                    );
                    continue;
                }
                if netkit {
                    let dedup = (machine.clone(), orig_key.clone());
                    if let Some(prev) = seen.get(&dedup) {
                        push_note(
                            &mut notes,
                            note(
                                &orig_key,
                                format!(
                                    "already set on line {prev}; Netkit keeps the first setting"
                                ),
                                true,
                            ),
                        );
                        continue;
                    }
                    seen.insert(dedup, line);
                    if value.contains(char::is_whitespace)
                        && !matches!(key.as_str(), "append" | "exec" | "env" | "sysctl")
                    {
                        let clean: String = value.chars().filter(|c| !c.is_whitespace()).collect();
                        push_note(&mut notes, note(&orig_key, format!(
                            "value {value:?} contains spaces; Netkit removes them: {clean:?} is used"
                        ), false));
                        value = clean;
                    }
                }
                match key.as_str() {
                    "mem" => m.mem = Some(parse_mem_mb(&value).map_err(|r| syn(line, format!("{machine}[{orig_key}]: {r}")))?),
                    "image" => m.image = Some(value),
                    "ipv6" => {
                        m.ipv6 = Some(parse_bool(&value).ok_or_else(|| {
                            syn(line, format!("{machine}[ipv6]: expected true or false, found {value:?}"))
                        })?)
                    }
                    "exec" => m.exec.push(value),
                    "sysctl" => {
                        if !value.contains('=') {
                            return Err(syn(line, format!("{machine}[sysctl]: expected key=value, found {value:?}")));
                        }
                        m.sysctl.push(value)
                    }
                    "env" => {
                        let ok = value.split_once('=').is_some_and(|(k, _)| {
                            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        });
                        if !ok {
                            return Err(syn(line, format!("{machine}[env]: expected NAME=value, found {value:?}")));
                        }
                        m.env.push(value)
                    }
                    "append" => m.kernel_args.extend(value.split_whitespace().map(str::to_string)),
                    "bridged" => match parse_bool(&value) {
                        Some(b) => m.bridged = b,
                        None => return Err(syn(line, format!("{machine}[bridged]: expected true or false, found {value:?}"))),
                    },
                    "num_terms" | "con0" | "con1" | "xterm" | "shell" => push_note(&mut notes, note(&orig_key,
                        "terminals are not opened; use `umlkit lab console` / `lab exec`".into(), true,
                    )),
                    "kernel" | "filesystem" | "model-fs" => push_note(&mut notes, note(&orig_key,
                        "ignored: umlkit boots linux.uml on its own default image".into(), true,
                    )),
                    "hostlab" | "hosthome" | "no-hosthome" => push_note(&mut notes, note(&orig_key,
                        "ignored: the lab folder is always at /hostlab, the host home is never mounted".into(), true,
                    )),
                    "cpus" | "port" | "volume" | "privileged" | "ulimit" | "entrypoint" | "args" => {
                        push_note(&mut notes, note(&orig_key, "container-only option, ignored".into(), true))
                    }
                    k if netkit && NETKIT_NOOP.contains(&k) => push_note(&mut notes, note(&orig_key,
                        format!("vstart option --{k} only steers the host side of Netkit, ignored"), true,
                    )),
                    // Both dialects keep going on an unknown key (Kathará
                    // keeps unknown keys too): warned once per key.
                    _ => push_note(&mut notes, note(&orig_key, "unknown option, ignored".into(), true)),
                }
            }
        }
    }

    for (machine, map) in ifaces {
        let m = lab
            .machines
            .get_mut(&machine)
            .expect("machine entry exists");
        let contiguous = map.keys().copied().eq(0..map.len() as u32);
        if !contiguous {
            let missing = (0..).find(|i| !map.contains_key(i)).unwrap_or(0);
            if dialect == Dialect::Kathara {
                let line = first_line.get(&machine).copied().unwrap_or(0);
                return Err(syn(
                    line,
                    format!("Kathará: interfaces of {machine} must be numbered from eth0 without gaps (eth{missing} missing)"),
                ));
            }
        }
        for (n, (_, mut itf)) in map {
            if !contiguous {
                itf.index = Some(n);
            }
            m.interfaces.push(itf);
        }
    }
    if let Some(list) = &machines_line {
        for name in list {
            lab.machines.entry(name.clone()).or_default();
        }
    }
    Ok(ConfRead {
        lab,
        machines_line,
        dialect_reason,
        notes,
    })
}

/// Everything in lab.conf that only one dialect accepts, in file order.
fn conf_evidence(entries: &[(usize, Entry)]) -> Vec<Evidence> {
    let mut v = Vec::new();
    let mut push = |dialect: Dialect, what: String| v.push(Evidence { dialect, what });
    for (line, e) in entries {
        match e {
            Entry::Option {
                machine,
                key,
                value,
            } => {
                if KATHARA_ONLY_KEYS.contains(&key.as_str()) {
                    push(
                        Dialect::Kathara,
                        format!("line {line}: {machine}[{key}] is a Kathará option"),
                    );
                } else if key.parse::<u32>().is_ok() && split_domain_mac(value).1.is_some() {
                    push(
                        Dialect::Kathara,
                        format!("line {line}: DOMAIN/MAC is Kathará syntax"),
                    );
                }
                if NETKIT_ONLY_KEYS.contains(&key.as_str())
                    || NETKIT_SHORT.iter().any(|(s, _)| s == key)
                    || NETKIT_NOOP.contains(&key.as_str())
                {
                    push(
                        Dialect::Netkit,
                        format!("line {line}: {machine}[{key}] is a Netkit vstart option"),
                    );
                } else if key
                    .strip_prefix("eth")
                    .is_some_and(|n| n.parse::<u32>().is_ok())
                {
                    push(
                        Dialect::Netkit,
                        format!("line {line}: {machine}[{key}] is Netkit's vstart --{key}"),
                    );
                } else if key.parse::<u32>().is_ok()
                    && (value.trim() == "tap" || value.trim_start().starts_with("tap,"))
                {
                    push(
                        Dialect::Netkit,
                        format!("line {line}: {machine}[{key}]=tap,... is a Netkit tap domain"),
                    );
                } else if check_machine_name(machine, Dialect::Kathara).is_err() {
                    push(
                        Dialect::Netkit,
                        format!("line {line}: machine name {machine:?} is only valid in Netkit"),
                    );
                }
            }
            Entry::MachinesList(_) => push(
                Dialect::Netkit,
                format!("line {line}: machines= is Netkit syntax"),
            ),
            Entry::Junk(_) => push(
                Dialect::Netkit,
                format!("line {line}: free text is only a comment in Netkit"),
            ),
            Entry::Meta { key, .. } if key == "LAB_NAME" => push(
                Dialect::Kathara,
                format!("line {line}: LAB_NAME is Kathará metadata"),
            ),
            Entry::Meta { key, value }
                if matches!(key.as_str(), "LAB_WEB" | "LAB_EMAIL")
                    && value.to_ascii_lowercase().contains("netkit") =>
            {
                push(
                    Dialect::Netkit,
                    format!("line {line}: {key} points to Netkit ({value})"),
                )
            }
            _ => {}
        }
    }
    v
}

/// lab.dep: `MACHINE: DEP DEP ...` per line, `#` comments. Returns
/// machine -> dependencies, in file order.
pub fn parse_lab_dep(text: &str, file: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.split('#').next().unwrap_or("").trim();
        if t.is_empty() {
            continue;
        }
        let (m, rest) = t.split_once(':').ok_or_else(|| LabError::Syntax {
            file: file.to_path_buf(),
            line: i + 1,
            rule: format!("expected `MACHINE: DEPENDENCY ...`, found {t:?}"),
        })?;
        let m = m.trim();
        if m.is_empty() || m.contains(char::is_whitespace) {
            return Err(LabError::Syntax {
                file: file.to_path_buf(),
                line: i + 1,
                rule: format!("bad machine name {m:?} before ':'"),
            });
        }
        let e = deps.entry(m.to_string()).or_default();
        for d in rest.split_whitespace() {
            if !e.iter().any(|x| x == d) {
                e.push(d.to_string());
            }
        }
    }
    Ok(deps)
}

/// Start waves: machines of wave k depend only on machines of waves < k.
/// Names inside a wave are sorted. A cycle is an error naming it.
pub fn start_waves(
    machines: &[String],
    deps: &BTreeMap<String, Vec<String>>,
    file: &Path,
) -> Result<Vec<Vec<String>>> {
    let mut placed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut waves: Vec<Vec<String>> = Vec::new();
    let known: std::collections::BTreeSet<&str> = machines.iter().map(String::as_str).collect();
    let deps_of = |m: &str| -> Vec<&str> {
        deps.get(m)
            .map(|v| {
                v.iter()
                    .map(String::as_str)
                    .filter(|d| known.contains(d))
                    .collect()
            })
            .unwrap_or_default()
    };
    while placed.len() < known.len() {
        let mut wave: Vec<String> = known
            .iter()
            .filter(|m| !placed.contains_key(*m))
            .filter(|m| deps_of(m).iter().all(|d| placed.contains_key(d)))
            .map(|m| m.to_string())
            .collect();
        if wave.is_empty() {
            // Find a cycle among the unplaced machines.
            let start = *known
                .iter()
                .find(|m| !placed.contains_key(*m))
                .expect("unplaced");
            let mut path = vec![start];
            let mut cur = start;
            loop {
                let next = deps_of(cur)
                    .into_iter()
                    .find(|d| !placed.contains_key(d))
                    .expect("an unplaced machine has an unplaced dependency");
                if let Some(pos) = path.iter().position(|p| *p == next) {
                    let mut cyc: Vec<&str> = path[pos..].to_vec();
                    cyc.push(next);
                    return Err(LabError::Cycle {
                        file: file.to_path_buf(),
                        cycle: cyc.join(" -> "),
                    });
                }
                path.push(next);
                cur = next;
            }
        }
        wave.sort();
        let k = waves.len();
        for m in &wave {
            let key = *known.get(m.as_str()).expect("known");
            placed.insert(key, k);
        }
        waves.push(wave);
    }
    Ok(waves)
}

/// Convenience for messages: the path of lab.conf inside `dir`.
pub fn conf_path(dir: &Path) -> PathBuf {
    dir.join("lab.conf")
}

//! Which lab flavour a lab.conf folder follows (pure: facts in, decision and
//! its reason out).
//!
//! lab.conf alone often says nothing dialect-specific (`pc1[0]=A`,
//! `pc1[mem]=32`): most Netkit-era labs look like that. The folder around it
//! does: Netkit labs configure their machines with `ifconfig`/`route add`,
//! start Quagga/Zebra through `/etc/init.d`, ship `_test/` signatures and lay
//! `shared/` out as a root tree, and Netkit-JH labs use `ifup` and
//! `systemctl`; Kathará labs use `ip address add`, FRR and `/shared`. Evidence is weighed in three steps:
//!
//! 1. lab.conf syntax only one dialect accepts (strong): a Kathará-only key,
//!    `DOMAIN/MAC` or `LAB_NAME` -> Kathará; `machines=`, free text, a vstart
//!    option, a `tap,` domain, a name only Netkit allows, `LAB_WEB` naming
//!    netkit -> Netkit. Both -> Kathará (Netkit cannot start a lab with
//!    Kathará keys; the reason names both).
//! 2. otherwise the folder (weak): each `.startup` file votes for the style
//!    of its commands; `_test/` and a `shared/` root tree count for Netkit.
//! 3. otherwise Kathará, the maintained one, is the default.

use crate::model::Dialect;

/// One piece of evidence, with where it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub dialect: Dialect,
    pub what: String,
}

/// What the lab folder (not lab.conf) shows; gathered by `load`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderFacts {
    /// A `_test/` folder (Netkit's ltest signatures).
    pub test_dir: bool,
    /// `shared/X/` where X is a root-tree folder (`etc`, `root`, ...).
    pub shared_root_tree: Option<String>,
    /// A `lab.ext` file (Kathará's external networks).
    pub lab_ext: bool,
    /// `(file name, text)` of every `*.startup` file (read up to a bound).
    pub startups: Vec<(String, String)>,
}

/// Command patterns of Netkit-era startup scripts.
const NETKIT_STYLE: &[(&str, &str)] = &[
    ("ifconfig ", "ifconfig"),
    ("route add", "route add"),
    ("/etc/init.d/zebra", "/etc/init.d/zebra"),
    ("/etc/init.d/quagga", "/etc/init.d/quagga"),
    ("/etc/zebra/", "/etc/zebra/"),
    ("/etc/quagga/", "/etc/quagga/"),
    ("/hostlab/", "/hostlab"),
    // Netkit-JH's Debian filesystem runs systemd and ifupdown; Kathará's
    // containers run neither.
    ("systemctl ", "systemctl"),
    ("ifup ", "ifup"),
];
/// Command patterns of Kathará-era startup scripts.
const KATHARA_STYLE: &[(&str, &str)] = &[
    ("ip address ", "ip address"),
    ("ip addr ", "ip addr"),
    ("ip a add", "ip a add"),
    ("ip route ", "ip route"),
    ("ip link ", "ip link"),
    ("/etc/init.d/frr", "/etc/init.d/frr"),
    ("/etc/frr/", "/etc/frr/"),
    ("/shared/", "/shared"),
];

fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
}

/// The style a startup script is written in, with the commands that showed
/// it (None when it shows neither or both equally).
pub fn startup_style(text: &str) -> Option<(Dialect, Vec<&'static str>)> {
    let mut nk: Vec<&'static str> = Vec::new();
    let mut ka: Vec<&'static str> = Vec::new();
    for line in code_lines(text) {
        let line = format!("{line} ");
        for (pat, name) in NETKIT_STYLE {
            if line.contains(pat) && !nk.contains(name) {
                nk.push(name);
            }
        }
        for (pat, name) in KATHARA_STYLE {
            if line.contains(pat) && !ka.contains(name) {
                ka.push(name);
            }
        }
    }
    match nk.len().cmp(&ka.len()) {
        std::cmp::Ordering::Greater => Some((Dialect::Netkit, nk)),
        std::cmp::Ordering::Less => Some((Dialect::Kathara, ka)),
        std::cmp::Ordering::Equal => None,
    }
}

/// Decide from lab.conf evidence (`conf`, in file order) and the folder.
/// Returns the dialect and a one-line reason for `lab info`/`lab start`.
pub fn decide(conf: &[Evidence], folder: &FolderFacts) -> (Dialect, String) {
    let first = |d: Dialect| conf.iter().find(|e| e.dialect == d);
    match (first(Dialect::Kathara), first(Dialect::Netkit)) {
        (Some(k), None) => return (Dialect::Kathara, format!("kathara ({})", k.what)),
        (Some(k), Some(n)) => {
            return (
                Dialect::Kathara,
                format!(
                    "kathara ({}; wins over the Netkit sign: {})",
                    k.what, n.what
                ),
            )
        }
        (None, Some(n)) => return (Dialect::Netkit, format!("netkit ({})", n.what)),
        (None, None) => {}
    }
    if folder.lab_ext {
        return (
            Dialect::Kathara,
            "kathara (lab.ext is a Kathará file)".into(),
        );
    }
    // Weak evidence: votes.
    let mut netkit: Vec<String> = Vec::new();
    let mut kathara: Vec<String> = Vec::new();
    let (mut nv, mut kv) = (0usize, 0usize);
    let mut nk_files: Vec<&str> = Vec::new();
    let mut ka_files: Vec<&str> = Vec::new();
    let mut nk_cmds: Vec<&str> = Vec::new();
    let mut ka_cmds: Vec<&str> = Vec::new();
    for (name, text) in &folder.startups {
        match startup_style(text) {
            Some((Dialect::Netkit, cmds)) => {
                nv += 1;
                nk_files.push(name);
                for c in cmds {
                    if !nk_cmds.contains(&c) {
                        nk_cmds.push(c);
                    }
                }
            }
            Some((Dialect::Kathara, cmds)) => {
                kv += 1;
                ka_files.push(name);
                for c in cmds {
                    if !ka_cmds.contains(&c) {
                        ka_cmds.push(c);
                    }
                }
            }
            None => {}
        }
    }
    let n_startups = folder.startups.len();
    if nv > 0 {
        netkit.push(format!(
            "{nv} of {n_startups} .startup files use {} ({})",
            nk_cmds.join(", "),
            list(&nk_files)
        ));
    }
    if kv > 0 {
        kathara.push(format!(
            "{kv} of {n_startups} .startup files use {} ({})",
            ka_cmds.join(", "),
            list(&ka_files)
        ));
    }
    if folder.test_dir {
        nv += 2;
        netkit.push("a _test/ folder (Netkit ltest signatures)".into());
    }
    if let Some(d) = &folder.shared_root_tree {
        nv += 3;
        netkit.push(format!(
            "shared/{d}/ is a root tree, which Netkit copies into every machine"
        ));
    }
    let no_conf = "nothing dialect-specific in lab.conf";
    if nv > kv {
        let mut why = format!("netkit ({no_conf}; {}", netkit.join("; "));
        if !kathara.is_empty() {
            why.push_str(&format!("; outweighs {}", kathara.join("; ")));
        }
        why.push(')');
        return (Dialect::Netkit, why);
    }
    if kv > 0 {
        let mut why = format!("kathara ({no_conf}; {}", kathara.join("; "));
        if !netkit.is_empty() {
            why.push_str(&format!("; outweighs {}", netkit.join("; ")));
        }
        why.push(')');
        return (Dialect::Kathara, why);
    }
    (
        Dialect::Kathara,
        format!("kathara ({no_conf} or its folder; Kathará is the default)"),
    )
}

fn list(files: &[&str]) -> String {
    const MAX: usize = 4;
    let mut s = files
        .iter()
        .take(MAX)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if files.len() > MAX {
        s.push_str(&format!(", ... {} more", files.len() - MAX));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_styles() {
        assert_eq!(
            startup_style("ifconfig eth0 10.0.0.1 up\n/etc/init.d/zebra start\n").map(|s| s.0),
            Some(Dialect::Netkit)
        );
        assert_eq!(
            startup_style("ip address add 10.0.0.1/24 dev eth0\n/etc/init.d/frr start\n")
                .map(|s| s.0),
            Some(Dialect::Kathara)
        );
        assert_eq!(startup_style("# ifconfig eth0 up\necho hi\n"), None);
    }

    #[test]
    fn ties_and_nothing_default_to_kathara() {
        let f = FolderFacts {
            startups: vec![
                ("a.startup".into(), "ifconfig eth0 up\n".into()),
                ("b.startup".into(), "ip link set eth0 up\n".into()),
            ],
            ..Default::default()
        };
        assert_eq!(decide(&[], &f).0, Dialect::Kathara);
        assert!(decide(&[], &FolderFacts::default()).1.contains("default"));
    }

    #[test]
    fn conf_evidence_beats_folder() {
        let f = FolderFacts {
            test_dir: true,
            ..Default::default()
        };
        let e = [Evidence {
            dialect: Dialect::Kathara,
            what: "line 1: a[image] is a Kathará option".into(),
        }];
        let (d, why) = decide(&e, &f);
        assert_eq!(d, Dialect::Kathara);
        assert!(why.contains("line 1"), "{why}");
        let (d, why) = decide(&[], &f);
        assert_eq!(d, Dialect::Netkit);
        assert!(why.contains("_test/"), "{why}");
    }
}

//! Unit tests of the lab crate's pure parts: lab.conf dialects, lab.dep,
//! MACs, lab.toml, planner, checks, graph, path safety. No processes.

use std::collections::BTreeMap;
use std::path::Path;

use lab::check::{compare_signature, CheckFile};
use lab::conf::{parse_lab_conf, parse_lab_dep, parse_mem_mb, start_waves};
use lab::mac::{derive_mac, format_mac, parse_mac};
use lab::model::{Dialect, LabFile};
use lab::LabError;

fn conf(text: &str) -> lab::conf::ConfRead {
    parse_lab_conf(text, Path::new("lab.conf"), None).expect("parses")
}

fn conf_err(text: &str, d: Option<Dialect>) -> String {
    parse_lab_conf(text, Path::new("/x/lab.conf"), d)
        .expect_err("must fail")
        .to_string()
}

#[test]
fn kathara_basic_interfaces_and_options() {
    let r = conf(
        "LAB_DESCRIPTION=\"a lab\"\nLAB_VERSION=1.2\nLAB_AUTHOR=me\nLAB_EMAIL=me@x\nLAB_WEB=http://x\n\
         pc1[0]=\"A\"\npc1[1]=B/02:00:00:00:00:01\npc1[image]=\"kathara/frr\"\npc1[mem]=256m\n\
         pc1[ipv6]=true\npc1[sysctl]=net.ipv4.ip_forward=0\npc1[sysctl]=a.b=1\npc1[env]=FOO=bar\npc1[exec]=echo hi\n",
    );
    assert_eq!(r.lab.lab.dialect, Dialect::Kathara);
    assert_eq!(r.lab.lab.description.as_deref(), Some("a lab"));
    assert_eq!(r.lab.lab.version.as_deref(), Some("1.2"));
    assert_eq!(r.lab.lab.author.as_deref(), Some("me"));
    assert_eq!(r.lab.lab.email.as_deref(), Some("me@x"));
    assert_eq!(r.lab.lab.web.as_deref(), Some("http://x"));
    let m = &r.lab.machines["pc1"];
    assert_eq!(m.interfaces.len(), 2);
    assert_eq!(m.interfaces[0].domain, "A");
    assert_eq!(m.interfaces[1].domain, "B");
    assert_eq!(m.interfaces[1].mac.as_deref(), Some("02:00:00:00:00:01"));
    assert_eq!(m.image.as_deref(), Some("kathara/frr"));
    assert_eq!(m.mem, Some(256));
    assert_eq!(m.ipv6, Some(true));
    assert_eq!(m.sysctl, vec!["net.ipv4.ip_forward=0", "a.b=1"]);
    assert_eq!(m.env, vec!["FOO=bar"]);
    assert_eq!(m.exec, vec!["echo hi"]);
    assert!(
        r.dialect_reason.contains("line 7: DOMAIN/MAC"),
        "{}",
        r.dialect_reason
    );
}

#[test]
fn netkit_detected_by_machines_line_and_free_text() {
    let r = conf("machines=\"pc1 r-1\"\nthis is a comment in netkit\npc1[0]=A\nr-1[0]=A\nr-1[con0]=port:2000\npc1[append]=foo=1 bar\n");
    assert_eq!(r.lab.lab.dialect, Dialect::Netkit);
    assert_eq!(
        r.machines_line.as_deref(),
        Some(&["pc1".to_string(), "r-1".to_string()][..])
    );
    assert_eq!(r.lab.machines["pc1"].kernel_args, vec!["foo=1", "bar"]);
    assert!(
        r.notes.iter().any(|n| n.key == "(line)" && n.line == 2),
        "{:?}",
        r.notes
    );
    assert!(r.notes.iter().any(|n| n.key == "con0"), "{:?}", r.notes);
}

#[test]
fn netkit_detected_by_name_rule() {
    let r = conf("PC-1[0]=A\n");
    assert_eq!(r.lab.lab.dialect, Dialect::Netkit);
    assert!(r.dialect_reason.contains("PC-1"));
}

#[test]
fn default_dialect_is_kathara() {
    let r = conf("a[0]=x\n# c\n\n");
    assert_eq!(r.lab.lab.dialect, Dialect::Kathara);
    assert!(r.dialect_reason.contains("default"));
}

#[test]
fn kathara_rejects_machines_line() {
    let e = conf_err("machines=\"a b\"\na[0]=x\n", Some(Dialect::Kathara));
    assert!(
        e.contains("/x/lab.conf:1") && e.contains("machines="),
        "{e}"
    );
}

#[test]
fn kathara_rejects_free_text_with_line_number() {
    let e = conf_err("a[0]=x\nhello world\n", Some(Dialect::Kathara));
    assert!(e.starts_with("/x/lab.conf:2:"), "{e}");
}

#[test]
fn kathara_rejects_bad_names() {
    for bad in ["PC1", "a-b", "x.y", "abcdefghijabcdefghijabcdefghij1"] {
        let e = conf_err(&format!("{bad}[0]=x\n"), Some(Dialect::Kathara));
        assert!(e.contains("[a-z0-9_]{1,30}") && e.contains(bad), "{e}");
    }
    // 30 chars is fine
    parse_lab_conf(
        "abcdefghijabcdefghijabcdefghij[0]=x\n",
        Path::new("l"),
        Some(Dialect::Kathara),
    )
    .unwrap();
}

#[test]
fn kathara_rejects_interface_gaps() {
    let e = conf_err("a[0]=x\na[2]=y\n", Some(Dialect::Kathara));
    assert!(
        e.contains("eth1 missing") && e.contains("without gaps"),
        "{e}"
    );
    let e = conf_err("a[1]=x\n", Some(Dialect::Kathara));
    assert!(e.contains("eth0 missing"), "{e}");
}

#[test]
fn netkit_allows_gaps_and_keeps_numbers() {
    let r = parse_lab_conf("a[0]=x\na[2]=y\n", Path::new("l"), Some(Dialect::Netkit)).unwrap();
    let i = &r.lab.machines["a"].interfaces;
    assert_eq!(i[0].index, Some(0));
    assert_eq!(i[1].index, Some(2));
}

#[test]
fn duplicate_interface_is_an_error() {
    let e = conf_err("a[0]=x\na[0]=y\n", None);
    assert!(e.contains("line 1") && e.contains(":2:"), "{e}");
}

/// Issue 10.6: Kathará keeps unknown keys (`h1[folder]=...`); they were
/// fatal. Now a warning once per key, naming its first line, and the lab reads.
#[test]
fn kathara_unknown_option_warns_once_per_key_not_fatal() {
    for d in [Dialect::Kathara, Dialect::Netkit] {
        let r = parse_lab_conf(
            "h1[0]=x\nh1[folder]=/a\nh2[0]=x\nh2[folder]=/b\nh1[frobnicate]=1\n",
            Path::new("l"),
            Some(d),
        )
        .unwrap();
        let folder: Vec<_> = r.notes.iter().filter(|n| n.key == "folder").collect();
        assert_eq!(folder.len(), 1, "{d}: one warning per key: {:?}", r.notes);
        let text = folder[0].to_string();
        assert!(
            text.starts_with("line 2: h1[folder]: unknown option, ignored"),
            "{text}"
        );
        assert!(text.contains("also h2 (line 4)"), "{text}");
        let ignored: Vec<String> = r.ignored_keys().iter().map(|k| k.to_string()).collect();
        assert_eq!(
            ignored,
            vec![
                "folder (h1 (line 2), h2 (line 4))".to_string(),
                "frobnicate (h1 (line 5))".to_string()
            ]
        );
        assert_eq!(r.lab.machines.len(), 2);
    }
}

#[test]
fn unsupported_options_reported_by_name() {
    let r = conf("a[0]=x\na[bridged]=true\na[num_terms]=2\na[port]=8080:80\n");
    let keys: Vec<&str> = r.notes.iter().map(|n| n.key.as_str()).collect();
    assert!(
        keys.contains(&"bridged") && keys.contains(&"num_terms") && keys.contains(&"port"),
        "{keys:?}"
    );
    let text = r
        .notes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("a[bridged]"), "{text}");
}

#[test]
fn bad_values_are_errors() {
    assert!(conf_err("a[mem]=lots\n", None).contains("not a size"));
    assert!(conf_err("a[ipv6]=maybe\n", None).contains("true or false"));
    assert!(conf_err("a[sysctl]=novalue\n", None).contains("key=value"));
    assert!(conf_err("a[env]==x\n", None).contains("NAME=value"));
    assert!(conf_err("a[0]=\n", None).contains("empty collision domain"));
    assert!(conf_err("a[99]=x\n", None).contains("too large"));
}

#[test]
fn mem_sizes() {
    assert_eq!(parse_mem_mb("128"), Ok(128));
    assert_eq!(parse_mem_mb("128m"), Ok(128));
    assert_eq!(parse_mem_mb("128MB"), Ok(128));
    assert_eq!(parse_mem_mb("1g"), Ok(1024));
    assert_eq!(parse_mem_mb("65536k"), Ok(64));
    assert!(parse_mem_mb("0").is_err());
    assert!(parse_mem_mb("12x").is_err());
}

#[test]
fn lab_dep_and_waves() {
    let deps = parse_lab_dep(
        "# deps\nr1: r2\npc1: r1 r2\n\npc2 : r1 # comment\n",
        Path::new("lab.dep"),
    )
    .unwrap();
    assert_eq!(deps["pc1"], vec!["r1", "r2"]);
    let names: Vec<String> = ["pc1", "pc2", "r1", "r2", "solo"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let w = start_waves(&names, &deps, Path::new("lab.dep")).unwrap();
    assert_eq!(w, vec![vec!["r2", "solo"], vec!["r1"], vec!["pc1", "pc2"]]);
}

#[test]
fn lab_dep_cycle_is_named() {
    let deps = parse_lab_dep("a: b\nb: c\nc: a\n", Path::new("lab.dep")).unwrap();
    let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let e = start_waves(&names, &deps, Path::new("/l/lab.dep")).unwrap_err();
    assert!(matches!(e, LabError::Cycle { .. }));
    let s = e.to_string();
    assert!(s.starts_with("/l/lab.dep: dependency cycle: "), "{s}");
    assert!(
        s.contains("a -> b -> c -> a")
            || s.contains("b -> c -> a -> b")
            || s.contains("c -> a -> b -> c"),
        "{s}"
    );
}

#[test]
fn lab_dep_syntax_error() {
    let e = parse_lab_dep("a b c\n", Path::new("/l/lab.dep"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/l/lab.dep:1:"), "{e}");
}

#[test]
fn macs_are_reproducible_local_unicast() {
    let a = derive_mac("pc1-12345678", "eth0");
    assert_eq!(a, derive_mac("pc1-12345678", "eth0"));
    assert_ne!(a, derive_mac("pc1-12345678", "eth1"));
    assert_ne!(a, derive_mac("pc2-12345678", "eth0"));
    for n in 0..200 {
        let m = derive_mac(&format!("m{n}"), "eth0");
        assert_eq!(m[0] & 0x03, 0x02, "locally administered unicast");
    }
    let s = format_mac(&a);
    assert_eq!(parse_mac(&s), Ok(a));
    assert!(parse_mac("01:00:5e:00:00:01").is_err(), "multicast refused");
    assert!(parse_mac("02:00:00:00:00").is_err());
    assert!(parse_mac("02:00:00:00:00:zz").is_err());
}

#[test]
fn lab_toml_round_trip_and_unknown_fields() {
    let r = conf("LAB_DESCRIPTION=d\npc1[0]=A\npc1[1]=B/02:00:00:00:00:09\npc1[mem]=96\nr1[0]=A\n");
    let text = r.lab.to_toml();
    let back = LabFile::from_toml(&text, Path::new("lab.toml")).unwrap();
    assert_eq!(back, r.lab);
    let e = LabFile::from_toml("[machines.a]\nmemory = 3\n", Path::new("/l/lab.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/l/lab.toml:") && e.contains("memory"), "{e}");
}

#[test]
fn lab_toml_full_example_validates() {
    let t = r#"
[lab]
name = "t"
dialect = "netkit"
[machines.a]
mem = 32
routes = ["default via 10.0.0.2"]
depends_on = ["b"]
[[machines.a.interfaces]]
domain = "x"
addresses = ["10.0.0.1/24", "fd00::1/64"]
[machines.b]
[[machines.b.interfaces]]
domain = "x"
mac = "02:11:22:33:44:55"
[domains.x]
mode = "switch"
capture = true
link = { delay_ms = 10.0, loss_percent = 1.5, bandwidth_kbit = 1000 }
"#;
    let l = LabFile::from_toml(t, Path::new("lab.toml")).unwrap();
    assert_eq!(l.lab.dialect, Dialect::Netkit);
    let plan = lab::plan::plan(&l, Path::new("/labs/t"), Path::new("/s/t")).unwrap();
    assert_eq!(plan.waves, vec![vec!["b"], vec!["a"]]);
    assert!(!plan.switches[0].hub, "domain mode overrides dialect");
    assert!(plan
        .notes
        .iter()
        .any(|n| n.contains("link emulation delay=10ms,loss=1.5%,rate=1mbit on every port")));
    assert_eq!(
        plan.switches[0].mgmt,
        Some(Path::new("/s/t/sw/0.mgmt").to_path_buf())
    );
    // a value the switch would refuse is an error of the plan, naming it
    let bad = t.replace("delay_ms = 10.0", "delay_ms = -5.0");
    let l = LabFile::from_toml(&bad, Path::new("lab.toml")).unwrap();
    let e = lab::plan::plan(&l, Path::new("/labs/t"), Path::new("/s/t")).unwrap_err();
    assert!(e.to_string().contains("domain x: link emulation"), "{e}");
    assert!(e.to_string().contains("delay"), "{e}");
    assert_eq!(
        plan.machine("b").unwrap().interfaces[0].mac,
        "02:11:22:33:44:55"
    );
}

#[test]
fn lab_toml_rule_errors() {
    for (t, want) in [
        (
            "[machines.a]\n[[machines.a.interfaces]]\ndomain=\"x\"\naddresses=[\"10.0.0.1\"]\n",
            "no /prefix",
        ),
        (
            "[machines.a]\n[[machines.a.interfaces]]\ndomain=\"x\"\nmac=\"03:00:00:00:00:01\"\n",
            "multicast",
        ),
        ("[machines.a]\ndepends_on=[\"zz\"]\n", "unknown machine zz"),
        ("[machines.\"../x\"]\n", "breaks"),
        ("[machines.a]\nmem=0\n", "mem must be"),
    ] {
        let e = LabFile::from_toml(t, Path::new("lab.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{t}: {e}");
    }
}

#[test]
fn planner_switches_macs_scoping() {
    let r = parse_lab_conf(
        "a[0]=x\na[1]=y\nb[0]=x\n",
        Path::new("l"),
        Some(Dialect::Netkit),
    )
    .unwrap();
    let p1 = lab::plan::plan(&r.lab, Path::new("/labs/one"), Path::new("/s/1")).unwrap();
    let p2 = lab::plan::plan(&r.lab, Path::new("/labs/two"), Path::new("/s/2")).unwrap();
    assert_eq!(p1.switches.len(), 2);
    assert!(p1.switches.iter().all(|s| s.hub), "Netkit domains are hubs");
    assert_ne!(p1.id, p2.id);
    assert_ne!(p1.machines[0].umid, p2.machines[0].umid);
    assert_ne!(
        p1.machines[0].interfaces[0].mac,
        p2.machines[0].interfaces[0].mac
    );
    // same lab -> same MACs
    let p1b = lab::plan::plan(&r.lab, Path::new("/labs/one"), Path::new("/s/1")).unwrap();
    assert_eq!(p1, p1b);
    for m in &p1.machines {
        assert!(m.dir.starts_with("/s/1"));
        assert!(m.umid.len() <= 63);
    }
    for s in &p1.switches {
        assert!(s.ctl().starts_with("/s/1"));
    }
    assert_eq!(p1.machine("a").unwrap().interfaces[1].switch, 1);
    // Netkit: no Kathará sysctls, IPv6 on
    assert!(p1.machines[0].sysctl.is_empty());
}

#[test]
fn planner_kathara_defaults_and_image_note() {
    let r =
        conf("a[0]=x\na[image]=kathara/frr\nb[0]=x\nb[ipv6]=true\nc[0]=x\nc[image]=kathara/p4\nd[0]=x\nd[image]=\"kathara/p4:latest\"\ne[0]=x\ne[image]=acme/router\n");
    let p = lab::plan::plan(&r.lab, Path::new("/l"), Path::new("/s")).unwrap();
    assert!(
        p.switches.iter().all(|s| !s.hub),
        "Kathará domains are learning bridges"
    );
    let a = p.machine("a").unwrap();
    assert!(a.sysctl.contains(&"net.ipv4.ip_forward=1".to_string()));
    assert!(a
        .sysctl
        .contains(&"net.ipv4.conf.all.rp_filter=0".to_string()));
    assert!(a.sysctl.contains(&"net.ipv4.icmp_ratelimit=0".to_string()));
    assert!(a
        .sysctl
        .contains(&"net.ipv6.conf.all.disable_ipv6=1".to_string()));
    assert!(!p
        .machine("b")
        .unwrap()
        .sysctl
        .iter()
        .any(|s| s.contains("disable_ipv6")));
    // Kathará names boot the Debian lab image; kathara/p4 too, with its own
    // note (once for both machines); other unknown names the default image,
    // with a note naming it
    assert_eq!(a.image.as_deref(), Some("kathara"));
    assert_eq!(p.machine("b").unwrap().image, None);
    assert!(p
        .machine("b")
        .unwrap()
        .kernel_args
        .contains(&"umlkit.ipv6=1".to_string()));
    assert!(!a.kernel_args.contains(&"umlkit.ipv6=1".to_string()));
    assert!(
        !p.notes.iter().any(|n| n.contains("a[image]")),
        "{:?}",
        p.notes
    );
    let p4: Vec<&String> = p
        .notes
        .iter()
        .filter(|n| n.contains("kathara/p4"))
        .collect();
    assert_eq!(p4.len(), 1, "one note per name: {:?}", p.notes);
    for want in [
        "(c, d)",
        "bmv2",
        "p4c",
        "simple_switch",
        "Debian lab image kathara",
    ] {
        assert!(p4[0].contains(want), "{want}: {}", p4[0]);
    }
    assert_eq!(p.machine("c").unwrap().image.as_deref(), Some("kathara"));
    assert_eq!(p.machine("e").unwrap().image, None);
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("image acme/router (e): ")
                && n.contains("default busybox image")
                && n.contains("[images] \"acme/router\"")),
        "{:?}",
        p.notes
    );
}

#[test]
fn select_pulls_dependencies() {
    let mut r = conf("a[0]=x\nb[0]=x\nc[0]=x\n");
    let deps: BTreeMap<String, Vec<String>> = [("a".to_string(), vec!["b".to_string()])].into();
    lab::load::apply_deps(&mut r.lab, &deps, Path::new("lab.dep")).unwrap();
    let p = lab::plan::plan(&r.lab, Path::new("/l"), Path::new("/s")).unwrap();
    assert_eq!(
        lab::plan::select(&p, &["a".into()]).unwrap(),
        vec![vec!["b"], vec!["a"]]
    );
    assert!(lab::plan::select(&p, &["zz".into()]).is_err());
}

#[test]
fn boot_script_dialects() {
    let r = parse_lab_conf(
        "a[0]=x\na[exec]=echo hi\na[env]=K=v w\n",
        Path::new("l"),
        Some(Dialect::Netkit),
    )
    .unwrap();
    let p = lab::plan::plan(&r.lab, Path::new("/labs/l"), Path::new("/s")).unwrap();
    let s = lab::script::boot_script(&p, &p.machines[0]);
    let shared = s
        .find("cp -a /hostlab/shared/. /")
        .expect("netkit copies shared/");
    let own = s.find("cp -a /hostlab/'a'/. /").expect("copies M/");
    let st1 = s.find("shared.startup").unwrap();
    let st2 = s.find("'a'.startup").unwrap();
    let exec = s.find("run_cmd 'echo hi'").unwrap();
    assert!(shared < own && own < st1 && st1 < st2 && st2 < exec, "{s}");
    assert!(s.contains("export K='v w'"));
    assert!(s.contains("run_cmd 'echo hi'"));
    // startup files run through run_file (bash when the image has it), after
    // /etc/network/interfaces was applied
    let ifup = s
        .find("/sbin/ifup -a")
        .expect("applies /etc/network/interfaces");
    assert!(own < ifup && ifup < st1, "{s}");
    assert!(s.contains("run_file /hostlab/'a'.startup"), "{s}");
    assert!(s.contains("run_file() {"), "{s}");
    let r = conf("a[0]=x\n");
    let p = lab::plan::plan(&r.lab, Path::new("/labs/l"), Path::new("/s")).unwrap();
    let s = lab::script::boot_script(&p, &p.machines[0]);
    assert!(
        s.contains("cp -a /hostlab/shared/. /shared"),
        "Kathará gets a copy of shared/ at /shared"
    );
    assert!(!s.contains("mount --bind"));
    assert!(s.contains("mount -t ext4 -o ro /dev/ubdb /hostlab"));
    let mut trusted = p.clone();
    trusted.host_access = true;
    let s = lab::script::boot_script(&trusted, &trusted.machines[0]);
    assert!(
        s.contains("mount --bind /hostlab/shared /shared"),
        "with host access, Kathará shares shared/ live"
    );
    assert!(!s.contains("/dev/ubdb"));
    let sd = lab::script::shutdown_scripts("a");
    assert!(sd.find("'a'.shutdown").unwrap() < sd.find("shared.shutdown").unwrap());
    assert!(sd.contains("run_file /hostlab/'a'.shutdown"), "{sd}");
}

#[test]
fn shell_quoting() {
    assert_eq!(lab::script::shq("a'b"), "'a'\\''b'");
}

#[test]
fn checks_judge_outputs() {
    let cf = CheckFile::from_toml(
        "[[address]]\nmachine=\"a\"\ninterface=\"eth0\"\naddress=\"10.0.0.1/24\"\n\
         [[route]]\nmachine=\"a\"\ndestination=\"default\"\nvia=\"10.0.0.254\"\n\
         [[route]]\nmachine=\"a\"\ndestination=\"10.2.0.0/16\"\ndevice=\"eth1\"\n\
         [[reach]]\nfrom=\"a\"\nto=\"10.0.0.2\"\n\
         [[reach]]\nfrom=\"a\"\nto=\"10.9.9.9\"\nexpect=false\n\
         [[command]]\nmachine=\"a\"\nrun=\"x\"\nexit=0\ncontains=\"ok\"\n",
        Path::new("t"),
    )
    .unwrap();
    let c = cf.checks();
    assert_eq!(c.len(), 6);
    let addr = "4: eth0    inet 10.0.0.1/24 brd 10.0.0.255 scope global eth0\\";
    assert!(c[0].judge(0, addr).is_ok());
    assert!(c[0]
        .judge(0, "4: eth0    inet 10.0.0.11/24 scope")
        .unwrap_err()
        .contains("10.0.0.11/24"));
    assert!(c[1].judge(0, "default via 10.0.0.254 dev eth0\n").is_ok());
    assert!(c[1].judge(0, "default via 10.0.0.1 dev eth0\n").is_err());
    assert!(c[2].judge(0, "10.2.0.0/16 via 1.1.1.1 dev eth1\n").is_ok());
    assert!(c[2].judge(0, "10.2.0.0/16 via 1.1.1.1 dev eth0\n").is_err());
    assert!(c[3].judge(0, "").is_ok());
    assert!(c[3].judge(1, "").is_err());
    assert!(c[4].judge(1, "").is_ok());
    assert!(c[4].judge(0, "").is_err());
    assert!(c[5].judge(0, "all ok\n").is_ok());
    assert!(c[5]
        .judge(2, "all ok\n")
        .unwrap_err()
        .contains("exit status 2"));
    assert!(
        CheckFile::from_toml("[[reach]]\nfrom=\"a\"\ntoo=\"b\"\n", Path::new("/t.toml")).is_err()
    );
}

#[test]
fn signatures_compare() {
    assert!(compare_signature("a\nb\n", "a\nb").is_ok());
    let e = compare_signature("a\nc\n", "a\nb\n").unwrap_err();
    assert!(e.contains("line 2"), "{e}");
    assert!(compare_signature("a\n", "a\nb\n")
        .unwrap_err()
        .contains("<end>"));
}

#[test]
fn graph_dot_and_svg() {
    let r = conf("pc1[0]=a\nr1[0]=a\nr1[1]=b\npc2[0]=b\n");
    let p = lab::plan::plan(&r.lab, Path::new("/l/demo"), Path::new("/s")).unwrap();
    let d = lab::graph::dot(&p);
    assert!(d.starts_with("graph \"demo\""));
    assert!(
        d.contains("\"m:r1\" -- \"d:b\" [id=\"link-r1-eth1\", class=\"link\"]"),
        "{d}"
    );
    let s = lab::graph::svg(&p).expect("graphviz is installed");
    assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    // 4 interface lines, 2 domain ellipses, 3 machine boxes, by id and class
    assert_eq!(s.matches("class=\"edge link\"").count(), 4, "{s}");
    assert_eq!(s.matches("class=\"node domain\"").count(), 2, "{s}");
    assert_eq!(s.matches("class=\"node machine\"").count(), 3, "{s}");
    assert_eq!(s.matches("class=\"node iface\"").count(), 4, "{s}");
    assert_eq!(s.matches("<ellipse").count(), 2, "{s}");
    assert_eq!(s.matches("<path").count(), 4 + 3, "{s}");
    for id in [
        "machine&#45;r1",
        "domain&#45;b",
        "link&#45;r1&#45;eth1",
        "iface&#45;pc2&#45;eth0",
    ] {
        assert!(s.contains(&format!("id=\"{id}\"")), "{id}: {s}");
    }
}

#[test]
fn path_safety_lexical() {
    use lab::load::stays_inside;
    assert!(stays_inside(Path::new("pc1/etc"), Path::new("../x")));
    assert!(stays_inside(
        Path::new("pc1/etc"),
        Path::new("../../shared/x")
    ));
    assert!(!stays_inside(Path::new("pc1/etc"), Path::new("../../../x")));
    assert!(!stays_inside(Path::new("pc1"), Path::new("/etc/passwd")));
}

#[test]
fn path_safety_on_disk() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(d.join("lab.conf"), "pc1[0]=a\n").unwrap();
    std::fs::create_dir_all(d.join("pc1/etc")).unwrap();
    std::fs::create_dir_all(d.join("shared")).unwrap();
    std::os::unix::fs::symlink("../../shared", d.join("pc1/etc/ok")).unwrap();
    lab::load::load_lab(d, None).expect("inside links are fine");
    std::os::unix::fs::symlink("../../../outside", d.join("pc1/etc/bad")).unwrap();
    let e = lab::load::load_lab(d, None).unwrap_err().to_string();
    assert!(
        e.contains("pc1/etc/bad") && e.contains("outside the lab folder"),
        "{e}"
    );
    std::fs::remove_file(d.join("pc1/etc/bad")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", d.join("shared/abs")).unwrap();
    let e = lab::load::load_lab(d, None).unwrap_err().to_string();
    assert!(e.contains("shared/abs") && e.contains("absolute"), "{e}");
}

#[test]
fn load_netkit_dirs_and_dep() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(d.join("lab.conf"), "machines_note is free text\npc1[0]=a\n").unwrap();
    for m in ["pc1", "pc2", "shared", "_test", "Bad Name"] {
        std::fs::create_dir_all(d.join(m)).unwrap();
    }
    std::fs::write(d.join("lab.dep"), "pc2: pc1\n").unwrap();
    let l = lab::load::load_lab(d, None).unwrap();
    assert_eq!(l.lab.lab.dialect, Dialect::Netkit);
    let names: Vec<&String> = l.lab.machines.keys().collect();
    assert_eq!(names, ["pc1", "pc2"]);
    assert_eq!(l.lab.machines["pc2"].depends_on, vec!["pc1"]);
    assert!(l.notes.iter().any(|n| n.contains("Bad Name")));
    std::fs::write(d.join("lab.dep"), "pc2: pc1\npc1: pc2\n").unwrap();
    let e = lab::load::load_lab(d, None).unwrap_err().to_string();
    assert!(e.contains("lab.dep: dependency cycle"), "{e}");
    std::fs::write(d.join("lab.dep"), "pc2: ghost\n").unwrap();
    let e = lab::load::load_lab(d, None).unwrap_err().to_string();
    assert!(e.contains("ghost"), "{e}");
}

#[test]
fn load_missing_description() {
    let t = tempfile::tempdir().unwrap();
    let e = lab::load::load_lab(t.path(), None).unwrap_err().to_string();
    assert!(e.contains("no lab.conf or lab.toml"), "{e}");
}

#[test]
fn example_labs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/labs");
    let mut n = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let dir = e.unwrap().path();
        let l =
            lab::load::load_lab(&dir, None).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let p = lab::plan::plan(&l.lab, &l.dir, Path::new("/s")).unwrap();
        assert!(!p.machines.is_empty());
        if dir.join("lab.test.toml").exists() {
            let t = std::fs::read_to_string(dir.join("lab.test.toml")).unwrap();
            let cf = CheckFile::from_toml(&t, &dir).unwrap();
            for c in cf.checks() {
                assert!(
                    p.machine(&c.machine).is_some(),
                    "{}: check names unknown {}",
                    dir.display(),
                    c.machine
                );
            }
        }
        n += 1;
    }
    assert!(n >= 1);
}

#[test]
fn undecided_lab_with_root_tree_in_shared_is_netkit() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(d.join("lab.conf"), "pc1[0]=a\n").unwrap();
    let l = lab::load::load_lab(d, None).unwrap();
    assert_eq!(l.lab.lab.dialect, Dialect::Kathara);
    std::fs::create_dir_all(d.join("shared/etc")).unwrap();
    let l = lab::load::load_lab(d, None).unwrap();
    assert_eq!(l.lab.lab.dialect, Dialect::Netkit);
    assert!(
        l.dialect_reason.contains("shared/etc/"),
        "{}",
        l.dialect_reason
    );
    let l = lab::load::load_lab(d, Some(Dialect::Kathara)).unwrap();
    assert_eq!(l.lab.lab.dialect, Dialect::Kathara, "forcing wins");
}

#[test]
fn convert_output_reads_back() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(
        d.join("lab.conf"),
        "LAB_AUTHOR=x\nr1[0]=a\nr1[1]=b/02:00:00:00:00:aa\nr1[mem]=128\npc[0]=a\n",
    )
    .unwrap();
    std::fs::write(d.join("lab.dep"), "pc: r1\n").unwrap();
    let l = lab::load::load_lab(d, None).unwrap();
    let text = l.lab.to_toml();
    std::fs::write(d.join("lab.toml"), &text).unwrap();
    let l2 = lab::load::load_lab(d, None).unwrap();
    assert_eq!(l2.source, lab::load::Source::LabToml);
    assert_eq!(l2.lab, l.lab);
    assert!(l2.notes.iter().any(|n| n.contains("lab.toml is used")));
}

/// Write `files` (path, text) under a fresh temp dir.
fn lab_folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for (p, text) in files {
        let p = t.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        if p.to_string_lossy().ends_with('/') {
            std::fs::create_dir_all(&p).unwrap();
        } else {
            std::fs::write(&p, text).unwrap();
        }
    }
    t
}

/// Issue 10.4: netkit.org-style labs (LAB_* lines and `M[N]=DOMAIN` only in
/// lab.conf) were read as Kathará: learning switches, forwarding everywhere.
/// Their folders show Netkit: ifconfig/route startups, zebra, `_test/`.
#[test]
fn dialect_netkit_era_lab_detected_from_its_folder() {
    let t = lab_folder(&[
        (
            "lab.conf",
            "LAB_DESCRIPTION=\"static routing\"\nLAB_VERSION=2.2\nLAB_AUTHOR=\"netkit team\"\n\
             LAB_EMAIL=contact@netkit.org\nLAB_WEB=http://www.netkit.org/\n\n\
             pc1[0]=\"A\"\npc2[0]=\"B\"\nr1[0]=\"A\"\nr1[1]=\"C\"\nr2[0]=\"B\"\nr2[1]=\"C\"\n",
        ),
        (
            "pc1.startup",
            "ifconfig eth0 195.11.14.5 netmask 255.255.255.0 broadcast 195.11.14.255 up\nroute add default gw 195.11.14.1 dev eth0\n",
        ),
        (
            "pc2.startup",
            "ifconfig eth0 200.1.1.7 netmask 255.255.255.0 up\nroute add default gw 200.1.1.1\n",
        ),
        (
            "r1.startup",
            "ifconfig eth0 195.11.14.1 netmask 255.255.255.0 up\nifconfig eth1 100.0.0.9 netmask 255.255.255.252 up\n/etc/init.d/zebra start\n",
        ),
        ("r2.startup", "ifconfig eth0 200.1.1.1 up\n"),
        ("r1/etc/zebra/daemons", "zebra=yes\n"),
        ("_test/results/", ""),
    ]);
    // netkit.org's own labs name it in LAB_WEB / LAB_EMAIL: that decides.
    let l = lab::load::load_lab(t.path(), None).unwrap();
    assert_eq!(l.lab.lab.dialect, Dialect::Netkit, "{}", l.dialect_reason);
    assert!(
        l.dialect_reason
            .contains("line 4: LAB_EMAIL points to Netkit"),
        "{}",
        l.dialect_reason
    );
    // Without them, the folder does.
    let conf = std::fs::read_to_string(t.path().join("lab.conf")).unwrap();
    let conf: String = conf
        .lines()
        .filter(|l| !l.contains("netkit.org"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(t.path().join("lab.conf"), conf).unwrap();
    let l = lab::load::load_lab(t.path(), None).unwrap();
    assert_eq!(l.lab.lab.dialect, Dialect::Netkit, "{}", l.dialect_reason);
    assert!(
        l.dialect_reason
            .contains("4 of 4 .startup files use ifconfig")
            && l.dialect_reason.contains("_test/"),
        "{}",
        l.dialect_reason
    );
    let p = lab::plan::plan(&l.lab, &l.dir, Path::new("/s")).unwrap();
    assert!(p.switches.iter().all(|s| s.hub), "Netkit domains are hubs");
    assert!(p
        .machines
        .iter()
        .all(|m| !m.sysctl.iter().any(|s| s.contains("ip_forward"))));
}

/// The same lab.conf with Kathará-era startups (ip, FRR) stays Kathará.
#[test]
fn dialect_kathara_era_startups_stay_kathara() {
    let t = lab_folder(&[
        ("lab.conf", "pc1[0]=A\nr1[0]=A\n"),
        (
            "pc1.startup",
            "ip address add 10.0.0.1/24 dev eth0\nip route add default via 10.0.0.254\n",
        ),
        (
            "r1.startup",
            "ip address add 10.0.0.254/24 dev eth0\n/etc/init.d/frr start\n",
        ),
    ]);
    let l = lab::load::load_lab(t.path(), None).unwrap();
    assert_eq!(l.lab.lab.dialect, Dialect::Kathara, "{}", l.dialect_reason);
    assert!(
        l.dialect_reason
            .contains("2 of 2 .startup files use ip address"),
        "{}",
        l.dialect_reason
    );
    // lab.conf evidence wins over the folder.
    std::fs::write(
        t.path().join("lab.conf"),
        "machines=\"pc1 r1\"\npc1[0]=A\nr1[0]=A\n",
    )
    .unwrap();
    let l = lab::load::load_lab(t.path(), None).unwrap();
    assert_eq!(l.lab.lab.dialect, Dialect::Netkit);
    assert!(
        l.dialect_reason.contains("line 1: machines="),
        "{}",
        l.dialect_reason
    );
}

/// Issue 10.5: Netkit's short options (`M[M]=32` is `vstart -M 32`) and
/// `M[ethN]` were ignored; they are vstart options lstart passes on.
#[test]
fn netkit_short_options_are_read() {
    let r = conf("pc1[M]=32\npc1[e]=echo hi\npc1[eth0]=A\npc1[k]=/x/kernel\n");
    assert_eq!(r.lab.lab.dialect, Dialect::Netkit);
    assert!(
        r.dialect_reason
            .contains("pc1[M] is a Netkit vstart option"),
        "{}",
        r.dialect_reason
    );
    let m = &r.lab.machines["pc1"];
    assert_eq!(m.mem, Some(32));
    assert_eq!(m.exec, vec!["echo hi".to_string()]);
    assert_eq!(m.interfaces.len(), 1);
    assert_eq!(m.interfaces[0].domain, "A");
    assert!(
        r.notes.iter().any(|n| n.key == "k" && n.ignored),
        "{:?}",
        r.notes
    );
}

/// Issue 10.5: a value with spaces was fatal; Netkit strips the spaces (and
/// `_ , .` from collision domains) with a warning.
#[test]
fn netkit_value_with_spaces_is_stripped_with_warning() {
    let r = parse_lab_conf(
        "pc1[0]=lan A\npc1[mem]=6 4\npc2[0]=lanA\npc3[0]=lan_A\n",
        Path::new("lab.conf"),
        Some(Dialect::Netkit),
    )
    .unwrap();
    let d = |m: &str| r.lab.machines[m].interfaces[0].domain.clone();
    assert_eq!(
        (d("pc1"), d("pc2"), d("pc3")),
        ("lanA".into(), "lanA".into(), "lanA".into())
    );
    assert_eq!(r.lab.machines["pc1"].mem, Some(64));
    let text: Vec<String> = r.notes.iter().map(|n| n.to_string()).collect();
    assert!(
        text.iter()
            .any(|n| n.starts_with("line 1: pc1[0]:") && n.contains("renamed to \"lanA\"")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|n| n.starts_with("line 2: pc1[mem]:") && n.contains("contains spaces")),
        "{text:?}"
    );
    // Kathará keeps its stricter rule.
    let e = conf_err("pc1[0]=lan A\n", Some(Dialect::Kathara));
    assert!(
        e.contains("lab.conf:1:") && e.contains("contains spaces"),
        "{e}"
    );
}

/// Issue 10.5: `tap,HOST_IP,GUEST_IP` became a private collision domain named
/// "tap,...". It is parsed, reported, and the interface is left unplugged.
#[test]
fn netkit_tap_domain_is_parsed_and_left_unplugged() {
    let r = conf("pc1[0]=tap,10.0.0.1,10.0.0.2\npc1[1]=A\npc2[0]=A\n");
    assert_eq!(r.lab.lab.dialect, Dialect::Netkit, "{}", r.dialect_reason);
    assert!(r.dialect_reason.contains("tap"), "{}", r.dialect_reason);
    let m = &r.lab.machines["pc1"];
    assert_eq!(
        m.uplinks,
        vec![lab::model::Uplink {
            index: 0,
            host: "10.0.0.1".into(),
            guest: "10.0.0.2".into()
        }]
    );
    assert_eq!(m.interfaces.len(), 1);
    assert_eq!(m.interfaces[0].index, Some(1), "eth1 stays eth1");
    let p = lab::plan::plan(&r.lab, Path::new("/labs/t"), Path::new("/s")).unwrap();
    assert_eq!(p.switches.len(), 1, "no switch for the tap");
    assert_eq!(p.switches[0].domain, "A");
    assert_eq!(p.machine("pc1").unwrap().interfaces[0].name, "eth1");
    assert!(
        p.notes.iter().any(|n| n
            .contains("pc1 eth0: Netkit tap uplink (host 10.0.0.1, guest 10.0.0.2)")
            && n.contains("no NAT uplink yet: the interface is left unplugged")),
        "{:?}",
        p.notes
    );
    // lab.toml keeps it.
    let back = LabFile::from_toml(&r.lab.to_toml(), Path::new("lab.toml")).unwrap();
    assert_eq!(back, r.lab);
    // lab.toml: bad uplinks are errors naming the machine.
    for (toml, want) in [
        (
            "[[machines.a.uplinks]]\nindex = 0\nhost = \"10.0.0.1\"\nguest = \"x\"\n",
            "guest address \"x\" is not an IPv4 address",
        ),
        (
            "[[machines.a.interfaces]]\ndomain = \"A\"\n[[machines.a.uplinks]]\nindex = 0\nhost = \"10.0.0.1\"\nguest = \"10.0.0.2\"\n",
            "eth0 is both an interface and an uplink",
        ),
    ] {
        let e = LabFile::from_toml(toml, Path::new("lab.toml")).unwrap_err().to_string();
        assert!(e.contains("machine a") && e.contains(want), "{e}");
    }
    // A malformed tap is an error naming the line.
    let e = conf_err("pc1[0]=tap,10.0.0.1\n", Some(Dialect::Netkit));
    assert!(
        e.contains("lab.conf:1:") && e.contains("tap,HOST_IP,GUEST_IP"),
        "{e}"
    );
    let e = conf_err("pc1[0]=tap,10.0.0.1,nothere\n", Some(Dialect::Netkit));
    assert!(e.contains("\"nothere\" is not an IPv4 address"), "{e}");
}

/// Netkit keeps the first setting of a key (lstart warns); it was an error
/// for interfaces and silently the last for options.
#[test]
fn netkit_duplicate_settings_first_wins() {
    let r = parse_lab_conf(
        "a[0]=A\na[0]=B\na[mem]=32\na[mem]=128\n",
        Path::new("lab.conf"),
        Some(Dialect::Netkit),
    )
    .unwrap();
    let m = &r.lab.machines["a"];
    assert_eq!(m.interfaces[0].domain, "A");
    assert_eq!(m.mem, Some(32));
    assert_eq!(
        r.notes
            .iter()
            .filter(|n| n.message.contains("keeps the first"))
            .count(),
        2
    );
    let e = conf_err("a[0]=A\na[0]=B\n", Some(Dialect::Kathara));
    assert!(e.contains("already given on line 1"), "{e}");
}

/// Issue 9: machines on the Debian lab image without `mem` got the busybox
/// default of 64 MiB, where four FRR routers booting at once lost zebra to
/// the OOM killer. They default to 128 MiB; `mem` still wins, busybox
/// machines keep 64.
#[test]
fn lab_image_machines_default_to_128_mib() {
    let r = conf(
        "r1[0]=A\nr1[image]=\"kathara/frr\"\nr2[0]=A\nr2[image]=kathara/quagga:latest\nr2[mem]=96\n\
         pc[0]=A\nwh[0]=A\nwh[image]=lscr.io/linuxserver/wireshark\n",
    );
    let p = lab::plan::plan(&r.lab, Path::new("/labs/m"), Path::new("/s")).unwrap();
    let mem = |n: &str| p.machine(n).unwrap().mem_mb;
    assert_eq!(lab::plan::LAB_IMAGE_MEM_MB, 128);
    assert_eq!(
        (mem("r1"), mem("r2"), mem("pc"), mem("wh")),
        (128, 96, 64, 64)
    );
    assert!(
        !p.notes.iter().any(|n| n.contains("floor")),
        "{:?}",
        p.notes
    );
}

/// Issue 10.3: `M[mem]=16` (Netkit era) was raised to 40 MiB silently, where
/// guests die while booting. The plan applies the measured floor and says so once.
#[test]
fn mem_below_floor_is_raised_once_with_a_note() {
    let r = conf("a[M]=16\nb[mem]=32\nc[mem]=128\n");
    let p = lab::plan::plan(&r.lab, Path::new("/labs/m"), Path::new("/s")).unwrap();
    let mem = |n: &str| p.machine(n).unwrap().mem_mb;
    assert_eq!((mem("a"), mem("b"), mem("c")), (64, 64, 128));
    assert_eq!(lab::plan::MEM_FLOOR_MB, 64);
    let floor: Vec<&String> = p.notes.iter().filter(|n| n.contains("floor")).collect();
    assert_eq!(floor.len(), 1, "{:?}", p.notes);
    assert!(floor[0].contains("a (16), b (32)"), "{}", floor[0]);
    // An explicit floor overrides (never below the kernel's minimum).
    let mut l = r.lab.clone();
    l.lab.min_mem = Some(48);
    let p = lab::plan::plan(&l, Path::new("/labs/m"), Path::new("/s")).unwrap();
    assert_eq!(p.machine("a").unwrap().mem_mb, 48);
    l.lab.min_mem = Some(8);
    let p = lab::plan::plan(&l, Path::new("/labs/m"), Path::new("/s")).unwrap();
    assert_eq!(p.machine("a").unwrap().mem_mb, guest::MIN_MEM_MB);
    // lab.toml: [lab] min_mem.
    let l = LabFile::from_toml(
        "[lab]\nmin_mem = 96\n[machines.a]\nmem = 16\n",
        Path::new("lab.toml"),
    )
    .unwrap();
    let p = lab::plan::plan(&l, Path::new("/labs/m"), Path::new("/s")).unwrap();
    assert_eq!(p.machine("a").unwrap().mem_mb, 96);
    // Nothing raised, nothing said.
    let p = lab::plan::plan(
        &conf("a[mem]=64\n").lab,
        Path::new("/labs/m"),
        Path::new("/s"),
    )
    .unwrap();
    assert!(
        !p.notes.iter().any(|n| n.contains("floor")),
        "{:?}",
        p.notes
    );
}

/// Kathara-Labs survey (docs/kathara-labs.md): FRR machines of the OSPF
/// single-area lab got 64 MiB, the OOM killer killed `zebra` while
/// `systemctl start frr` ran, and the lab took ~60 s to start with routes
/// missing. A machine booting a Debian lab image without `[mem]` gets
/// `LAB_IMAGE_MEM_MB`; an explicit `[mem]` and the busybox default stay.
#[test]
fn frr_oom_at_64m_lab_image_machines_get_128m() {
    let r = conf(
        "r1[0]=A\nr1[image]=\"kathara/frr\"\n\
         r2[0]=A\nr2[image]=\"kathara/quagga\"\nr2[mem]=96\n\
         pc[0]=A\npc[image]=\"kathara/base\"\n\
         bb[0]=A\n\
         ws[0]=A\nws[image]=\"lscr.io/linuxserver/wireshark\"\n",
    );
    let p = lab::plan::plan(&r.lab, Path::new("/labs/m"), Path::new("/s/m")).unwrap();
    let mem = |n: &str| p.machine(n).unwrap().mem_mb;
    assert_eq!(mem("r1"), lab::plan::LAB_IMAGE_MEM_MB);
    assert_eq!(lab::plan::LAB_IMAGE_MEM_MB, 128);
    assert_eq!(mem("pc"), 128, "kathara/base is the same Debian image");
    assert_eq!(mem("r2"), 96, "an explicit [mem] is kept");
    assert_eq!(
        mem("bb"),
        lab::plan::DEFAULT_MEM_MB,
        "busybox default image"
    );
    assert_eq!(
        mem("ws"),
        lab::plan::DEFAULT_MEM_MB,
        "unknown image: busybox"
    );
}

#[test]
fn lab_toml_images_table_maps_names_before_the_user_file() {
    let f = Path::new("/labs/m/lab.toml");
    let text = "[images]\n\"kathara/pox\" = \"default\"\n\n[machines.c]\nimage = \"kathara/pox:latest\"\n[machines.h]\nimage = \"acme/host\"\n";
    let l = lab::model::LabFile::from_toml(text, f).unwrap();
    let user = lab::images::parse_user_map(
        "[images]\n\"kathara/pox\" = \"kathara/sdn\"\n\"acme/host\" = \"kathara/base\"\n",
        Path::new("/home/u/.config/umlkit/images.toml"),
    )
    .unwrap();
    let p = lab::plan::plan_with(&l, Path::new("/labs/m"), Path::new("/s"), Some(&user)).unwrap();
    let c = p.machine("c").unwrap();
    assert_eq!(c.image, None, "lab.toml wins: {c:?}");
    assert!(c
        .image_via
        .as_deref()
        .unwrap()
        .contains("/labs/m/lab.toml [images]"));
    let h = p.machine("h").unwrap();
    assert_eq!(h.image.as_deref(), Some("kathara"));
    assert_eq!(h.mem_mb, lab::plan::LAB_IMAGE_MEM_MB);
    assert!(h
        .image_via
        .as_deref()
        .unwrap()
        .contains("images.toml [images]"));
    assert!(
        p.notes.iter().all(|n| !n.starts_with("image ")),
        "{:?}",
        p.notes
    );
    // a mapping to an image umlkit does not have: an error naming lab.toml
    let e = lab::model::LabFile::from_toml("[images]\n\"a/b\" = \"kathara/p4\"\n", f)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/labs/m/lab.toml: [images] \"a/b\" = \"kathara/p4\": umlkit has no image"),
        "{e}"
    );
}

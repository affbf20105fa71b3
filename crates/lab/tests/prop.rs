//! Property tests of the pure parsers: no input makes them panic, and what
//! lab.conf says survives the trip through lab.toml.

use std::path::Path;

use lab::conf::{parse_lab_conf, parse_lab_dep};
use lab::model::{Dialect, LabFile};
use proptest::prelude::*;

proptest! {
    #[test]
    fn lab_conf_never_panics(text in "(?s).{0,400}") {
        for d in [None, Some(Dialect::Netkit), Some(Dialect::Kathara)] {
            let _ = parse_lab_conf(&text, Path::new("lab.conf"), d);
        }
    }

    /// Netkit reads any collision domain as lstart does: spaces, `_ , .`
    /// removed (with a warning), never an error.
    #[test]
    fn netkit_domains_are_cleaned_never_rejected(dom in "D[A-Za-z0-9 _.,]{0,12}", mem in "[0-9 ]{0,2}[1-9][0-9 ]{0,2}") {
        let text = format!("pc1[0]={dom}\npc1[mem]={mem}\n");
        let r = parse_lab_conf(&text, Path::new("lab.conf"), Some(Dialect::Netkit)).unwrap();
        let got = &r.lab.machines["pc1"].interfaces[0].domain;
        let want: String = dom.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        prop_assert_eq!(got, &want);
        let want_mem: u32 = mem.replace(' ', "").parse().unwrap();
        prop_assert_eq!(r.lab.machines["pc1"].mem, Some(want_mem));
    }

    #[test]
    fn lab_dep_never_panics(text in "(?s).{0,300}") {
        let _ = parse_lab_dep(&text, Path::new("lab.dep"));
    }

    #[test]
    fn lab_toml_never_panics(text in "(?s).{0,300}") {
        let _ = LabFile::from_toml(&text, Path::new("lab.toml"));
    }

    #[test]
    fn generated_labs_round_trip(
        machines in proptest::collection::btree_map(
            "[a-z][a-z0-9_]{0,8}",
            (proptest::collection::vec("[A-Z][A-Z0-9]{0,4}", 0..4), proptest::option::of(40u32..512)),
            1..6,
        )
    ) {
        let mut text = String::new();
        for (name, (doms, mem)) in &machines {
            for (i, d) in doms.iter().enumerate() {
                text.push_str(&format!("{name}[{i}]=\"{d}\"\n"));
            }
            if let Some(m) = mem {
                text.push_str(&format!("{name}[mem]={m}\n"));
            }
            if doms.is_empty() && mem.is_none() {
                text.push_str(&format!("{name}[exec]=true\n"));
            }
        }
        let r = parse_lab_conf(&text, Path::new("lab.conf"), Some(Dialect::Kathara)).unwrap();
        prop_assert_eq!(r.lab.machines.len(), machines.len());
        for (name, (doms, mem)) in &machines {
            let m = &r.lab.machines[name];
            let got: Vec<&str> = m.interfaces.iter().map(|i| i.domain.as_str()).collect();
            prop_assert_eq!(got, doms.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(m.mem, *mem);
        }
        let back = LabFile::from_toml(&r.lab.to_toml(), Path::new("lab.toml")).unwrap();
        prop_assert_eq!(back, r.lab);
    }
}

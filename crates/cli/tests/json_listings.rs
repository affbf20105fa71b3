//! Every `--json` listing parses and carries the keys docs/json.md lists.

mod guest_common;
mod switch_common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn json(args: &[&str], env: &[(&str, &Path)]) -> Value {
    let mut c = Command::new(testkit::umlkit_bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
}

fn has_keys(v: &Value, keys: &[&str], what: &str) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {v}"));
    for k in keys {
        assert!(o.contains_key(*k), "{what}: no key {k}: {v}");
    }
}

#[test]
fn json_listings_match_docs_json_md() {
    let tmp = testkit::short_tempdir("json");
    let t = tmp.path();
    // ps: an array (empty for a fresh state root)
    let ps = json(&["ps", "--json"], &[("UMLKIT_STATE_DIR", &t.join("gs"))]);
    assert_eq!(ps, Value::Array(vec![]));

    // lab info / lab status
    let lab = t.join("lab");
    std::fs::create_dir_all(&lab).unwrap();
    std::fs::write(lab.join("lab.conf"), "pc1[0]=A\npc2[0]=A\n").unwrap();
    let l = lab.to_str().unwrap();
    let st = t.join("labst");
    let s = st.to_str().unwrap();
    let info = json(&["lab", "info", "--json", "--state-root", s, l], &[]);
    has_keys(
        &info,
        &[
            "name",
            "id",
            "dialect",
            "lab_dir",
            "state_dir",
            "uml_dir",
            "switches",
            "machines",
            "waves",
            "notes",
            "host_access",
        ],
        "lab info",
    );
    has_keys(
        &info["switches"][0],
        &["domain", "dir", "pidfile", "hub", "capture", "link", "mgmt"],
        "lab info switch",
    );
    has_keys(
        &info["machines"][0],
        &[
            "name",
            "umid",
            "mem_mb",
            "dir",
            "interfaces",
            "routes",
            "ipv6",
            "sysctl",
            "env",
            "exec",
            "kernel_args",
            "depends_on",
            "image",
        ],
        "lab info machine",
    );
    has_keys(
        &info["machines"][0]["interfaces"][0],
        &["name", "index", "domain", "switch", "mac", "addresses"],
        "lab info interface",
    );
    let status = json(&["lab", "status", "--json", "--state-root", s, l], &[]);
    has_keys(
        &status,
        &["lab", "dir", "dialect", "state_dir", "domains", "machines"],
        "lab status",
    );
    has_keys(
        &status["domains"][0],
        &["name", "state", "pid", "ctl", "hub", "link"],
        "lab status domain",
    );
    has_keys(
        &status["machines"][1],
        &["name", "state", "pid", "mem_mb", "lost_links", "interfaces"],
        "lab status machine",
    );
    assert_eq!(status["machines"][1]["state"], "stopped");
    has_keys(
        &status["machines"][0]["interfaces"][0],
        &["name", "domain", "mac", "addresses"],
        "lab status interface",
    );

    // image ls (an empty cache)
    let img = json(
        &["image", "ls", "--json"],
        &[("UMLKIT_CACHE_DIR", &t.join("cache"))],
    );
    has_keys(&img, &["recipes", "built"], "image ls");
    has_keys(
        &img["recipes"][0],
        &["name", "aliases", "built"],
        "image ls recipe",
    );
    assert_eq!(img["built"], Value::Array(vec![]));

    // cow info
    let backing = t.join("b.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let cow = t.join("c.cow");
    let o = Command::new(testkit::umlkit_bin())
        .arg("mkcow")
        .arg(&cow)
        .arg(&backing)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ci = json(&["cow", "info", "--json", cow.to_str().unwrap()], &[]);
    has_keys(
        &ci,
        &[
            "path",
            "version",
            "backing_file",
            "recorded_size",
            "recorded_mtime",
            "current_size",
            "current_mtime",
            "backing_problem",
            "sector_size",
            "alignment",
            "bitmap_offset",
            "bitmap_len",
            "data_offset",
            "file_len",
            "sectors",
            "sectors_changed",
            "percent_changed",
            "allocated_bytes",
            "merge_journal",
        ],
        "cow info",
    );
}

#[test]
fn json_ps_of_a_running_guest() {
    testkit::kernel();
    let env = guest_common::Env::new("ujs");
    env.start("j1", &[]);
    let v: Value = serde_json::from_str(&env.ok(&["ps", "--json"])).unwrap();
    let g = &v[0];
    has_keys(
        g,
        &[
            "name",
            "phase",
            "pid",
            "pgid",
            "supervisor_pid",
            "uptime_s",
            "boot_s",
            "rss_kb",
            "pss_kb",
            "physmem_kb",
            "processes",
            "disks",
            "interfaces",
            "console",
            "ending",
            "mem_mb",
            "io",
        ],
        "ps",
    );
    assert_eq!(g["name"], "j1");
    assert_eq!(g["phase"], "running");
}

#[test]
fn json_link_show_of_a_running_switch() {
    let sw = switch_common::Sw::start(&[]);
    let mgmt = sw.mgmt.to_str().unwrap();
    let o = Command::new(testkit::umlkit_bin())
        .args(["link", "set", mgmt, "2", "--dir", "out", "delay=20ms"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&["link", "show", "--json", mgmt], &[]);
    let all = v.as_array().expect("an array");
    assert_eq!(all.len(), 2, "{v}");
    for l in all {
        has_keys(
            l,
            &[
                "port",
                "dir",
                "spec",
                "offered",
                "passed",
                "lost",
                "queue_drop",
                "mtu_drop",
                "duplicated",
                "corrupted",
                "delayed",
                "held_frames",
                "held_bytes",
            ],
            "link show",
        );
        assert_eq!(l["port"], 2);
    }
    let out = all.iter().find(|l| l["dir"] == "out").expect("out");
    assert!(
        out["spec"].as_str().unwrap().contains("delay=20ms"),
        "{out}"
    );
}

//! `umlkit lab` commands that need no kernel: convert, info, graph, errors.

use std::path::Path;
use std::process::{Command, Output};

fn umlkit(args: &[&str], state: &Path) -> Output {
    Command::new(testkit::umlkit_bin())
        .arg("lab")
        .arg(args[0])
        .arg("--state-root")
        .arg(state)
        .args(&args[1..])
        .output()
        .expect("run umlkit")
}

#[test]
fn lab_convert_writes_lab_toml_that_reads_back() {
    let t = testkit::short_tempdir("labcv");
    let d = t.path().join("lab");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("lab.conf"), "LAB_DESCRIPTION=\"x\"\npc1[0]=A\nr1[0]=A\nr1[1]=B/02:00:00:00:00:77\nr1[mem]=96\nr1[image]=frr\n").unwrap();
    std::fs::write(d.join("lab.dep"), "pc1: r1\n").unwrap();
    let st = t.path().join("st");
    let before = umlkit(&["info", d.to_str().unwrap(), "--json"], &st);
    assert!(
        before.status.success(),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );
    let o = umlkit(&["convert", d.to_str().unwrap()], &st);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrote"));
    let toml = std::fs::read_to_string(d.join("lab.toml")).unwrap();
    assert!(
        toml.contains("depends_on = [\"r1\"]")
            && toml.contains("02:00:00:00:00:77")
            && toml.contains("mem = 96"),
        "{toml}"
    );
    // Same plan from lab.toml as from lab.conf.
    let after = umlkit(&["info", d.to_str().unwrap(), "--json"], &st);
    assert_eq!(before.stdout, after.stdout);
    // Refuses to overwrite without --force; with lab.toml present there is no lab.conf source.
    let o = umlkit(&["convert", d.to_str().unwrap()], &st);
    assert!(!o.status.success());
    assert!(!st.exists(), "read-only commands create no state");
}

#[test]
fn lab_errors_name_file_and_line() {
    let t = testkit::short_tempdir("laber");
    let d = t.path().join("lab");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("lab.conf"), "a[0]=x\na[image]=y\nb[2]=x\n").unwrap();
    let o = umlkit(&["info", d.to_str().unwrap()], &t.path().join("st"));
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("lab.conf:3:") && e.contains("without gaps"),
        "{e}"
    );
    std::fs::write(d.join("lab.conf"), "a[0]=x\nb[0]=x\n").unwrap();
    std::fs::write(d.join("lab.dep"), "a: b\nb: a\n").unwrap();
    let o = umlkit(&["info", d.to_str().unwrap()], &t.path().join("st"));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("lab.dep: dependency cycle: a -> b -> a") || e.contains("b -> a -> b"),
        "{e}"
    );
    let o = umlkit(
        &["info", t.path().join("nope").to_str().unwrap()],
        &t.path().join("st"),
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot open lab folder"));
}

#[test]
fn lab_graph_dot_and_svg_files() {
    let t = testkit::short_tempdir("labgr");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/labs/demo");
    let svg = t.path().join("g.svg");
    let dot = t.path().join("g.dot");
    let o = umlkit(
        &[
            "graph",
            demo.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
            "--dot",
            dot.to_str().unwrap(),
        ],
        &t.path().join("st"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = std::fs::read_to_string(dot).unwrap();
    assert!(d.contains("\"m:r1\" -- \"d:lan2\""), "{d}");
    let s = std::fs::read_to_string(svg).unwrap();
    assert!(s.starts_with("<svg") && s.contains(">pc1<"), "{s}");
    assert!(
        s.contains("id=\"machine&#45;pc1\" class=\"node machine\""),
        "{s}"
    );
    assert!(
        s.contains("id=\"link&#45;r1&#45;eth1\" class=\"edge link\""),
        "{s}"
    );
}

#[test]
fn lab_start_without_the_agent_says_how_to_build_it() {
    let t = testkit::short_tempdir("labna");
    let d = t.path().join("lab");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("lab.conf"), "a[0]=A\n").unwrap();
    let st = t.path().join("st");
    let o = Command::new(testkit::umlkit_bin())
        .args(["lab", "start", "--state-root"])
        .arg(&st)
        .arg(&d)
        .env("UMLKIT_AGENT", t.path().join("no-such-agent"))
        .output()
        .expect("run umlkit");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cargo build --release -p umlkit-agent --target x86_64-unknown-linux-gnu")
            && err.contains("+crt-static"),
        "{err}"
    );
    assert!(!st.exists() || std::fs::read_dir(&st).unwrap().next().is_none());
}

/// Issue 10.3 and 10.6 through the binary: `lab info` shows the memory floor
/// once, `--min-mem` overrides it, and a Kathará lab with an unknown key
/// (`h1[folder]=...`) reads, warning once and listing the key.
#[test]
fn lab_info_memory_floor_and_ignored_keys() {
    let t = testkit::short_tempdir("labfl");
    let d = t.path().join("lab");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("lab.conf"),
        "h1[0]=A\nh1[image]=kathara/base\nh1[mem]=16\nh1[folder]=/x\nh2[0]=A\nh2[folder]=/y\n",
    )
    .unwrap();
    let st = t.path().join("st");
    let o = umlkit(&["info", d.to_str().unwrap()], &st);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("dialect: kathara"), "{out}");
    assert!(out.contains("machine h1 mem 64 MiB"), "{out}");
    assert_eq!(out.matches("floor of 64 MiB").count(), 1, "{out}");
    assert!(out.contains("h1 (16)"), "{out}");
    assert_eq!(
        out.matches("[folder]: unknown option, ignored").count(),
        1,
        "{out}"
    );
    assert!(
        out.contains("line 4: h1[folder]: unknown option, ignored (also h2 (line 6))"),
        "{out}"
    );
    assert!(
        out.contains("\nignored keys: folder (h1 (line 4), h2 (line 6))\n"),
        "{out}"
    );
    let o = umlkit(&["info", d.to_str().unwrap(), "--min-mem", "48"], &st);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("machine h1 mem 48 MiB"), "{out}");
    assert!(out.contains("floor of 48 MiB"), "{out}");
    assert!(!st.exists(), "read-only commands create no state");
}

/// Issue 8.7: `lab convert` wrote DIR/lab.toml through a (dangling) symlink
/// put there by the lab folder, creating or replacing a file outside it.
#[test]
fn lab_convert_never_writes_through_a_lab_toml_symlink() {
    let t = testkit::short_tempdir("labcvln");
    let d = t.path().join("lab");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("lab.conf"), "pc1[0]=A\n").unwrap();
    let target = t.path().join("outside-target");
    std::os::unix::fs::symlink(&target, d.join("lab.toml")).unwrap();
    let st = t.path().join("st");
    let o = umlkit(&["convert", d.to_str().unwrap(), "--force"], &st);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("symlink") && err.contains("lab.toml"), "{err}");
    assert!(!target.exists(), "wrote through the link");
}

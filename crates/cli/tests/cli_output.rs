//! Hostile input and hostile readers of the CLI's output (issue 8 item 11):
//! a closed stdout, names carrying terminal escapes, DOT injection through a
//! domain name, out-of-range numbers in lab.toml. No kernel needed.
#![allow(clippy::disallowed_macros)] // eprintln! in tests: the harness captures stderr

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn umlkit_cmd(args: &[&str], state: &Path) -> Command {
    let mut c = Command::new(testkit::umlkit_bin());
    c.args(args)
        .env("UMLKIT_STATE_DIR", state.join("g"))
        .env("UMLKIT_LAB_STATE", state.join("lab"))
        .stdin(Stdio::null());
    c
}

fn umlkit(args: &[&str], state: &Path) -> Output {
    umlkit_cmd(args, state).output().expect("run umlkit")
}

/// Run with stdout a pipe whose reading end is already closed: every write
/// fails with EPIPE (deterministic, unlike `| head -0`).
fn with_closed_stdout(args: &[&str], state: &Path) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    umlkit_cmd(args, state)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run umlkit")
}

fn lab(dir: &Path, conf: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("lab.conf"), conf).unwrap();
}

#[test]
fn closed_pipe_ends_ps_and_lab_info_quietly() {
    let t = testkit::short_tempdir("ucout");
    let d = t.path().join("lab");
    lab(&d, "pc1[0]=A\npc2[0]=A\n");
    for args in [
        vec!["ps"],
        vec!["ps", "--json"],
        vec!["lab", "info", d.to_str().unwrap()],
        vec!["lab", "graph", d.to_str().unwrap()],
    ] {
        let o = with_closed_stdout(&args, t.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("backtrace") && err.is_empty(),
            "umlkit {args:?} on a closed pipe: {err}"
        );
        assert_eq!(o.status.code(), Some(141), "umlkit {args:?}: {o:?}");
    }
}

/// Regression: errors went out through `eprintln!`, which panics when
/// stderr is a closed pipe (`umlkit ... 2>&1 | head -0`): exit 101 and a
/// panic instead of the command's own failure status.
#[test]
fn closed_stderr_keeps_the_commands_own_exit_status() {
    let t = testkit::short_tempdir("ucerr");
    let missing = t.path().join("no-such.cow");
    for (args, code) in [
        (vec!["cow", "info", missing.to_str().unwrap()], 1),
        (vec!["lab", "info", "/nonexistent/lab"], 1),
        (vec!["exec", "no-such-guest", "--", "true"], 125),
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let o = umlkit_cmd(&args, t.path())
            .stdout(Stdio::null())
            .stderr(writer)
            .output()
            .expect("run umlkit");
        assert_eq!(o.status.code(), Some(code), "umlkit {args:?}: {o:?}");
    }
}

#[test]
fn names_with_terminal_escapes_are_shown_escaped() {
    let t = testkit::short_tempdir("ucesc");
    let d = t.path().join("lab");
    lab(
        &d,
        "LAB_DESCRIPTION=\"x\x1b]0;owned\x07\x1b[31mred\"\npc1[0]=A\x1b[2J\n",
    );
    let o = umlkit(&["lab", "info", d.to_str().unwrap()], t.path());
    assert!(o.status.success(), "{o:?}");
    assert!(
        !o.stdout.contains(&0x1b) && !o.stdout.contains(&0x07),
        "raw control characters printed: {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("A\\x1b[2J"), "{out}");
    assert!(out.contains("x\\x1b]0;owned\\x07\\x1b[31mred"), "{out}");
    // errors naming it are escaped too
    let o = umlkit(
        &[
            "lab",
            "exec",
            "-d",
            d.to_str().unwrap(),
            "pc\x1b[2J",
            "--",
            "true",
        ],
        t.path(),
    );
    assert!(!o.status.success());
    assert!(!o.stderr.contains(&0x1b), "{o:?}");
}

#[test]
fn dot_injection_through_a_domain_name_stays_a_string() {
    let t = testkit::short_tempdir("ucdot");
    let d = t.path().join("lab");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("lab.toml"),
        r#"
[lab]
name = 'x" { evil -- owned } graph "y'

[[machines.pc1.interfaces]]
domain = 'A"]; evil [shape=star]; "m:pc1" -- "evil2'

[[machines.pc1.interfaces]]
domain = "back\\slash\u001b[2J"
"#,
    )
    .unwrap();
    let o = umlkit(&["lab", "graph", d.to_str().unwrap()], t.path());
    assert!(o.status.success(), "{o:?}");
    let dot_text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!dot_text.contains('\x1b'), "{dot_text}");
    let Some(dot) = testkit::which("dot") else {
        eprintln!("graphviz not installed: DOT checked as text only");
        assert!(dot_text.contains(r#"d:A\"]; evil"#), "{dot_text}");
        return;
    };
    // Graphviz parses it, and sees exactly pc1 and the two domains.
    let mut p = Command::new(dot)
        .arg("-Tplain")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    p.stdin
        .take()
        .unwrap()
        .write_all(dot_text.as_bytes())
        .unwrap();
    let r = p.wait_with_output().unwrap();
    let plain = String::from_utf8_lossy(&r.stdout);
    assert!(
        r.status.success(),
        "dot rejected our DOT: {}\n{dot_text}",
        String::from_utf8_lossy(&r.stderr)
    );
    // pc1, the two domains and the two interface labels (graph::dot gives
    // each label a node of its own, joined by invisible edges)
    let nodes: Vec<&str> = plain
        .lines()
        .filter_map(|l| l.strip_prefix("node "))
        .collect();
    let edges = plain.lines().filter(|l| l.starts_with("edge ")).count();
    assert_eq!((nodes.len(), edges), (5, 6), "{plain}\n{dot_text}");
    let ours = |n: &&str| {
        ["\"m:pc1\" ", "\"d:", "\"i:pc1:eth"]
            .iter()
            .any(|p| n.starts_with(p))
    };
    assert!(nodes.iter().all(ours), "{plain}");
    assert_eq!(
        nodes.iter().filter(|n| n.starts_with("\"d:")).count(),
        2,
        "{plain}"
    );
    assert!(!plain.contains("node evil"), "{plain}");
}

#[test]
fn lab_toml_out_of_range_numbers_are_rejected_with_file_and_line() {
    let t = testkit::short_tempdir("uclim");
    let d = t.path().join("lab");
    std::fs::create_dir_all(&d).unwrap();
    for (body, line, needle) in [
        (
            "[machines.pc1]\n\n[[machines.pc1.interfaces]]\ndomain = \"A\"\nindex = 4000000000\n",
            5,
            "interface index 4000000000 too large",
        ),
        (
            // 4 PiB - 1 MiB
            "[machines.pc1]\nmem = 4294967295\n",
            2,
            "mem must be 1 ..= 1048576 MiB (1 TiB), not 4294967295",
        ),
        ("[machines.pc1]\nmem = 0\n", 2, "mem must be"),
    ] {
        std::fs::write(d.join("lab.toml"), body).unwrap();
        let o = umlkit(&["lab", "info", d.to_str().unwrap()], t.path());
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{body}: {e}");
        assert!(
            e.contains("lab.toml") && e.contains(&format!("line {line}")) && e.contains(needle),
            "{body}: {e}"
        );
    }
    // lab.conf: the same limits, with file:line
    std::fs::remove_file(d.join("lab.toml")).unwrap();
    lab(&d, "pc1[0]=A\npc1[mem]=9999999999999999g\n");
    let o = umlkit(&["lab", "info", d.to_str().unwrap()], t.path());
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("lab.conf:2") && e.contains("out of range"),
        "{e}"
    );
}

//! Our mconsole client (multi-call `uml_mconsole`) side by side with the real
//! uml_mconsole against the real kernel: same stdout and exit status.

mod guest_common;

use std::process::Command;

use guest_common::Env;

fn run(bin: &std::path::Path, sock: &str, cmd: &str) -> (String, i32) {
    let mut c = Command::new(bin);
    c.arg(sock)
        .args(cmd.split(' '))
        .env("HOME", "/nonexistent-home");
    let o = c.output().unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

#[test]
fn guest_mconsole_matches_uml_mconsole() {
    let oracle = testkit::require("uml_mconsole", "uml-utilities");
    let env = Env::new("ugm");
    env.start("gm", &[]);
    let ours = env.path().join("uml_mconsole");
    std::os::unix::fs::symlink(testkit::umlkit_bin(), &ours).unwrap();
    let sock = env.state.join("gm/u/gm/mconsole");
    let sock = sock.to_str().unwrap();
    let mut codes = Vec::new();
    for cmd in [
        "version",
        "config ubd0",
        "config con0",
        "remove ubd0",
        "remove ubd9",
        "proc loadavg",
        "sysrq",
        "log hello",
        "xyzzy",
        "stack 999",
        "help",
        "config ubd17",
        "go",
        "mconsole-version",
    ] {
        let (a, ca) = run(&oracle, sock, cmd);
        let (b, cb) = run(&ours, sock, cmd);
        if cmd == "proc loadavg" {
            // the load average moves; compare the shape
            assert_eq!(
                a.lines().count(),
                b.lines().count(),
                "{cmd}: {a:?} vs {b:?}"
            );
            assert!(b.starts_with("OK \n"));
        } else {
            assert_eq!(a, b, "stdout of '{cmd}'");
        }
        assert_eq!(ca, cb, "exit status of '{cmd}'");
        codes.push(cb);
    }
    assert!(codes.contains(&240) && codes.contains(&237) && codes.contains(&1));
    // stop/go: each tool stops and resumes the guest
    for bin in [&oracle, &ours] {
        assert_eq!(run(bin, sock, "stop"), ("OK stopped\n".into(), 0));
        assert_eq!(run(bin, sock, "stop"), ("ERR Already stopped\n".into(), 1));
        assert_eq!(run(bin, sock, "go"), ("OK \n".into(), 0));
    }
    // usage and a missing socket
    let o = Command::new(&ours).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("Usage : uml_mconsole"));
    let (out, code) = run(&ours, "/nonexistent/sock", "version");
    assert_eq!((out.as_str(), code), ("", 1));
    // interactive mode
    let mut c = Command::new(&ours);
    c.arg(sock)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut ch = c.spawn().unwrap();
    use std::io::Write;
    ch.stdin
        .take()
        .unwrap()
        .write_all(b"version\ngo\nquit\n")
        .unwrap();
    let o = ch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(") OK Linux gm "), "{text}");
    assert!(text.contains("ERR Not stopped"), "{text}");
    assert_eq!(o.status.code(), Some(0));
    env.ok(&["halt", "gm"]);
}

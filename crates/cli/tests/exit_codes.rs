//! The exit-code table of docs/exit-codes.md: `exec` returns the command's
//! status (126/127 when it cannot be executed / is not found) and 125 when
//! umlkit itself fails; `lab test` returns 1 for failed checks and 125 when
//! it could not run; usage errors are 2, other failures 1.

mod guest_common;

use guest_common::Env;

fn code(env: &Env, args: &[&str]) -> (Option<i32>, String) {
    let o = env.umlkit(args);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn exit_codes_umlkit_failures_apart_from_results() {
    let env = Env::new("uxc");
    // umlkit's own failure in exec: 125, not the command's 1
    let (c, e) = code(&env, &["exec", "nosuch", "--", "true"]);
    assert_eq!(c, Some(125), "{e}");
    assert!(e.contains("no guest named 'nosuch'"), "{e}");
    // usage: 2
    let (c, _) = code(&env, &["exec", "--bogus"]);
    assert_eq!(c, Some(2));
    // lab exec and lab test on a lab that is not running: 125
    let lab = env.tmp.path().join("lab");
    std::fs::create_dir_all(&lab).unwrap();
    std::fs::write(lab.join("lab.conf"), "pc1[0]=A\n").unwrap();
    std::fs::write(
        lab.join("lab.test.toml"),
        "[[command]]\nmachine=\"pc1\"\nrun=\"true\"\n",
    )
    .unwrap();
    let st = env.tmp.path().join("labst");
    let (l, s) = (lab.to_str().unwrap(), st.to_str().unwrap());
    let (c, e) = code(
        &env,
        &[
            "lab",
            "exec",
            "--state-root",
            s,
            "-d",
            l,
            "pc1",
            "--",
            "true",
        ],
    );
    assert_eq!(c, Some(125), "{e}");
    assert!(e.contains("pc1 is not running"), "{e}");
    let (c, e) = code(&env, &["lab", "test", "--state-root", s, l]);
    assert_eq!(c, Some(125), "{e}");
    assert!(e.contains("is not running"), "{e}");
    // a bad lab.test.toml: could not run, 125
    std::fs::write(lab.join("lab.test.toml"), "[[command]]\nbogus=1\n").unwrap();
    let (c, e) = code(&env, &["lab", "test", "--state-root", s, l]);
    assert_eq!(c, Some(125), "{e}");
    // other commands: 1
    let (c, _) = code(&env, &["halt", "nosuch"]);
    assert_eq!(c, Some(1));
}

#[test]
fn exit_codes_exec_relays_the_command_status() {
    testkit::kernel();
    let env = Env::new("uxe");
    env.start("g", &[]);
    let (c, _) = code(&env, &["exec", "g", "--", "sh", "-c", "exit 1"]);
    assert_eq!(c, Some(1));
    let (c, _) = code(&env, &["exec", "g", "--", "sh", "-c", "exit 42"]);
    assert_eq!(c, Some(42));
    let (c, e) = code(&env, &["exec", "g", "--", "/no/such/program"]);
    assert_eq!(c, Some(127), "{e}");
    let (c, e) = code(&env, &["exec", "g", "--", "/etc/passwd"]);
    assert_eq!(c, Some(126), "{e}");
}

//! Bad input to the guest commands: each a clear error and a non-zero exit.

mod guest_common;

use guest_common::Env;

fn fails(env: &Env, args: &[&str], needle: &str) {
    let o = env.umlkit(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "umlkit {args:?} succeeded");
    assert!(
        err.contains(needle),
        "umlkit {args:?}: expected '{needle}' in: {err}"
    );
}

#[test]
fn guest_bad_input_errors() {
    let env = Env::new("uge");
    let img = env.default_image();
    let img = img.to_str().unwrap();
    fails(
        &env,
        &["exec", "nosuch", "--", "true"],
        "no guest named 'nosuch'",
    );
    fails(&env, &["halt", "nosuch"], "no guest named 'nosuch'");
    fails(
        &env,
        &["run", "-d", "--name", "x", "--disk", "/nonexistent/img"],
        "disk image /nonexistent/img does not exist",
    );
    fails(
        &env,
        &["run", "-d", "--name", "x", "--kernel", "/nonexistent/linux"],
        "UML kernel not found",
    );
    fails(
        &env,
        &["run", "-d", "--name", "x", "--disk", img, "--mem", "16M"],
        "below the minimum",
    );
    fails(
        &env,
        &["run", "-d", "--name", "bad/name", "--disk", img],
        "invalid guest name",
    );
    fails(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "x",
            "--disk",
            img,
            "--net",
            "/nonexistent/ctl",
        ],
        "does not exist",
    );
    fails(
        &env,
        &["image", "create", img, "--size", "64M"],
        "already exists",
    );
    fails(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "x",
            "--disk",
            &format!("{img}:bogus"),
        ],
        "unknown disk option",
    );

    // kernel not on PATH
    let o = env
        .cmd(&["run", "-d", "--name", "x", "--disk", img])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("user-mode-linux"));

    // socket paths longer than sun_path
    let long = env.path().join("a".repeat(90));
    let o = env
        .cmd(&["run", "-d", "--name", "x", "--disk", img])
        .env("UMLKIT_STATE_DIR", &long)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("longer than the 107 bytes"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // duplicate name
    env.start("dup", &["--disk", img]);
    fails(
        &env,
        &["run", "-d", "--name", "dup", "--disk", img],
        "already running",
    );
    fails(&env, &["rm", "dup"], "still running");
    env.ok(&["kill", "dup"]);
    env.ok(&["rm", "dup"]);
}

#[test]
fn guest_dry_run_command_line() {
    let env = Env::new("ugd");
    let img = env.path().join("b.img");
    std::fs::write(&img, b"").unwrap();
    let sw = env.path().join("sw");
    std::fs::create_dir(&sw).unwrap();
    let out = env.ok(&[
        "run",
        "--dry-run",
        "--name",
        "d1",
        "--mem",
        "96M",
        "--disk",
        img.to_str().unwrap(),
        "--net",
        &format!("{},mac=02:00:00:00:00:05", sw.display()),
        "--",
        "umlkit.gw=10.0.0.254",
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    let st = env.state.join("d1");
    for w in [
        "umid=d1".to_string(),
        format!("uml_dir={}/u/", st.display()),
        "mem=96M".into(),
        "con=null".into(),
        "con0=fd:0,fd:1".into(),
        "ssl1=fd:3".into(),
        format!("ubd0={}/ubd0.cow,{}", st.display(), img.display()),
        "root=/dev/ubda".into(),
        format!("eth0=daemon,02:00:00:00:00:05,unix,{}/ctl", sw.display()),
        "umlkit.hostname=d1".into(),
    ] {
        assert!(words.contains(&w.as_str()), "{w} missing in {out}");
    }
    assert_eq!(words.last(), Some(&"umlkit.gw=10.0.0.254"));
    assert!(!st.exists(), "dry run must not create state");
}

/// A kernel that panics before init (here: a disk with no filesystem, so
/// every boot fails the same way) is booted once more, saying why, then
/// the start fails naming the kernel's cause; nothing of it is left.
#[test]
fn guest_kernel_dying_before_init_is_booted_again_once_then_named() {
    let env = Env::new("ugp");
    let img = env.path().join("blank.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    env.guard("p");
    let o = env.umlkit(&[
        "run",
        "-d",
        "--wait",
        "--name",
        "p",
        "--disk",
        &format!("{}:nocow", img.display()),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert_eq!(
        err.matches("its kernel stopped before init").count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("booting it again") && err.contains("No filesystem could mount root"),
        "{err}"
    );
    assert!(guest_common::leftovers(&env, "p").is_empty());
}

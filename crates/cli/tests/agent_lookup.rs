//! The exec agent is found from the executable's path, never from the
//! current directory (regression: the image builder looked for
//! `./target/x86_64-unknown-linux-gnu/release/umlkit-agent`); `$UMLKIT_AGENT`
//! must name a static agent.

use std::process::Command;

#[test]
fn agent_lookup_does_not_depend_on_the_current_directory() {
    let tmp = testkit::short_tempdir("agent");
    let o = Command::new(testkit::umlkit_bin())
        .args(["image", "default"])
        .current_dir("/")
        .env("UMLKIT_CACHE_DIR", tmp.path().join("cache"))
        .env_remove("UMLKIT_AGENT")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(img.starts_with(tmp.path().to_str().unwrap()), "{img}");
}

#[test]
fn a_dynamic_umlkit_agent_is_refused_by_name() {
    let tmp = testkit::short_tempdir("agent");
    let o = Command::new(testkit::umlkit_bin())
        .args(["image", "default"])
        .env("UMLKIT_CACHE_DIR", tmp.path().join("cache"))
        .env("UMLKIT_AGENT", "/bin/sh")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/bin/sh (from $UMLKIT_AGENT) is dynamically linked"),
        "{err}"
    );
}

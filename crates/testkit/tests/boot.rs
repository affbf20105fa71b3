//! The fixture itself works: the real kernel boots a busybox image, runs the
//! init body and powers off with status 0.

use std::time::Duration;

#[test]
fn busybox_image_boots_and_powers_off() {
    let dir = testkit::short_tempdir("tk");
    let root = dir.path().join("root");
    testkit::busybox_rootfs(
        &root,
        &testkit::simple_init("echo TESTKIT-BOOT-OK $(uname -r)"),
    );
    let img = dir.path().join("img");
    testkit::mkfs_ext4(&img, 64, &root);
    let ubd = format!("ubd0={}", img.display());
    let (st, out) = testkit::boot_to_poweroff(
        dir.path(),
        "tkboot",
        &[&ubd, "init=/sbin/init"],
        Duration::from_secs(60),
    );
    assert!(out.contains("TESTKIT-BOOT-OK 6."), "console:\n{out}");
    assert_eq!(st.and_then(|s| s.code()), Some(0), "console:\n{out}");
}

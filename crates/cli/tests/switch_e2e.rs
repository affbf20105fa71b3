//! End to end: two real UML guests on one umlkit switch, one through
//! `eth0=vde,DIR` (the kernel runs vde_plug), one through
//! `eth0=daemon,,unix,DIR/ctl` (UML's uml_switch transport); arping and
//! ping succeed both ways.

mod switch_common;

use std::time::Duration;

use switch_common::*;

fn guest_init(me: u8, peer: u8) -> String {
    testkit::simple_init(&format!(
        "ifconfig lo up\n\
         ifconfig eth0 10.0.0.{me} netmask 255.255.255.0 up\n\
         i=0\n\
         while [ $i -lt 30 ]; do\n\
           if ping -c1 -W1 10.0.0.{peer} >/dev/null 2>&1; then echo PING-OK-{me}; break; fi\n\
           i=$((i+1))\n\
         done\n\
         if arping -c1 -w3 -I eth0 10.0.0.{peer} >/dev/null 2>&1; then echo ARPING-OK-{me}; fi\n\
         ping -c3 -W2 10.0.0.{peer} | grep -q ' 0% packet loss' && echo PING3-OK-{me}\n\
         # done: say so with a second address, then stay up until the\n\
         # peer says so too or is gone (no fixed sleep)\n\
         ifconfig eth0:1 10.0.0.{mydone} netmask 255.255.255.0 up\n\
         i=0\n\
         while [ $i -lt 60 ]; do\n\
           ping -c1 -W1 10.0.0.{peerdone} >/dev/null 2>&1 && break\n\
           ping -c1 -W1 10.0.0.{peer} >/dev/null 2>&1 || break\n\
           i=$((i+1))\n\
         done\n",
        mydone = me + 100,
        peerdone = peer + 100
    ))
}

fn image(dir: &std::path::Path, name: &str, init: &str) -> std::path::PathBuf {
    let root = dir.join(format!("{name}-root"));
    testkit::busybox_rootfs(&root, init);
    let img = dir.join(format!("{name}.img"));
    testkit::mkfs_ext4(&img, 32, &root);
    img
}

#[test]
fn two_uml_guests_ping_through_umlkit_switch() {
    testkit::require("vde_plug", "vdeplug4");
    let sw = Sw::start(&[]);
    let tmp = testkit::short_tempdir("swe");
    let img1 = image(tmp.path(), "g1", &guest_init(1, 2));
    let img2 = image(tmp.path(), "g2", &guest_init(2, 1));
    let uml_dir = tmp.path().join("uml");
    std::fs::create_dir(&uml_dir).unwrap();
    let vde_arg = format!("eth0=vde,{}", sw.dir.display());
    let daemon_arg = format!("eth0=daemon,,unix,{}", sw.dir.join("ctl").display());
    let boot =
        |umid: &'static str, img: std::path::PathBuf, eth: String, uml_dir: std::path::PathBuf| {
            std::thread::spawn(move || {
                let ubd = format!("ubd0={}", img.display());
                testkit::boot_to_poweroff(
                    &uml_dir,
                    umid,
                    &[&ubd, "init=/sbin/init", &eth],
                    Duration::from_secs(120),
                )
            })
        };
    let umid1 = Box::leak(format!("swe1-{}", std::process::id()).into_boxed_str());
    let umid2 = Box::leak(format!("swe2-{}", std::process::id()).into_boxed_str());
    let t1 = boot(umid1, img1, vde_arg, uml_dir.clone());
    let t2 = boot(umid2, img2, daemon_arg, uml_dir.clone());
    let (st1, out1) = t1.join().unwrap();
    let (st2, out2) = t2.join().unwrap();
    let ports = sw.mgmt("port/allprint");
    let both = format!(
        "guest 1 (eth=vde):\n{out1}\n\nguest 2 (eth=daemon):\n{out2}\n\nswitch:\n{ports}\n{}",
        sw.log()
    );
    assert!(out1.contains("vde backend"), "{both}");
    assert!(out2.contains("daemon backend"), "{both}");
    for (me, out) in [(1, &out1), (2, &out2)] {
        assert!(out.contains(&format!("PING-OK-{me}")), "{both}");
        assert!(out.contains(&format!("ARPING-OK-{me}")), "{both}");
        assert!(out.contains(&format!("PING3-OK-{me}")), "{both}");
    }
    assert_eq!(st1.and_then(|s| s.code()), Some(0), "{both}");
    assert_eq!(st2.and_then(|s| s.code()), Some(0), "{both}");
    // both guests' ports (inactive now) carried traffic
    let busy = ports
        .lines()
        .filter(|l| l.starts_with(" IN:  pkts"))
        .filter(|l| {
            l.split_whitespace()
                .nth(2)
                .and_then(|n| n.parse::<u64>().ok())
                > Some(0)
        })
        .count();
    assert!(busy >= 2, "{both}");
}

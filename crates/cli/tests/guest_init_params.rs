//! The default image's init parameters: host name, addresses, modules,
//! hostfs mount and startup script (run before the agent reports ready).

mod guest_common;

use guest_common::Env;

#[test]
fn guest_init_parameters_applied() {
    let env = Env::new("ugp");
    let share = env.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(
        share.join("start.sh"),
        "echo started-$(hostname) > /hostlab/out.txt\nip addr show lo >> /hostlab/out.txt\n\
         [[ -n $BASH_VERSION ]] && echo ran-under-bash >> /hostlab/out.txt\n",
    )
    .unwrap();
    env.start(
        "gp",
        &[
            "--hostfs",
            share.to_str().unwrap(),
            "--",
            "umlkit.hostname=router7",
            "umlkit.ip.lo=10.7.7.7/8",
            "umlkit.modules=8021q",
            "umlkit.startup=/hostlab/start.sh",
        ],
    );
    // the startup script ran (before ready) and wrote through hostfs
    let out = std::fs::read_to_string(share.join("out.txt")).unwrap();
    assert!(out.starts_with("started-router7\n"), "{out}");
    assert!(out.contains("10.7.7.7/8"), "{out}");
    // a shebang-less startup file runs under bash, as Kathara runs it
    assert!(out.contains("ran-under-bash"), "{out}");
    assert_eq!(env.ok(&["exec", "gp", "--", "hostname"]).trim(), "router7");
    let lsmod = env.ok(&["exec", "gp", "--", "lsmod"]);
    assert!(lsmod.contains("8021q"), "{lsmod}");
    let mounts = env.ok(&["exec", "gp", "--", "cat", "/proc/mounts"]);
    assert!(mounts.contains(" /hostlab hostfs "), "{mounts}");
    // bridge loads from the image's module tree too
    env.ok(&["exec", "gp", "--", "modprobe", "bridge"]);
    // reboot: same kernel pid (re-exec in place), agent back, COW kept
    let pid = env.state_json("gp")["pid"].clone();
    env.ok(&[
        "exec",
        "gp",
        "--",
        "sh",
        "-c",
        "echo kept > /root/mark; \
         printf 'auto lo\\niface lo inet static\\n  address 10.8.8.8/8\\n' > /etc/network/interfaces; sync",
    ]);
    env.ok(&["reboot", "gp"]);
    // rcS applied /etc/network/interfaces at boot (ifupdown's syntax, A/LEN)
    let lo = env.ok(&["exec", "gp", "--", "ip", "addr", "show", "lo"]);
    assert!(lo.contains("10.8.8.8/8"), "{lo}");
    assert_eq!(env.state_json("gp")["pid"], pid);
    assert_eq!(env.state_json("gp")["boots"], 2);
    assert_eq!(env.ok(&["exec", "gp", "--", "cat", "/root/mark"]), "kept\n");
    assert_eq!(env.ok(&["exec", "gp", "--", "hostname"]).trim(), "router7");
    env.ok(&["halt", "gp"]);
}

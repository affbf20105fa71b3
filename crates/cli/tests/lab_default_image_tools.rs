//! The default image runs what real labs and the UML workflow run (issue 10
//! items 9-11): shebang-less startup files under bash, the full iproute2,
//! net-tools `ifconfig A/N`, Habets' `arping -0 -B -i`, util-linux
//! `lsblk`/`blkid`, procps `pgrep`, and `/etc/network/interfaces` applied at
//! boot. One lab of two machines on one domain; a guard cleans the lab and
//! kills leftover processes of its state root (by PID) even on failure.

use std::time::Duration;

use testkit::lab::TestLab;

/// `lab exec` that must succeed: its stdout then stderr.
fn exec_ok(lab: &TestLab, machine: &str, cmd: &str) -> String {
    let (code, out) = lab.exec_text(machine, cmd);
    assert_eq!(code, Some(0), "{machine}: `{cmd}` failed: {out}");
    out
}

/// Shebang-less, as Kathará labs write them: bash-only syntax, then the
/// address set with `ifconfig A/N`, an IPv6 setting; the last line proves
/// the file ran to the end.
const A_STARTUP: &str = r#"declare -a addrs=(10.0.0.1/24 10.0.1.1/24)
if [[ ${#addrs[@]} -eq 2 && $BASH_VERSION == 5* ]]; then
  read -r first <<< "${addrs[0]}"
  ifconfig eth0 "$first"
fi
ip link set dev eth0 addrgenmode none
ls /nonexistent &> /dev/null || echo "ran-to-the-end ${addrs[1]}" > /root/startup-done
"#;

const B_INTERFACES: &str = "# Debian style\nauto lo eth0\niface lo inet loopback\n\n\
iface eth0 inet static\n    address 10.0.0.2/24\n    up echo \"$IFACE up\" > /root/if-up\n";

const B_STARTUP: &str = "mkdir -p /var/lib/misc && touch /var/lib/misc/udhcpd.leases\n\
printf 'start 10.0.0.100\\nend 10.0.0.120\\ninterface eth0\\noption subnet 255.255.255.0\\noption router 10.0.0.2\\n' > /etc/udhcpd.conf\n\
udhcpd /etc/udhcpd.conf\n";

/// Median round-trip time in ms of `ping -c N` output lines (`time=X ms`).
/// The smallest round trip of a ping output: a delay qdisc is a floor under
/// every reply, while a busy host only ever adds (the median moves with load).
fn min_rtt(out: &str) -> f64 {
    out.lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .fold(f64::INFINITY, f64::min)
}

fn median_rtt(out: &str) -> f64 {
    let mut v: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(v.len() >= 3, "too few replies: {out}");
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
fn default_image_runs_kathara_startup_and_seed_commands() {
    let lab = TestLab::new(
        "ldit",
        &[
            ("lab.conf", "a[0]=lan\nb[0]=lan\nc[0]=lan\n"),
            ("lab.dep", "c: b\n"),
            ("a.startup", A_STARTUP),
            ("b/etc/network/interfaces", B_INTERFACES),
            // b serves DHCP (busybox udhcpd); c's interfaces file asks for it
            ("b.startup", B_STARTUP),
            (
                "c/etc/network/interfaces",
                "auto eth0\niface eth0 inet dhcp\n",
            ),
            // A `#!/bin/sh` file runs with bash too (busybox sh would run
            // its own applets: `ifconfig A/N` and `ip ... group` fail there).
            (
                "shared.startup",
                "#!/bin/sh\n[[ -n $BASH_VERSION ]] && echo bash > /root/shared-shell\n",
            ),
        ],
    );
    lab.ok_dir("start", &[]);

    // item 9: the whole shebang-less startup ran under bash
    assert_eq!(
        exec_ok(&lab, "a", "cat /root/startup-done"),
        "ran-to-the-end 10.0.1.1/24\n"
    );
    assert_eq!(exec_ok(&lab, "b", "cat /root/shared-shell"), "bash\n");
    // item 10: ifconfig A/N, /etc/network/interfaces applied at boot
    let out = exec_ok(&lab, "a", "ip -4 -o addr show dev eth0");
    assert!(out.contains("inet 10.0.0.1/24"), "{out}");
    let out = exec_ok(&lab, "b", "ip -4 -o addr show dev eth0");
    assert!(out.contains("inet 10.0.0.2/24"), "{out}");
    assert_eq!(exec_ok(&lab, "b", "cat /root/if-up"), "eth0 up\n");
    // `inet dhcp`: udhcpc with the image's event script (address and router;
    // udhcpc goes on in the background if the first tries found no server)
    testkit::wait_until(Duration::from_secs(20), || {
        lab.exec_text("c", "ip route").1.contains("default via")
    });
    let out = exec_ok(&lab, "c", "ip -4 -o addr show dev eth0; ip route");
    assert!(out.contains("inet 10.0.0.1"), "{out}");
    assert!(out.contains("default via 10.0.0.2 dev eth0"), "{out}");
    // ifup records state: a second `ifup -a` is a no-op, ifdown undoes it
    exec_ok(&lab, "b", "ifup -a");
    exec_ok(
        &lab,
        "b",
        "ifdown eth0 && ! ip -4 -o addr show dev eth0 | grep -q 10.0.0.2",
    );
    exec_ok(
        &lab,
        "b",
        "ifup eth0 && ip -4 -o addr show dev eth0 | grep -q 10.0.0.2/24",
    );
    exec_ok(
        &lab,
        "b",
        "/etc/init.d/networking restart && ip -4 -o addr show dev eth0 | grep -q 10.0.0.2/24",
    );

    // item 11: the seed's commands, verbatim
    let out = exec_ok(&lab, "a", "arping -0i eth0 -c 1 10.0.0.2");
    assert!(out.contains("1 packets received"), "{out}");
    // The broadcast probe (source 0.0.0.0, target 255.255.255.255) is
    // accepted and sent; Linux peers never answer it (they reply only for
    // their own addresses), so it reports the probe unanswered.
    let (_, out) = lab.exec_text("a", "arping -0Bi eth0 -c 1 -w 2");
    assert!(!out.contains("invalid option"), "{out}");
    assert!(out.contains("ARPING 255.255.255.255"), "{out}");
    assert!(out.contains("1 packets transmitted"), "{out}");
    let out = exec_ok(&lab, "a", "lsblk");
    assert!(out.contains("ubda") && out.contains("disk"), "{out}");
    let out = exec_ok(&lab, "a", "blkid");
    assert!(
        out.contains("/dev/ubda:") && out.contains("TYPE=\"ext4\""),
        "{out}"
    );
    let out = exec_ok(&lab, "a", "mount");
    assert!(out.contains(" on / type ext4"), "{out}");
    let out = exec_ok(&lab, "a", "pgrep -x umlkit-agent");
    assert!(out.trim().parse::<u32>().is_ok(), "{out}");

    // item 10: full iproute2 (busybox ip rejects all three)
    // (the startup file's addrgenmode line had ipv6 loaded: it is a module)
    let out = exec_ok(&lab, "a", "ip -d link show dev eth0");
    assert!(out.contains("addrgenmode none"), "{out}");
    exec_ok(
        &lab,
        "a",
        "ip link set eth0 group 3 && ip link show group 3 | grep -q eth0",
    );
    exec_ok(
        &lab,
        "a",
        "ip link add br9 type bridge vlan_filtering 1 && bridge vlan show dev br9",
    );
    exec_ok(
        &lab,
        "a",
        "tc qdisc add dev lo root handle 1: htb default 10",
    );
    exec_ok(
        &lab,
        "a",
        "tc qdisc replace dev lo root tbf rate 1mbit burst 32kbit latency 400ms",
    );
    // netem adds its delay to every ping
    let before = median_rtt(&exec_ok(&lab, "a", "ping -c 5 -i 0.2 10.0.0.2"));
    exec_ok(
        &lab,
        "a",
        "modprobe sch_netem; tc qdisc add dev eth0 root netem delay 50ms",
    );
    let out = exec_ok(&lab, "a", "ping -c 5 -i 0.2 10.0.0.2");
    let after = median_rtt(&out);
    // every reply waits the 50 ms (a loaded host inflates `before` too, so
    // the difference of medians is no measure of the qdisc)
    assert!(
        min_rtt(&out) >= 49.0 && after - before < 500.0,
        "median rtt {before} ms -> {after} ms: {out}"
    );

    lab.ok_dir("stop", &[]);
    assert!(lab.leftovers().is_empty(), "stop left processes");
}

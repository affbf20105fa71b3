//! End to end: 802.1Q inside real UML guests (default image, `modprobe
//! 8021q`, `ip link add ... type vlan`) through a `umlkit switch` with a
//! trunk port and an access port.

mod guest_common;
mod switch_common;

use guest_common::Env;
use switch_common::*;

fn exec(env: &Env, guest: &str, sh: &str) -> String {
    let o = env.umlkit(&["exec", guest, "--", "sh", "-c", sh]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Guest `vt` speaks VLAN 10 tagged on eth0.10 and VLAN 0 untagged on
/// eth0 (switch port 1: untagged 0, tagged member of 10); guest `va` is on
/// port 2, an access port of VLAN 10. Tagged traffic crosses (the switch
/// strips and adds the tag), untagged traffic of VLAN 0 does not.
#[test]
fn guest_8021q_interface_reaches_an_access_port_through_the_trunk() {
    let env = Env::new("vle");
    let sw = Sw::start(&[]);
    for (name, port, ip) in [
        ("vt", 1, "10.0.99.1/24"),
        ("va", 2, "10.0.10.2/24,10.0.99.2/24"),
    ] {
        let net = format!("{},port={port}", sw.dir.display());
        let ip = format!("umlkit.ip.eth0={ip}");
        env.start(name, &["--net", &net, "--", &ip]);
    }
    for cmd in ["vlan/create 10", "port/setvlan 2 10", "vlan/addport 10 1"] {
        let r = sw.mgmt(cmd);
        assert!(r.contains("1000 Success"), "{cmd}: {r}");
    }
    let out = exec(
        &env,
        "vt",
        "modprobe 8021q && ip link add link eth0 name eth0.10 type vlan id 10 \
         && ip addr add 10.0.10.1/24 dev eth0.10 && ip link set eth0.10 up && echo VLAN-UP",
    );
    assert!(out.contains("VLAN-UP"), "{out}");
    let out = exec(&env, "vt", "ping -c 3 -W 2 10.0.10.2");
    assert!(out.contains(" 0% packet loss"), "tagged VLAN 10: {out}");
    // the trunk's frames were learned in VLAN 10 on port 1
    let hash = sw.mgmt("hash/print");
    assert!(
        hash.lines()
            .any(|l| l.contains(" VLAN 0010 ") && l.contains("to port: 001")),
        "{hash}"
    );
    // untagged VLAN 0 does not reach the access port of VLAN 10
    let out = exec(&env, "vt", "ping -c 2 -W 1 10.0.99.2");
    assert!(out.contains("100% packet loss"), "untagged crossed: {out}");
}

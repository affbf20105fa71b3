//! Guest-side scripts (pure text generation): the boot steps each machine
//! runs through the guest crate's exec agent once it is up ([`boot_script`]:
//! shared/ and M/ laid over the root, sysctls, addresses, routes, startup
//! scripts, `exec` commands) and the shutdown scripts ([`shutdown_scripts`]).

use crate::model::Dialect;
use crate::plan::{MachinePlan, Plan};

/// Single-quote for sh.
pub fn shq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The boot steps run through the guest crate's exec agent (the default
/// image already set the hostname and mounted the lab folder at /hostlab).
pub fn boot_script(plan: &Plan, m: &MachinePlan) -> String {
    let mut s = String::from("export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root\n");
    s.push_str(&format!("echo {} > /etc/hostname\n", shq(&m.name)));
    s.push_str(&boot_body(plan, m));
    s
}

/// Env, shared/ and M/, sysctls,
/// addresses, routes, startup scripts, exec commands.
fn boot_body(plan: &Plan, m: &MachinePlan) -> String {
    let mut s = String::new();
    let name = &m.name;
    for e in &m.env {
        if let Some((k, v)) = e.split_once('=') {
            s.push_str(&format!("export {k}={}\n", shq(v)));
        }
    }
    match plan.dialect {
        Dialect::Netkit => {
            s.push_str("[ -d /hostlab/shared ] && cp -a /hostlab/shared/. /\n");
        }
        Dialect::Kathara => {
            s.push_str("mkdir -p /shared\n[ -d /hostlab/shared ] && mount --bind /hostlab/shared /shared\n");
        }
    }
    s.push_str(&format!(
        "[ -d /hostlab/{n} ] && cp -a /hostlab/{n}/. /\n",
        n = shq(name)
    ));
    for kv in &m.sysctl {
        // `[` and `echo > /proc/sys/...` are shell builtins: no fork (forks
        // are slow in UML, worst while a whole lab boots). A key this kernel
        // does not have (e.g. IPv6 ones) is skipped, as `sysctl -w` would
        // fail on it too.
        if let Some((k, v)) = kv.split_once('=') {
            let path = shq(&format!("/proc/sys/{}", k.trim().replace('.', "/")));
            s.push_str(&format!(
                "[ -w {path} ] && echo {} > {path}\n",
                shq(v.trim()),
            ));
        }
    }
    for itf in &m.interfaces {
        if !itf.addresses.is_empty() {
            s.push_str(&format!("ip link set {} up\n", itf.name));
        }
        for a in &itf.addresses {
            s.push_str(&format!("ip addr add {} dev {}\n", shq(a), itf.name));
        }
    }
    for r in &m.routes {
        s.push_str(&format!("ip route add {r}\n"));
    }
    s.push_str("cd /\n[ -f /hostlab/shared.startup ] && sh /hostlab/shared.startup\n");
    s.push_str(&format!(
        "[ -f /hostlab/{n}.startup ] && sh /hostlab/{n}.startup\n",
        n = shq(name)
    ));
    for c in &m.exec {
        s.push_str(&format!("sh -c {}\n", shq(c)));
    }
    s
}

/// The shutdown scripts only: `M.shutdown`, then `shared.shutdown` last.
pub fn shutdown_scripts(name: &str) -> String {
    format!(
        "cd /; [ -f /hostlab/{n}.shutdown ] && sh /hostlab/{n}.shutdown; [ -f /hostlab/shared.shutdown ] && sh /hostlab/shared.shutdown; sync; true",
        n = shq(name)
    )
}

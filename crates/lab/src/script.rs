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
    // IPv6 is a module in Debian's linux.uml, loaded for machines with IPv6
    // (`M[ipv6]`, Netkit's default) and when the startup files use it (then
    // the sysctls below keep it disabled on the links unless `M[ipv6]`).
    if m.ipv6 {
        s.push_str("[ -d /proc/sys/net/ipv6 ] || modprobe ipv6\n");
    } else {
        s.push_str(&format!(
            "[ -d /proc/sys/net/ipv6 ] || ! grep -qs -e inet6 -e ipv6 -e addrgenmode -e 'ip -6' /hostlab/shared.startup /hostlab/{n}.startup || modprobe ipv6\n",
            n = shq(name)
        ));
    }
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
    // /etc/network/interfaces (from M/ or the image), as Debian's
    // networking service applies it at boot.
    s.push_str("[ -f /etc/network/interfaces ] && [ -x /sbin/ifup ] && /sbin/ifup -a\n");
    s.push_str(RUNNERS);
    s.push_str("cd /\n[ -f /hostlab/shared.startup ] && run_file /hostlab/shared.startup\n");
    s.push_str(&format!(
        "[ -f /hostlab/{n}.startup ] && run_file /hostlab/{n}.startup\n",
        n = shq(name)
    ));
    for c in &m.exec {
        s.push_str(&format!("run_cmd {}\n", shq(c)));
    }
    s
}

/// Guest shell functions: `run_file F` runs a startup/shutdown file as
/// Kathara does, with bash (a shebang naming sh or bash is bash too, since
/// the image's sh is busybox, whose applets shadow the full tools); a `#!`
/// naming another interpreter that exists is honoured (a missing one, or a
/// CRLF line, falls back to bash); sh when the image has no bash.
/// `run_cmd C` runs a command line with bash, else sh.
const RUNNERS: &str = r#"run_file() {
  set -f; l=; read -r l < "$1"; f=$1
  case "$l" in '#!'*) set -- ${l#??} ;; *) set -- ;; esac
  set +f; i=${1##*/}; [ "$i" = env ] && i=${2##*/}
  case "$i" in
    '') ;;
    sh|bash|dash|ash) if [ "${1##*/}" = env ]; then set --; else shift; fi ;;
    *) if [ -x "$1" ]; then "$@" "$f"; return; fi; set -- ;;
  esac
  if [ -x /bin/bash ]; then /bin/bash "$@" "$f"; else sh "$@" "$f"; fi
}
run_cmd() { if [ -x /bin/bash ]; then /bin/bash -c "$1"; else sh -c "$1"; fi; }
"#;

/// The argv that runs a user's command line in a guest (`lab exec`): bash
/// when the image has it (Kathara's shell, and busybox sh would run its own
/// applets instead of the image's full tools), else sh.
pub fn user_command(cmd: &str) -> [&str; 5] {
    [
        "sh",
        "-c",
        "[ -x /bin/bash ] && exec /bin/bash -c \"$1\"; eval \"$1\"",
        "sh",
        cmd,
    ]
}

/// The shutdown scripts only: `M.shutdown`, then `shared.shutdown` last.
pub fn shutdown_scripts(name: &str) -> String {
    format!(
        "{RUNNERS}cd /; [ -f /hostlab/{n}.shutdown ] && run_file /hostlab/{n}.shutdown; [ -f /hostlab/shared.shutdown ] && run_file /hostlab/shared.shutdown; sync; true",
        n = shq(name)
    )
}

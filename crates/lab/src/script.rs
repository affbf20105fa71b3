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

/// Where the boot steps log in the guest. Startup output goes to Kathará's
/// files: `shared.startup` to /var/log/shared.log, `M.startup` and `exec`
/// commands to /var/log/startup.log, their stderr next to them in `.err`.
pub const BOOT_LOG: &str = "/var/log/umlkit-boot.log";
pub const STARTUP_LOGS: &[&str] = &[
    "/var/log/shared.log",
    "/var/log/shared.err",
    "/var/log/startup.log",
    "/var/log/startup.err",
];

/// Shell functions the startup files and `exec` commands run with (they
/// are sourced, so they win over busybox applets and PATH): UML's network
/// driver refuses a MAC address change on a running interface
/// ("SIOCSIFHWADDR: Device or resource busy"), and umlkit brings the
/// interfaces up before the startup files run. `ip link set ... address`
/// and `ifconfig IF hw ...` are retried with the link briefly down, and the
/// link is brought back up only if it was up.
pub const NET_WRAP: &str = "/etc/umlkit/netwrap.sh";
const NET_WRAP_TEXT: &str = r#"umlkit_down_retry() {
  _uk_d=$1; shift
  "$@" 2>/dev/null && return 0
  _uk_f=
  read -r _uk_f < "/sys/class/net/$_uk_d/flags" 2>/dev/null || { "$@"; return; }
  [ $((_uk_f & 1)) = 1 ] || { "$@"; return; }
  command ip link set dev "$_uk_d" down
  "$@"; _uk_r=$?
  command ip link set dev "$_uk_d" up
  return $_uk_r
}
ip() {
  _uk_w= _uk_d= _uk_n= _uk_m=
  for _uk_a; do
    if [ "$_uk_n" = dev ]; then _uk_d=$_uk_a; _uk_n=done
    elif [ "$_uk_n" = set ] && [ -z "$_uk_d" ]; then
      case $_uk_a in dev) _uk_n=dev ;; *) _uk_d=$_uk_a; _uk_n=first ;; esac
    else
      case $_uk_a in
        -*) ;;
        dev) _uk_n=dev ;;
        set) [ "$_uk_w" = link ] && [ -z "$_uk_n" ] && _uk_n=set ;;
        address) _uk_m=1 ;;
        l|li|lin|link) [ -z "$_uk_w" ] && _uk_w=link ;;
        *) [ -z "$_uk_w" ] && _uk_w=other ;;
      esac
    fi
  done
  if [ "$_uk_w" = link ] && [ -n "$_uk_m" ] && [ -n "$_uk_d" ]; then
    umlkit_down_retry "$_uk_d" command ip "$@"
  else
    command ip "$@"
  fi
}
ifconfig() {
  case " $* " in
    *" hw "*) [ -n "$1" ] && umlkit_down_retry "$1" command ifconfig "$@" ;;
    *) command ifconfig "$@" ;;
  esac
}
"#;

/// Lines of each startup error file the boot steps report (the rest is in
/// the guest: `umlkit lab logs`).
pub const ERROR_LINES: usize = 5;

/// The boot steps run through the guest crate's exec agent (the default
/// image already set the hostname; with host access it mounted the lab
/// folder at /hostlab, else the steps mount the lab disk /dev/ubdb there).
///
/// Every step's status is checked by the steps themselves: the script exits
/// with the number of failed steps (their names on stderr, their output in
/// [`BOOT_LOG`]), so a machine whose steps failed is never ready. Startup
/// files and `exec` commands run with stdin, stdout and stderr on files in
/// the guest, never on the exec pipe, so a background job they leave
/// (`sleep 600 &`) cannot hold the boot open and their output, however
/// large, never reaches the host. Their errors are not fatal (as in
/// Kathará): stdout ends with a summary per `.err` file: `== FILE: N lines`
/// then its first [`ERROR_LINES`] lines.
pub fn boot_script(plan: &Plan, m: &MachinePlan) -> String {
    let mut s = String::from("export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root\n");
    s.push_str(&format!(
        "mkdir -p /var/log /etc/umlkit\ncat > {NET_WRAP} <<'UMLKIT_EOF'\n{NET_WRAP_TEXT}UMLKIT_EOF\n"
    ));
    s.push_str(&format!(
        "mkdir -p /var/log\n: > {BOOT_LOG}\nbad=0\n\
         fail() {{ bad=$((bad+1)); echo \"boot step failed: $*\" >&2; }}\n"
    ));
    s.push_str(&step(
        &format!("echo {} > /etc/hostname", shq(&m.name)),
        "set the hostname",
    ));
    if !plan.host_access {
        s.push_str(&step(
            "mkdir -p /hostlab && mount -t ext4 -o ro /dev/ubdb /hostlab",
            "mount the lab disk at /hostlab",
        ));
    }
    s.push_str(&boot_body(plan, m));
    s.push_str(&format!(
        "for f in /var/log/shared.err /var/log/startup.err; do\n\
         \x20 [ -s \"$f\" ] && {{ echo \"== $f: $(wc -l < \"$f\") lines\"; head -n {ERROR_LINES} \"$f\" | cut -c1-300; }}\n\
         done\n\
         [ $bad -eq 0 ] || {{ echo \"$bad boot steps failed; their output: {BOOT_LOG} in the guest\" >&2; tail -n 5 {BOOT_LOG} | cut -c1-300 >&2; exit 1; }}\n"
    ));
    s
}

/// `cmd` as a checked boot step: its output to [`BOOT_LOG`], a failure
/// counted and named.
fn step(cmd: &str, what: &str) -> String {
    format!(
        "{{ {cmd}; }} </dev/null >>{BOOT_LOG} 2>&1 || fail {}\n",
        shq(what)
    )
}

/// A startup file or command: output to its log files, detached from the
/// exec pipe; a failing exit status is recorded in its `.err` file.
fn startup(cmd: &str, what: &str, log: &str) -> String {
    format!(
        "{cmd} </dev/null >>/var/log/{log}.log 2>>/var/log/{log}.err || \
         echo \"umlkit: {} exited with status $?\" >>/var/log/{log}.err\n",
        what.replace(['"', '\\', '$', '`'], "_")
    )
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
            s.push_str(&format!(
                "if [ -d /hostlab/shared ]; then\n{}fi\n",
                step("cp -a /hostlab/shared/. /", "copy shared/ into /")
            ));
        }
        Dialect::Kathara if plan.host_access => {
            s.push_str(&step(
                "mkdir -p /shared && { [ ! -d /hostlab/shared ] || mount --bind /hostlab/shared /shared; }",
                "share shared/ at /shared",
            ));
        }
        Dialect::Kathara => {
            // A copy: with a lab disk, /shared is no longer shared live.
            s.push_str(&step(
                "mkdir -p /shared && { [ ! -d /hostlab/shared ] || cp -a /hostlab/shared/. /shared; }",
                "copy shared/ to /shared",
            ));
        }
    }
    s.push_str(&format!(
        "if [ -d /hostlab/{n} ]; then\n{}fi\n",
        step(
            &format!("cp -a /hostlab/{n}/. /", n = shq(name)),
            &format!("copy {name}/ into /")
        ),
        n = shq(name)
    ));
    if plan.dialect == Dialect::Kathara {
        // Kathará's fix-up after the copy: daemons read their own files.
        for d in ["frr", "quagga"] {
            s.push_str(&format!(
                "if [ -d /etc/{d} ] && grep -q '^{d}:' /etc/passwd && grep -q '^{d}:' /etc/group; then\n{}fi\n",
                step(
                    &format!("chown -R {d}:{d} /etc/{d} && chmod 640 /etc/{d}/*"),
                    &format!("give /etc/{d} to {d}")
                )
            ));
        }
        s.push_str(&format!(
            "if [ -d /var/www ]; then\n{}fi\n",
            step(
                "for f in /var/www/*; do [ ! -e \"$f\" ] || chmod -R 777 \"$f\" || exit 1; done",
                "open up /var/www"
            )
        ));
    }
    // IPv6 is a module in the lab kernels: load it as the dialect asks
    // (disabled everywhere unless the machine has IPv6), before the sysctls
    // so they apply, and before anything autoloads it enabled.
    s.push_str(&step(
        &format!(
            "[ -d /proc/sys/net/ipv6 ] || modprobe ipv6{}",
            if m.ipv6 { "" } else { " disable_ipv6=1" }
        ),
        "load the ipv6 module",
    ));
    for kv in &m.sysctl {
        // `[` and `echo > /proc/sys/...` are shell builtins: no fork (forks
        // are slow in UML, worst while a whole lab boots). A key this kernel
        // does not have (e.g. IPv6 ones) is skipped, as `sysctl -w` would
        // fail on it too.
        if let Some((k, v)) = kv.split_once('=') {
            let path = shq(&format!("/proc/sys/{}", k.trim().replace('.', "/")));
            s.push_str(&format!(
                "if [ -w {path} ]; then {}fi\n",
                step(
                    &format!("echo {} > {path}", shq(v.trim())),
                    &format!("sysctl {}", kv.trim())
                )
            ));
        }
    }
    for itf in &m.interfaces {
        if !itf.addresses.is_empty() {
            s.push_str(&step(
                &format!("ip link set {} up", itf.name),
                &format!("set {} up", itf.name),
            ));
        }
        for a in &itf.addresses {
            s.push_str(&step(
                &format!("ip addr add {} dev {}", shq(a), itf.name),
                &format!("address {a} on {}", itf.name),
            ));
        }
    }
    for r in &m.routes {
        s.push_str(&step(&format!("ip route add {r}"), &format!("route {r}")));
    }
    // /etc/network/interfaces (from M/ or the image), as Debian's
    // networking service applies it at boot (its output, and any DHCP client
    // it leaves running, never on the exec pipe).
    s.push_str(
        "[ -f /etc/network/interfaces ] && [ -x /sbin/ifup ] && \
         /sbin/ifup -a </dev/null >>/var/log/umlkit-boot.log 2>&1\n",
    );
    s.push_str(RUNNERS);
    s.push_str("cd /\n");
    s.push_str(&format!(
        "if [ -f /hostlab/shared.startup ]; then\n{}fi\n",
        startup(
            "run_file /hostlab/shared.startup",
            "shared.startup",
            "shared"
        )
    ));
    s.push_str(&format!(
        "if [ -f /hostlab/{n}.startup ]; then\n{}fi\n",
        startup(
            &format!("run_file /hostlab/{n}.startup", n = shq(name)),
            &format!("{name}.startup"),
            "startup"
        ),
        n = shq(name)
    ));
    for c in &m.exec {
        s.push_str(&startup(
            &format!("run_cmd {}", shq(c)),
            &format!("exec command {c}"),
            "startup",
        ));
    }
    s
}

/// Guest shell functions: `run_file F` runs a startup/shutdown file as
/// Kathara does, with bash (a shebang naming sh or bash is bash too, since
/// the image's sh is busybox, whose applets shadow the full tools); a `#!`
/// naming another interpreter that exists is honoured (a missing one, or a
/// CRLF line, falls back to bash); sh when the image has no bash.
/// `run_cmd C` runs a command line with bash, else sh. Both load the
/// [`NET_WRAP`] functions first (bash through `BASH_ENV`, so bash scripts
/// the startup runs get them too).
const RUNNERS: &str = r#"run_file() {
  set -f; l=; read -r l < "$1"; f=$1
  case "$l" in '#!'*) set -- ${l#??} ;; *) set -- ;; esac
  set +f; i=${1##*/}; [ "$i" = env ] && i=${2##*/}
  case "$i" in
    '') ;;
    sh|bash|dash|ash) if [ "${1##*/}" = env ]; then set --; else shift; fi ;;
    *) if [ -x "$1" ]; then "$@" "$f"; return; fi; set -- ;;
  esac
  if [ -x /bin/bash ]; then BASH_ENV=/etc/umlkit/netwrap.sh /bin/bash "$@" "$f"
  else sh -c '[ ! -f /etc/umlkit/netwrap.sh ] || . /etc/umlkit/netwrap.sh; . "$0"' "$f"; fi
}
run_cmd() {
  if [ -x /bin/bash ]; then BASH_ENV=/etc/umlkit/netwrap.sh /bin/bash -c "$1"
  else sh -c "[ ! -f /etc/umlkit/netwrap.sh ] || . /etc/umlkit/netwrap.sh; $1"; fi
}
"#;

/// The argv that runs a user's command line in a guest (`lab exec`): bash
/// when the image has it (Kathara's shell, and busybox sh would run its own
/// applets instead of the image's full tools), else sh.
pub fn user_command(cmd: &str) -> [&str; 5] {
    [
        "sh",
        "-c",
        "[ -x /bin/bash ] && BASH_ENV=/etc/umlkit/netwrap.sh exec /bin/bash -c \"$1\"; eval \"$1\"",
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

#[cfg(test)]
mod runner_tests {
    use super::*;

    #[test]
    fn runners_load_the_net_wrapper_they_name() {
        assert!(RUNNERS.contains(&format!("BASH_ENV={NET_WRAP} ")));
        assert!(user_command("x")[2].contains(&format!("BASH_ENV={NET_WRAP} ")));
    }
}

//! The example labs on the Debian lab image (issue 9), end to end through
//! the CLI with the real kernel: `examples/labs/frr-ospf` (four FRR routers
//! in a ring, frr.conf and per-daemon files), `quagga-ospf` (the same ring
//! from /etc/quagga files, started with `/etc/init.d/quagga` and `systemctl
//! start quagga`) and `dns-web` (BIND answers `dig`, Apache serves `curl`,
//! both from another machine). Each lab is copied to a temp dir and run with
//! its own state root; a guard cleans it (and kills leftovers by PID) even
//! when a test fails. Convergence is a condition waited on with a bounded
//! timeout, checked from inside every router.
//!
//! The image is built once per test run into the shared test cache
//! (`guest_common::cache_dir()`, as image_e2e.rs), so a cached image is
//! reused. Needs root (CI) and the Debian archive for the first build.
#![allow(clippy::disallowed_macros)] // eprintln! in tests: the harness captures stderr

mod guest_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long routing may take to converge once `lab start` returned.
const CONVERGE: Duration = Duration::from_secs(120);

fn umlkit() -> Command {
    let mut c = Command::new(testkit::umlkit_bin());
    c.env("UMLKIT_CACHE_DIR", guest_common::cache_dir())
        .env_remove("UMLKIT_KERNEL")
        .stdin(Stdio::null());
    c
}

/// Build (or find in the cache) the lab image once for the whole binary, so
/// that parallel tests do not each build it from their `lab start`.
fn lab_image() {
    static IMG: OnceLock<()> = OnceLock::new();
    IMG.get_or_init(|| {
        let t = Instant::now();
        let o = umlkit()
            .args(["image", "build", "kathara/frr"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "image build failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!(
            "image build (or cache hit): {:.1}s",
            t.elapsed().as_secs_f64()
        );
    });
}

fn pids_mentioning(needle: &str) -> Vec<u32> {
    testkit::pids_mentioning(needle)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// An example lab copied to a temp dir, with its own state root; dropping it
/// cleans the lab and kills anything left of it (by PID).
struct ExampleLab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    state: PathBuf,
}

impl ExampleLab {
    fn new(example: &str) -> ExampleLab {
        lab_image();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/labs")
            .join(example);
        let tmp = testkit::short_tempdir("labimg");
        let dir = tmp.path().join(example);
        copy_tree(&src, &dir);
        let state = tmp.path().join("st");
        ExampleLab {
            _tmp: tmp,
            dir,
            state,
        }
    }

    fn run(&self, sub: &str, rest: &[&str]) -> Output {
        umlkit()
            .arg("lab")
            .arg(sub)
            .arg("--state-root")
            .arg(&self.state)
            .args(rest)
            .output()
            .expect("run umlkit")
    }

    fn ok(&self, sub: &str) -> String {
        let o = self.run(sub, &[self.dir.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "umlkit lab {sub} failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `lab exec`: (exit code, stdout + stderr).
    fn exec(&self, machine: &str, cmd: &str) -> (i32, String) {
        let o = self.run(
            "exec",
            &["-d", self.dir.to_str().unwrap(), machine, "--", cmd],
        );
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    fn leftovers(&self) -> Vec<u32> {
        pids_mentioning(self.state.to_str().unwrap())
    }
}

impl Drop for ExampleLab {
    fn drop(&mut self) {
        let _ = self.run("clean", &[self.dir.to_str().unwrap()]);
        for pid in self.leftovers() {
            let _ = umlkit_sys::process::kill(pid, umlkit_sys::process::SIGKILL);
        }
    }
}

/// The IPv4 prefixes of every address configured on `machines` (from
/// inside: `ip -o -4 addr`), as `a.b.c.d/len` network strings.
fn lab_prefixes(lab: &ExampleLab, machines: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    for m in machines {
        let (code, out) = lab.exec(m, "ip -o -4 addr show");
        assert_eq!(code, 0, "{m}: {out}");
        for w in out.split_whitespace().collect::<Vec<_>>().windows(2) {
            if w[0] != "inet" || w[1].starts_with("127.") {
                continue;
            }
            let (ip, len) = w[1].split_once('/').unwrap();
            let len: u32 = len.parse().unwrap();
            let ip: std::net::Ipv4Addr = ip.parse().unwrap();
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let net = std::net::Ipv4Addr::from(u32::from(ip) & mask);
            let p = format!("{net}/{len}");
            if !v.contains(&p) {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

/// Prefixes of `want` that `machine`'s main routing table has no route for.
fn missing_routes(lab: &ExampleLab, machine: &str, want: &[String]) -> Vec<String> {
    let (code, out) = lab.exec(machine, "ip -4 route show");
    if code != 0 {
        return want.to_vec();
    }
    let have: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    want.iter()
        .filter(|p| !have.contains(&p.as_str()))
        .cloned()
        .collect()
}

/// Start an OSPF ring example, wait (bounded) until every router has a
/// route to every prefix of the lab, then run its `lab test`.
fn ospf_ring_converges(example: &str) -> ExampleLab {
    let lab = ExampleLab::new(example);
    let t = Instant::now();
    let o = lab.run("start", &[lab.dir.to_str().unwrap()]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "lab start: {out}");
    eprintln!("{example}: lab start {:.1}s", t.elapsed().as_secs_f64());
    // no startup file wrote to stderr (daemons started cleanly)
    assert!(!out.contains("startup errors"), "{out}");
    let routers = ["r1", "r2", "r3", "r4"];
    let prefixes = lab_prefixes(&lab, &routers);
    // 4 ring links + 4 stub LANs
    assert_eq!(prefixes.len(), 8, "{prefixes:?}");
    let t = Instant::now();
    for r in routers {
        let mut last = Vec::new();
        let done = testkit::wait_until(CONVERGE.saturating_sub(t.elapsed()), || {
            last = missing_routes(&lab, r, &prefixes);
            last.is_empty()
        });
        assert!(
            done,
            "{example}: {r} has no route to {last:?} after {:?}:\n{}",
            t.elapsed(),
            lab.exec(
                r,
                "ip -4 route; vtysh -c 'show ip ospf neighbor'; systemctl status frr"
            )
            .1
        );
    }
    eprintln!(
        "{example}: converged {:.1}s after start",
        t.elapsed().as_secs_f64()
    );
    // the lab's own checks: OSPF routes, full adjacencies, reachability
    let o = lab.run("test", &[lab.dir.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{report}");
    assert!(report.contains(" 0 failed"), "{report}");
    lab
}

#[test]
fn frr_ospf_ring_of_four_converges_with_frr_conf_and_per_daemon_files() {
    let lab = ospf_ring_converges("frr-ospf");
    // r1 runs from the integrated frr.conf, r3 from ospfd.conf
    let (_, r1) = lab.exec("r1", "vtysh -c 'show running-config'");
    assert!(r1.contains("ospf router-id 1.1.1.1"), "{r1}");
    let (_, r3) = lab.exec(
        "r3",
        "test ! -e /etc/frr/frr.conf && vtysh -c 'show ip ospf'",
    );
    assert!(r3.contains("Router ID: 3.3.3.3"), "{r3}");
    // a packet crosses the ring: r1's LAN to r3's LAN
    let (code, out) = lab.exec("r1", "ping -c 1 -W 2 -I 10.1.1.1 10.1.3.1");
    assert_eq!(code, 0, "{out}");
    lab.ok("stop");
    assert!(lab.leftovers().is_empty(), "stop left processes");
}

#[test]
fn quagga_ospf_ring_of_four_converges_from_etc_quagga() {
    let lab = ospf_ring_converges("quagga-ospf");
    for r in ["r1", "r4"] {
        let (code, out) = lab.exec(
            r,
            "cat /var/log/umlkit-quagga.log; systemctl is-active quagga; ls -l /var/log/quagga/ospfd.log",
        );
        assert_eq!(code, 0, "{r}: {out}");
        assert!(
            out.contains("/etc/quagga/ospfd.conf -> /etc/frr/ospfd.conf")
                && out.contains(" frr frr "),
            "{r}: {out}"
        );
    }
    lab.ok("stop");
    assert!(lab.leftovers().is_empty(), "stop left processes");
}

#[test]
fn dns_web_lab_answers_dig_and_serves_curl_to_the_client() {
    let lab = ExampleLab::new("dns-web");
    lab.ok("start");
    // named was started by the startup file; wait (bounded) for its answer
    let mut last = String::new();
    let answered = testkit::wait_until(Duration::from_secs(60), || {
        let (code, out) = lab.exec("client", "dig +short +time=1 +tries=1 www.lab.test");
        last = out;
        code == 0 && last.trim() == "10.0.0.80"
    });
    assert!(
        answered,
        "no answer from named: {last}\n{}",
        lab.exec("dns", "systemctl status named; cat /var/log/startup.err")
            .1
    );
    // the zone came from the machine folder's /etc/bind; the 9.11 option
    // in its named.conf.options was dropped with a warning
    let (code, out) = lab.exec("client", "dig +short @10.0.0.53 SOA lab.test");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2026113001"), "{out}");
    let (_, out) = lab.exec("dns", "cat /var/log/umlkit-named-compat.log");
    assert!(out.contains("dropped 'dnssec-enable'"), "{out}");
    // Apache on web serves the page to curl on client, by name
    let (code, page) = lab.exec("client", "curl -sf --max-time 5 http://www.lab.test/");
    assert_eq!(code, 0, "{page}");
    assert!(page.contains("Hello from web.lab.test"), "{page}");
    let o = lab.run("test", &[lab.dir.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && report.contains(" 0 failed"),
        "{report}"
    );
    lab.ok("stop");
    assert!(lab.leftovers().is_empty(), "stop left processes");
}

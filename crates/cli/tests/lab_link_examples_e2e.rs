//! The worked examples of docs/links.md, run end to end with the real
//! kernel (issue 12): `examples/labs/link-loss` (TCP under 2 % loss),
//! `link-bottleneck` (a 10 Mbit/s bottleneck on one interface) and
//! `link-ospf-capture` (an OSPF exchange between two FRR routers captured
//! from `lab start` to `lab stop`, on the Debian lab image). Each example is
//! copied to a temp dir with its own state root; a guard cleans it (and
//! kills leftovers by PID) even when a test fails.

mod guest_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Bytes sent in the TCP examples (2000 KiB, as docs/links.md).
const KB: u64 = 2000;

fn umlkit() -> Command {
    let mut c = Command::new(testkit::umlkit_bin());
    c.env("UMLKIT_CACHE_DIR", guest_common::cache_dir())
        .env_remove("UMLKIT_KERNEL")
        .stdin(Stdio::null());
    c
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

fn pids_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if cmd.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            v.push(pid);
        }
    }
    v
}

/// An example lab copied to a temp dir, with its own state root.
struct ExampleLab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    state: PathBuf,
}

impl ExampleLab {
    fn start(example: &str) -> ExampleLab {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/labs")
            .join(example);
        let tmp = testkit::short_tempdir("lablx");
        let dir = tmp.path().join(example);
        copy_tree(&src, &dir);
        let lab = ExampleLab {
            state: tmp.path().join("st"),
            _tmp: tmp,
            dir,
        };
        let o = lab.run(&["start", lab.d()]);
        assert!(
            o.status.success(),
            "lab start {example}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        lab
    }

    fn d(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = umlkit();
        c.arg("lab")
            .arg(args[0])
            .arg("--state-root")
            .arg(&self.state)
            .args(&args[1..]);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run umlkit")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "umlkit lab {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn exec(&self, machine: &str, sh: &str) -> String {
        self.ok(&["exec", "-d", self.d(), machine, "--", sh])
    }

    /// Push `KB` KiB from client to server (10.0.0.2) over TCP; returns the
    /// seconds from the connection to the last byte received (timed in the
    /// server), after checking every byte arrived.
    fn transfer(&self) -> f64 {
        // the receiver counts what it reads until the sender closes
        let rx = self.cmd(&[
            "exec",
            "-d",
            self.d(),
            "server",
            "--",
            "nc -l -p 5001 -e sh -c 'cut -d\" \" -f1 /proc/uptime > /tmp/t; wc -c > /tmp/rx; \
             cut -d\" \" -f1 /proc/uptime >> /tmp/t'; cat /tmp/rx /tmp/t",
        ]);
        let mut rx = testkit::ProcGuard::spawn("receiver", {
            let mut rx = rx;
            rx.stdout(Stdio::piped());
            rx
        });
        assert!(testkit::wait_until(Duration::from_secs(20), || self
            .exec(
                "server",
                "netstat -ltn 2>/dev/null | grep -q ':5001' && echo UP || true"
            )
            .contains("UP")));
        let out = self.exec(
            "client",
            &format!("dd if=/dev/zero bs=1k count={KB} 2>/dev/null | nc 10.0.0.2 5001; echo SENT"),
        );
        assert!(out.contains("SENT"), "{out}");
        assert!(
            rx.wait_timeout(Duration::from_secs(60)).is_some(),
            "the receiver did not finish"
        );
        let mut got = String::new();
        use std::io::Read;
        rx.child_mut()
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        let mut l = got.split_whitespace();
        assert_eq!(l.next(), Some((KB * 1024).to_string().as_str()), "{got}");
        // /proc/uptime at the connection and after the last byte (10 ms steps)
        let mut t = l.map(|t| t.parse::<f64>().expect(&got));
        let (t0, t1) = (t.next().expect(&got), t.next().expect(&got));
        t1 - t0
    }
}

impl Drop for ExampleLab {
    fn drop(&mut self) {
        let _ = self.run(&["clean", self.d()]);
        for pid in pids_mentioning(self.state.to_str().unwrap()) {
            let _ = umlkit_sys::process::kill(pid, umlkit_sys::process::SIGKILL);
        }
    }
}

/// Sum of a counter (`lost`, `offered`, ...) over every port and direction
/// of `umlkit lab link DOMAIN`.
fn counter(show: &str, name: &str) -> u64 {
    show.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| *x == name)?;
            w.get(i + 1)?.parse::<u64>().ok()
        })
        .sum()
}

/// Worked example (a): with 2 % loss on the domain, TCP still delivers
/// every byte, and the switch counts the frames it dropped.
#[test]
fn link_loss_example_tcp_delivers_everything_under_2pct_loss() {
    let lab = ExampleLab::start("link-loss");
    lab.transfer();
    let show = lab.ok(&["link", "-d", lab.d(), "lan"]);
    assert!(show.contains("out loss=2%"), "{show}");
    let (offered, lost) = (counter(&show, "offered"), counter(&show, "lost"));
    // ~1500 data frames and their ACKs: 2 % of them is ~40; none lost
    // would be a probability below 1e-20
    assert!(offered > 1000, "{show}");
    let share = lost as f64 / offered as f64;
    assert!(lost > 0 && share < 0.06, "lost {lost} of {offered}: {show}");
}

/// Worked example (b): the client's interface sends at 10 Mbit/s, so
/// 2000 KiB takes at least 1.64 s, and every frame is queued.
#[test]
fn link_bottleneck_example_bounds_a_transfer() {
    let lab = ExampleLab::start("link-bottleneck");
    let st = lab.ok(&["status", lab.d()]);
    assert!(st.contains("port 1: in rate=10mbit,queue=64k"), "{st}");
    let secs = lab.transfer();
    // 2000 KiB at 10 Mbit/s = 1.64 s of payload (plus headers)
    assert!((1.6..6.0).contains(&secs), "{secs} s");
    // every data frame went through the client port's rate queue
    let show = lab.ok(&["link", "-d", lab.d(), "client:eth0"]);
    assert!(show.contains("in  rate=10mbit,queue=64k"), "{show}");
    assert!(counter(&show, "delayed") > 1000, "{show}");
}

/// Worked example (c): the domain's capture runs from `lab start`, so it
/// holds the whole OSPF exchange (hellos, database description, LS
/// request/update/ack) of both routers, named by interface; `lab stop` ends
/// it with a complete file tshark reads.
#[test]
fn link_ospf_capture_example_records_the_exchange_from_start() {
    let lab = ExampleLab::start("link-ospf-capture");
    let list = lab.ok(&["capture", "-d", lab.d(), "--list"]);
    assert!(list.contains("core") && list.contains("running"), "{list}");
    let mut last = String::new();
    let full = testkit::wait_until(Duration::from_secs(120), || {
        last = lab.exec("r1", "vtysh -c 'show ip ospf neighbor'; ip -4 route");
        last.contains("Full")
            && last.contains("10.1.2.0/24")
            && lab.exec("r2", "ip -4 route").contains("10.1.1.0/24")
    });
    assert!(full, "no adjacency/route: {last}");
    let report = lab.ok(&["test", lab.d()]);
    assert!(report.contains(" 0 failed"), "{report}");
    let js: serde_json::Value =
        serde_json::from_str(&lab.ok(&["status", "--json", lab.d()])).unwrap();
    let file: PathBuf = js["captures"][0]["file"].as_str().unwrap().into();
    lab.ok(&["stop", lab.d()]);
    let o = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(["-Y", "ospf", "-T", "fields"])
        .args(["-e", "frame.interface_name", "-e", "ospf.msg"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let seen: std::collections::BTreeSet<&str> = text.lines().collect();
    // 1 hello, 2 database description, 3 LS request, 4 LS update, 5 LS ack
    for want in [
        "r1:eth0\t1",
        "r2:eth0\t1",
        "r1:eth0\t2",
        "r2:eth0\t2",
        "r1:eth0\t4",
    ] {
        assert!(seen.contains(want), "{want}: {text}");
    }
}

//! `umlkit bench net`: guest-to-guest TCP throughput and ping RTT over six
//! paths in one run (vector guests at MTU 1500 and with jumbo frames (MTU
//! 9000, `umlkit switch --mtu 9000`), daemon and vde guests on `umlkit switch`, vde
//! guests on the C `vde_switch`, daemon guests on the C `uml_switch`), the
//! switch's CPU per forwarded frame, and VXLAN frames per second between two
//! network namespaces (two umlkit switches next to two Linux bridges with
//! vxlan devices).
//!
//! Throughput is `tcpblast` (shared/bench, built static with gcc into a
//! temporary folder shared into the guests by hostfs), rounds interleaved
//! over the paths; RTT is from the per-packet times of the guest's ping.
//! CPU per frame is reported for the switch, the vde_plug helpers and the
//! guests' own host processes, with how many CPUs the guests kept busy.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use umlkit_sys::file::which;

use crate::{io_err, Error, Result};

/// Parameters of the network benchmark.
#[derive(Debug, Clone)]
pub struct NetBench {
    /// TCP throughput runs per path (median and spread reported).
    pub runs: usize,
    /// MiB per TCP run.
    pub mb: u64,
    /// Pings per path (10 ms apart).
    pub pings: u32,
    /// Guest memory in MiB.
    pub mem_mb: u32,
    /// Frames per VXLAN blast.
    pub vxlan_frames: u64,
    /// Skip the VXLAN part.
    pub no_vxlan: bool,
    /// tcpblast source (.c) or a static executable (None:
    /// $UMLKIT_TCPBLAST, else shared/bench/tcpblast.c beside the checkout).
    pub tcpblast: Option<PathBuf>,
    /// vdeblast source (.c) or executable (as `bench switch`).
    pub vdeblast: Option<PathBuf>,
    /// The umlkit executable (switches, guest supervisors).
    pub umlkit: PathBuf,
}

/// The measurements of one path.
#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    /// Short name, e.g. `vector/umlkit`.
    pub path: String,
    /// TCP throughput of each run, Mbit/s.
    pub mbps: Vec<f64>,
    pub mbps_median: f64,
    pub mbps_min: f64,
    pub mbps_max: f64,
    /// Median throughput over vde_switch's and uml_switch's.
    pub x_vde_switch: f64,
    pub x_uml_switch: f64,
    pub rtt_p50_ms: f64,
    pub rtt_p99_ms: f64,
    pub pings_received: usize,
    /// Frames the switch delivered during the TCP runs (both guests' eth0
    /// rx packets).
    pub frames: u64,
    /// Switch process CPU (utime+stime) per delivered frame, µs.
    pub switch_us_per_frame: f64,
    /// The vde_plug helpers' CPU per delivered frame (vde transports), µs.
    pub helpers_us_per_frame: Option<f64>,
    /// The two guests' host processes' CPU per delivered frame, µs.
    pub guests_us_per_frame: f64,
    /// CPUs the two guests' host processes kept busy during the TCP runs
    /// (CPU seconds / wall seconds; the machine has what nproc says).
    pub guests_cpus: f64,
}

/// VXLAN frames per second between two namespaces.
#[derive(Debug, Clone, Serialize)]
pub struct VxlanLine {
    pub path: String,
    pub rx_kpps: Vec<f64>,
    pub rx_kpps_median: f64,
    pub loss_pct_median: f64,
}

/// The whole report (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct NetReport {
    pub runs: usize,
    pub mb: u64,
    pub pings: u32,
    pub loadavg_before: String,
    pub loadavg_after: String,
    pub paths: Vec<PathResult>,
    pub vxlan: Vec<VxlanLine>,
    /// Why the VXLAN part did not run, if it did not.
    pub vxlan_skipped: Option<String>,
}

fn bail(msg: impl Into<String>) -> Error {
    Error::Failed(msg.into())
}

fn ctx(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Run { what, source }
}

/// The six paths: (name, switch kind, transport suffix of `--net`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SwitchKind {
    Umlkit,
    /// `umlkit switch --mtu 9000`: jumbo frames for vector guests.
    UmlkitJumbo,
    VdeSwitch,
    UmlSwitch,
}

const PATHS: [(&str, SwitchKind, &str); 6] = [
    ("vector/umlkit", SwitchKind::Umlkit, ",vector"),
    (
        "vector-mtu9000/umlkit",
        SwitchKind::UmlkitJumbo,
        ",vector,mtu=9000",
    ),
    ("daemon/umlkit", SwitchKind::Umlkit, ""),
    ("vde/umlkit", SwitchKind::Umlkit, ",vde"),
    ("vde/vde_switch", SwitchKind::VdeSwitch, ",vde"),
    ("daemon/uml_switch", SwitchKind::UmlSwitch, ""),
];

/// A process we started, killed (by pid) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime+stime of a process in seconds (0 when gone).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// The parent pid, process group and command name of a process.
fn stat_of(pid: u32) -> Option<(u32, u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, after) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let mut f = after.split_whitespace().skip(1);
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((ppid, pgrp, comm))
}

/// CPU seconds of the `vde_plug` helpers whose parent is one of
/// `kernels`, and of the guests' own host processes (every process in a
/// kernel's process group but the helpers: UML's clone()d helpers and
/// userspace processes each count once, by their own /proc/PID/stat).
fn guest_side_cpu(kernels: &[u32]) -> (f64, f64) {
    let (mut helpers, mut guests) = (0.0, 0.0);
    for p in umlkit_sys::process::all_pids() {
        let Some((ppid, pgrp, comm)) = stat_of(p) else {
            continue;
        };
        if comm == "vde_plug" && kernels.contains(&ppid) {
            helpers += cpu_secs(p);
        } else if kernels.contains(&pgrp) {
            guests += cpu_secs(p);
        }
    }
    (helpers, guests)
}

fn wait_for(p: &Path, what: &str) -> Result<()> {
    let t = Instant::now();
    while !p.exists() {
        if t.elapsed() > Duration::from_secs(15) {
            return Err(bail(format!("{what}: {} did not appear", p.display())));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn spawn(c: &mut Command, what: &str) -> Result<Proc> {
    c.stdout(Stdio::null()).stderr(Stdio::null());
    Ok(Proc(
        c.spawn().map_err(ctx(format!("cannot start {what}")))?,
    ))
}

/// Start the switch of a path in `dir`: the process and the `--net` base.
fn start_switch(kind: SwitchKind, umlkit: &Path, dir: &Path) -> Result<(Proc, PathBuf)> {
    let p = match kind {
        SwitchKind::Umlkit | SwitchKind::UmlkitJumbo => {
            let mut c = Command::new(umlkit);
            c.arg("switch").arg("-s").arg(dir).arg("--vector");
            if kind == SwitchKind::UmlkitJumbo {
                c.args(["--mtu", "9000"]);
            }
            let p = spawn(c.stdin(Stdio::null()), "umlkit switch")?;
            wait_for(&dir.join("vec"), "umlkit switch")?;
            (p, dir.to_path_buf())
        }
        SwitchKind::VdeSwitch => {
            // vde_switch reads its console on stdin: keep it open
            let p = spawn(
                Command::new("vde_switch")
                    .arg("-s")
                    .arg(dir)
                    .stdin(Stdio::piped()),
                "vde_switch (apt-get install vde2)",
            )?;
            (p, dir.to_path_buf())
        }
        SwitchKind::UmlSwitch => {
            std::fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
            let ctl = dir.join("uml.ctl");
            let p = spawn(
                Command::new("uml_switch")
                    .arg("-unix")
                    .arg(&ctl)
                    .stdin(Stdio::null()),
                "uml_switch (apt-get install uml-utilities)",
            )?;
            (p, ctl)
        }
    };
    let ctl = if kind == SwitchKind::UmlSwitch {
        p.1.clone()
    } else {
        dir.join("ctl")
    };
    wait_for(&ctl, "switch")?;
    Ok(p)
}

/// `shared/bench/NAME` in the nearest folder above the checkout that has
/// it (the project's shared/ folder sits beside the repository, or beside
/// the folder of its worktrees).
pub(crate) fn shared_bench(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|d| d.join("shared/bench").join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| manifest.join("../../../shared/bench").join(name))
}

/// Build a C tool from source into `out` (or take a built executable).
pub(crate) fn build_c(
    src: Option<PathBuf>,
    env: &str,
    default: &str,
    out: &Path,
    args: &[&str],
    libs: &[&str],
) -> Result<PathBuf> {
    let src = src
        .or_else(|| std::env::var_os(env).map(PathBuf::from))
        .unwrap_or_else(|| shared_bench(default));
    if !src.exists() {
        return Err(bail(format!(
            "{default} not found at {} (give its path, or set ${env})",
            src.display()
        )));
    }
    if src.extension().is_none_or(|e| e != "c") {
        return Ok(src);
    }
    if which("gcc").is_none() {
        return Err(bail(format!(
            "gcc is needed to build {} (apt-get install gcc)",
            src.display()
        )));
    }
    let exe = out.join(default.trim_end_matches(".c"));
    let o = Command::new("gcc")
        .args(args)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .args(libs)
        .output()
        .map_err(ctx("cannot run gcc"))?;
    if !o.status.success() {
        return Err(bail(format!(
            "building {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        )));
    }
    Ok(exe)
}

/// Guests killed and removed from their store when dropped.
struct Guests<'a> {
    store: &'a guest::Store,
    names: Vec<String>,
}

impl Drop for Guests<'_> {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.store.kill(n);
            let _ = self.store.cleanup(n);
        }
    }
}

fn exec(store: &guest::Store, name: &str, script: &str, secs: u64) -> Result<String> {
    let o = store.exec(name, &["sh", "-c", script], Duration::from_secs(secs))?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    if o.code != 0 {
        return Err(bail(format!(
            "{name}: `{script}` exited {}: {}{}",
            o.code,
            out.trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(out)
}

/// rx packets of eth0 in a /proc/net/dev text.
fn rx_packets(dev: &str) -> u64 {
    dev.lines()
        .find_map(|l| l.trim_start().strip_prefix("eth0:"))
        .and_then(|rest| rest.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The Mbit/s of a tcpblast client line.
fn tcpblast_mbps(out: &str) -> Option<f64> {
    let l = out.lines().find(|l| l.starts_with("client:"))?;
    l.split_once("= ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Per-packet RTTs (ms) of a ping output.
fn ping_times(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| {
            l.split_once("time=")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The `q` quantile (nearest rank) of a sorted list.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[i - 1]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        f64::NAN
    } else {
        s[s.len() / 2]
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run the benchmark: progress lines go to `progress`; the table (or the
/// JSON report) to `out`. Work files live in a fresh folder under /tmp,
/// removed afterwards.
pub fn run(
    b: &NetBench,
    json: bool,
    progress: &mut dyn FnMut(&str),
    out: &mut dyn Write,
) -> Result<NetReport> {
    for (tool, pkg) in [
        ("vde_switch", "vde2"),
        ("uml_switch", "uml-utilities"),
        ("vde_plug", "vde2"),
    ] {
        if which(tool).is_none() {
            return Err(bail(format!("{tool} not found: apt-get install {pkg}")));
        }
    }
    let tmp = std::env::temp_dir().join(format!("umlkit-netbench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(io_err("cannot create", &tmp))?;
    let r = run_in(b, &tmp, progress);
    let _ = std::fs::remove_dir_all(&tmp);
    let report = r?;
    if json {
        let s = serde_json::to_string_pretty(&report)
            .map_err(|e| bail(format!("cannot encode the report: {e}")))?;
        writeln!(out, "{s}").map_err(Error::Output)?;
    } else {
        write_table(&report, out).map_err(Error::Output)?;
    }
    Ok(report)
}

/// The table of a report.
pub fn write_table(r: &NetReport, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "umlkit bench net: guest to guest, tcpblast {} MiB x {} runs per path (interleaved), {} pings at 10 ms; load average before {}, after {} (2 CPUs)",
        r.mb, r.runs, r.pings, r.loadavg_before, r.loadavg_after
    )?;
    writeln!(
        out,
        "{:<18} | {:>9} | {:>17} | {:>8} | {:>8} | {:>9} | {:>9} | {:>13} | {:>14} | {:>13} | {:>11}",
        "path",
        "Mbit/s",
        "min-max",
        "x vde_sw",
        "x uml_sw",
        "RTT p50",
        "RTT p99",
        "switch us/fr",
        "vde_plug us/fr",
        "guests us/fr",
        "guests CPUs"
    )?;
    for p in &r.paths {
        writeln!(
            out,
            "{:<18} | {:>9.1} | {:>8.1}-{:<8.1} | {:>7.2}x | {:>7.2}x | {:>6.3} ms | {:>6.3} ms | {:>13.2} | {:>14} | {:>13.2} | {:>11.2}",
            p.path,
            p.mbps_median,
            p.mbps_min,
            p.mbps_max,
            p.x_vde_switch,
            p.x_uml_switch,
            p.rtt_p50_ms,
            p.rtt_p99_ms,
            p.switch_us_per_frame,
            p.helpers_us_per_frame
                .map(|h| format!("{h:.2}"))
                .unwrap_or_else(|| "-".into()),
            p.guests_us_per_frame,
            p.guests_cpus
        )?;
    }
    if let Some(why) = &r.vxlan_skipped {
        writeln!(out, "VXLAN: skipped: {why}")?;
    }
    for v in &r.vxlan {
        writeln!(
            out,
            "VXLAN {:<52} rx {:>7.1} kpps (median; loss {:.2}%; runs {})",
            v.path,
            v.rx_kpps_median,
            v.loss_pct_median,
            v.rx_kpps
                .iter()
                .map(|k| format!("{k:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        )?;
    }
    Ok(())
}

struct Acc {
    mbps: Vec<f64>,
    switch_cpu: f64,
    helper_cpu: f64,
    guest_cpu: f64,
    secs: f64,
    frames: u64,
}

fn run_in(b: &NetBench, tmp: &Path, progress: &mut dyn FnMut(&str)) -> Result<NetReport> {
    let loadavg_before = loadavg();
    let share = tmp.join("share");
    std::fs::create_dir_all(&share).map_err(io_err("cannot create", &share))?;
    build_c(
        b.tcpblast.clone(),
        "UMLKIT_TCPBLAST",
        "tcpblast.c",
        &share,
        &["-O2", "-static"],
        &[],
    )
    .and_then(|exe| {
        // a given executable is copied into the shared folder
        let dst = share.join("tcpblast");
        if exe != dst {
            std::fs::copy(&exe, &dst).map_err(io_err("cannot copy", &exe))?;
        }
        Ok(())
    })?;
    let store = guest::Store::at(tmp.join("guests"))?.with_supervisor_exe(b.umlkit.clone());
    let img = image::default_image(&image::DefaultImageOpts::default())?;
    let mut switches = Vec::new();
    let mut guests = Guests {
        store: &store,
        names: Vec::new(),
    };
    for (i, (name, kind, suffix)) in PATHS.iter().enumerate() {
        let (p, base) = start_switch(*kind, &b.umlkit, &tmp.join(format!("sw{i}")))?;
        progress(&format!("{name}: switch pid {}", p.0.id()));
        switches.push(p);
        for (g, host) in [("a", 1), ("b", 2)] {
            let gname = format!("nb{i}{g}");
            let mut cfg = guest::GuestConfig::new(&gname);
            cfg.mem_mb = b.mem_mb.max(guest::MIN_MEM_MB);
            cfg.disks.push(guest::DiskSpec::new(&img));
            cfg.console = guest::ConsoleMode::None;
            cfg.hostfs = Some(share.clone());
            cfg.nets
                .push(guest::NetSpec::parse(&format!("{}{suffix}", base.display())).map_err(bail)?);
            cfg.extra_args
                .push(format!("umlkit.ip.eth0=10.99.{i}.{host}/24"));
            guests.names.push(gname);
            store.start(&cfg)?;
        }
    }
    for n in &guests.names {
        store.wait_ready(n, Duration::from_secs(300))?;
    }
    progress("all guests ready");
    let mut kernels: Vec<Vec<u32>> = Vec::new();
    for (i, (path, _, _)) in PATHS.iter().enumerate() {
        let mut k = Vec::new();
        for g in ["a", "b"] {
            k.extend(store.status(&format!("nb{i}{g}"))?.pid);
        }
        kernels.push(k);
        // the server on a, reachable from b (ARP done)
        exec(
            &store,
            &format!("nb{i}a"),
            "(setsid /hostlab/tcpblast server 5001 </dev/null >/dev/null 2>&1 &)",
            30,
        )?;
        let t = Instant::now();
        while exec(
            &store,
            &format!("nb{i}a"),
            "netstat -ltn | grep -q :5001",
            30,
        )
        .is_err()
        {
            if t.elapsed() > Duration::from_secs(30) {
                return Err(bail(format!("{path}: tcpblast server did not start")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        exec(
            &store,
            &format!("nb{i}b"),
            &format!("ping -c 3 -W 5 10.99.{i}.1 >/dev/null"),
            30,
        )
        .map_err(|e| bail(format!("{path}: no ping through the switch: {e}")))?;
    }
    let rx = |i: usize| -> Result<u64> {
        let mut n = 0;
        for g in ["a", "b"] {
            n += rx_packets(&exec(
                &store,
                &format!("nb{i}{g}"),
                "cat /proc/net/dev",
                30,
            )?);
        }
        Ok(n)
    };
    let mut acc: Vec<Acc> = PATHS
        .iter()
        .map(|_| Acc {
            mbps: Vec::new(),
            switch_cpu: 0.0,
            helper_cpu: 0.0,
            guest_cpu: 0.0,
            secs: 0.0,
            frames: 0,
        })
        .collect();
    for round in 0..b.runs.max(1) {
        let mut order: Vec<usize> = (0..PATHS.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let sw = switches[i].0.id();
            let r0 = rx(i)?;
            let (c0, (h0, g0)) = (cpu_secs(sw), guest_side_cpu(&kernels[i]));
            let t0 = Instant::now();
            let o = exec(
                &store,
                &format!("nb{i}b"),
                &format!("/hostlab/tcpblast client 10.99.{i}.1 5001 {}", b.mb),
                600,
            )?;
            let (c1, (h1, g1)) = (cpu_secs(sw), guest_side_cpu(&kernels[i]));
            let secs = t0.elapsed().as_secs_f64();
            let r1 = rx(i)?;
            let m = tcpblast_mbps(&o)
                .ok_or_else(|| bail(format!("{}: tcpblast said: {o}", PATHS[i].0)))?;
            progress(&format!(
                "round {} {:<18} {m:.1} Mbit/s",
                round + 1,
                PATHS[i].0
            ));
            let a = &mut acc[i];
            a.mbps.push(m);
            a.switch_cpu += c1 - c0;
            a.helper_cpu += h1 - h0;
            a.guest_cpu += g1 - g0;
            a.secs += secs;
            a.frames += r1.saturating_sub(r0);
        }
    }
    let mut rtts = Vec::new();
    for (i, (name, _, _)) in PATHS.iter().enumerate() {
        let o = store.exec(
            &format!("nb{i}b"),
            &[
                "ping".to_string(),
                "-c".into(),
                b.pings.to_string(),
                "-i".into(),
                "0.01".into(),
                "-W".into(),
                "5".into(),
                format!("10.99.{i}.1"),
            ],
            Duration::from_secs(60 + u64::from(b.pings) / 10),
        )?;
        let mut t = ping_times(&String::from_utf8_lossy(&o.stdout));
        t.sort_by(|a, b| a.total_cmp(b));
        progress(&format!(
            "{name}: {} of {} pings, p50 {:.3} ms p99 {:.3} ms",
            t.len(),
            b.pings,
            quantile(&t, 0.5),
            quantile(&t, 0.99)
        ));
        rtts.push(t);
    }
    drop(guests);
    drop(switches);
    let med: Vec<f64> = acc.iter().map(|a| median(&a.mbps)).collect();
    let paths = PATHS
        .iter()
        .enumerate()
        .map(|(i, (name, _, suffix))| {
            let a = &acc[i];
            let per = |cpu: f64| cpu * 1e6 / a.frames.max(1) as f64;
            PathResult {
                path: name.to_string(),
                mbps: a.mbps.clone(),
                mbps_median: med[i],
                mbps_min: a.mbps.iter().copied().fold(f64::INFINITY, f64::min),
                mbps_max: a.mbps.iter().copied().fold(0.0, f64::max),
                x_vde_switch: med[i] / med[3],
                x_uml_switch: med[i] / med[4],
                rtt_p50_ms: quantile(&rtts[i], 0.5),
                rtt_p99_ms: quantile(&rtts[i], 0.99),
                pings_received: rtts[i].len(),
                frames: a.frames,
                switch_us_per_frame: per(a.switch_cpu),
                helpers_us_per_frame: (*suffix == ",vde").then(|| per(a.helper_cpu)),
                guests_us_per_frame: per(a.guest_cpu),
                guests_cpus: a.guest_cpu / a.secs.max(1e-9),
            }
        })
        .collect();
    let (vxlan, vxlan_skipped) = if b.no_vxlan {
        (Vec::new(), Some("--no-vxlan".to_string()))
    } else if umlkit_sys::net::euid() != 0 {
        (
            Vec::new(),
            Some("needs root (ip netns, veth, vxlan devices)".to_string()),
        )
    } else {
        (vxlan_bench(b, tmp, progress)?, None)
    };
    Ok(NetReport {
        runs: b.runs.max(1),
        mb: b.mb,
        pings: b.pings,
        loadavg_before,
        loadavg_after: loadavg(),
        paths,
        vxlan,
        vxlan_skipped,
    })
}

/// A network namespace made by the benchmark, deleted on drop (with every
/// device in it).
struct Netns(String);

impl Netns {
    fn new(name: String) -> Result<Netns> {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name])?;
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        let mut a = vec!["-n", &self.0];
        a.extend_from_slice(args);
        ip(&a)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(ctx("cannot run ip (apt-get install iproute2)"))?;
    if !o.status.success() {
        return Err(bail(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(())
}

/// One vdeblast line's `key=value`.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// VXLAN pps: namespaces A and B joined by a veth pair (192.168.253.1/.2,
/// nothing else); in each an umlkit switch with `--vxlan` (VNI 4201, port
/// 4789) and a Linux bridge with a vxlan device (VNI 4202, port 4790) and
/// a tap. vdeblast sends 64-byte frames from A and counts them in B, each
/// end through a `vde_plug` in the namespace (`cmd://`), the same hop for
/// both; umlkit is also measured with vdeblast on its switches directly.
fn vxlan_bench(b: &NetBench, tmp: &Path, progress: &mut dyn FnMut(&str)) -> Result<Vec<VxlanLine>> {
    let blaster = build_c(
        b.vdeblast.clone(),
        "UMLKIT_VDEBLAST",
        "vdeblast.c",
        tmp,
        &["-O2"],
        &["-lvdeplug", "-lpthread"],
    )?;
    let tag = std::process::id() % 100_000;
    let na = Netns::new(format!("umlkit-nba-{tag}"))?;
    let nb = Netns::new(format!("umlkit-nbb-{tag}"))?;
    let (va, vb) = (format!("nbva{tag}"), format!("nbvb{tag}"));
    ip(&[
        "link", "add", &va, "netns", &na.0, "type", "veth", "peer", "name", &vb, "netns", &nb.0,
    ])?;
    let mut sw = Vec::new();
    for (ns, dev, me, peer, name) in [(&na, &va, 1, 2, "a"), (&nb, &vb, 2, 1, "b")] {
        let me = format!("192.168.253.{me}");
        let peer = format!("192.168.253.{peer}");
        ns.ip(&["addr", "add", &format!("{me}/24"), "dev", dev])?;
        ns.ip(&["link", "set", dev, "up"])?;
        ns.ip(&["link", "add", "nbbr", "type", "bridge"])?;
        ns.ip(&[
            "link", "add", "nbvx", "type", "vxlan", "id", "4202", "remote", &peer, "dstport",
            "4790", "dev", dev,
        ])?;
        ns.ip(&["tuntap", "add", "nbtap", "mode", "tap"])?;
        for d in ["nbvx", "nbtap"] {
            ns.ip(&["link", "set", d, "master", "nbbr"])?;
        }
        for d in ["nbbr", "nbvx", "nbtap"] {
            ns.ip(&["link", "set", d, "up"])?;
        }
        let dir = tmp.join(format!("vx{name}"));
        let p = spawn(
            Command::new("ip")
                .args(["netns", "exec", &ns.0])
                .arg(&b.umlkit)
                .arg("switch")
                .arg("-s")
                .arg(&dir)
                .args(["--vxlan", &format!("vni=4201,remote={peer},local={me}")])
                .stdin(Stdio::null()),
            "umlkit switch --vxlan",
        )?;
        wait_for(&dir.join("ctl"), "umlkit switch --vxlan")?;
        sw.push(p);
    }
    let plug = |ns: &Netns, url: &str| format!("cmd://ip netns exec {} vde_plug {url}", ns.0);
    let (da, db) = (tmp.join("vxa"), tmp.join("vxb"));
    let cases = [
        (
            "Linux bridge+vxlan (vde_plug tap:// at each end)",
            plug(&na, "tap://nbtap"),
            plug(&nb, "tap://nbtap"),
        ),
        (
            "umlkit switch --vxlan (vde_plug vde:// at each end)",
            plug(&na, &format!("vde://{}", da.display())),
            plug(&nb, &format!("vde://{}", db.display())),
        ),
        (
            "umlkit switch --vxlan (vdeblast on the switches)",
            format!("vde://{}", da.display()),
            format!("vde://{}", db.display()),
        ),
    ];
    let mut kpps: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut loss: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..b.runs.max(1) {
        for (c, (name, ua, ub)) in cases.iter().enumerate() {
            let o = Command::new(&blaster)
                .args([ua, ub, &b.vxlan_frames.to_string(), "64", "blast"])
                .stdin(Stdio::null())
                .output()
                .map_err(ctx(format!("cannot run {}", blaster.display())))?;
            let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let k = field(&line, "rx_kpps").ok_or_else(|| {
                bail(format!(
                    "vdeblast over {name}: {line} {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            })?;
            progress(&format!("round {} VXLAN {name}: {line}", round + 1));
            kpps[c].push(k);
            loss[c].push(field(&line, "loss_pct").unwrap_or(100.0));
        }
    }
    drop(sw);
    Ok(cases
        .iter()
        .enumerate()
        .map(|(c, (name, _, _))| VxlanLine {
            path: name.to_string(),
            rx_kpps: kpps[c].clone(),
            rx_kpps_median: median(&kpps[c]),
            loss_pct_median: median(&loss[c]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_outputs_are_parsed() {
        let dev = "Inter-|   Receive\n face |bytes    packets errs\n    lo:       0       0    0\n  eth0:   85936    1611    0    0\n";
        assert_eq!(rx_packets(dev), 1611);
        assert_eq!(rx_packets("nothing"), 0);
        assert_eq!(
            tcpblast_mbps("client: 104857600 bytes in 0.886 s = 946.7 Mbit/s\n"),
            Some(946.7)
        );
        assert_eq!(tcpblast_mbps("connect: refused"), None);
        let p = "PING 10.9.0.1 (10.9.0.1): 56 data bytes\n64 bytes from 10.9.0.1: seq=0 ttl=64 time=0.808 ms\n64 bytes from 10.9.0.1: seq=1 ttl=64 time=0.504 ms\n\nround-trip min/avg/max = 0.504/0.746/0.926 ms\n";
        assert_eq!(ping_times(p), vec![0.808, 0.504]);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 100.0);
        assert_eq!(quantile(&v, 0.99), 198.0);
        assert_eq!(quantile(&[3.0], 0.99), 3.0);
        assert!(quantile(&[], 0.5).is_nan());
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
    }

    /// The keys docs/json.md lists; no replies make a null RTT.
    #[test]
    fn json_report_has_the_documented_keys() {
        let p = PathResult {
            path: "vector/umlkit".into(),
            mbps: vec![1.0],
            mbps_median: 1.0,
            mbps_min: 1.0,
            mbps_max: 1.0,
            x_vde_switch: 1.0,
            x_uml_switch: 1.0,
            rtt_p50_ms: quantile(&[], 0.5),
            rtt_p99_ms: 0.5,
            pings_received: 0,
            frames: 10,
            switch_us_per_frame: 1.0,
            helpers_us_per_frame: None,
            guests_us_per_frame: 1.0,
            guests_cpus: 0.5,
        };
        let r = NetReport {
            runs: 1,
            mb: 1,
            pings: 1,
            loadavg_before: "1 1 1".into(),
            loadavg_after: "1 1 1".into(),
            paths: vec![p],
            vxlan: vec![VxlanLine {
                path: "x".into(),
                rx_kpps: vec![1.0],
                rx_kpps_median: 1.0,
                loss_pct_median: 0.0,
            }],
            vxlan_skipped: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let want = |s: &[&str]| -> Vec<String> {
            let mut k: Vec<String> = s.iter().map(|x| x.to_string()).collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            want(&[
                "runs",
                "mb",
                "pings",
                "loadavg_before",
                "loadavg_after",
                "paths",
                "vxlan",
                "vxlan_skipped"
            ])
        );
        assert_eq!(
            keys(&v["paths"][0]),
            want(&[
                "path",
                "mbps",
                "mbps_median",
                "mbps_min",
                "mbps_max",
                "x_vde_switch",
                "x_uml_switch",
                "rtt_p50_ms",
                "rtt_p99_ms",
                "pings_received",
                "frames",
                "switch_us_per_frame",
                "helpers_us_per_frame",
                "guests_us_per_frame",
                "guests_cpus"
            ])
        );
        assert_eq!(
            keys(&v["vxlan"][0]),
            want(&["path", "rx_kpps", "rx_kpps_median", "loss_pct_median"])
        );
        assert!(v["paths"][0]["rtt_p50_ms"].is_null());
        assert!(v["paths"][0]["helpers_us_per_frame"].is_null());
        assert!(v["vxlan_skipped"].is_null());
    }

    #[test]
    fn missing_tool_source_is_named() {
        let e = build_c(
            Some("/nonexistent/tcpblast.c".into()),
            "UMLKIT_TCPBLAST",
            "tcpblast.c",
            Path::new("/nonexistent"),
            &[],
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "tcpblast.c not found at /nonexistent/tcpblast.c (give its path, or set $UMLKIT_TCPBLAST)"
        );
    }
}

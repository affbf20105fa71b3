//! `umlkit bench switch`: vde_switch vs umlkit switch, side by side in one
//! run (alternating), measured with vdeblast (two libvdeplug clients).

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Parameters of the switch benchmark.
#[derive(Debug, Clone)]
pub struct SwitchBench {
    /// Frames per throughput run.
    pub frames: u64,
    /// Frame sizes in bytes.
    pub sizes: Vec<usize>,
    /// Round trips per latency run.
    pub pingpong: u64,
    /// Rounds (the median is reported).
    pub rounds: usize,
    /// vdeblast source (.c, compiled with gcc) or a built executable
    /// (None: $UMLKIT_VDEBLAST, else shared/bench/vdeblast.c beside the
    /// repository checkout).
    pub vdeblast: Option<PathBuf>,
    /// Also measure umlkit with a neutral link on every port and with
    /// `umlkit capture` writing every frame to a file.
    pub links: bool,
    /// The umlkit executable (its `switch` and `capture` commands).
    pub umlkit: PathBuf,
}

fn bail(msg: String) -> Error {
    Error::Failed(msg)
}

fn ctx(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Run { what, source }
}

/// One vdeblast result line as key=value pairs.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

use umlkit_sys::file::which;

fn build_vdeblast(src: Option<PathBuf>, out_dir: &Path) -> Result<PathBuf> {
    let src = src
        .or_else(|| std::env::var_os("UMLKIT_VDEBLAST").map(PathBuf::from))
        .unwrap_or_else(|| crate::net::shared_bench("vdeblast.c"));
    if !src.exists() {
        return Err(bail(format!(
            "vdeblast not found at {} (give --vdeblast PATH)",
            src.display()
        )));
    }
    if src.extension().is_some_and(|e| e == "c") && !Path::new("/usr/include/libvdeplug.h").exists()
    {
        return Err(bail(format!(
            "libvdeplug.h missing: install libvdeplug-dev to build {}",
            src.display()
        )));
    }
    crate::net::build_c(
        Some(src),
        "UMLKIT_VDEBLAST",
        "vdeblast.c",
        out_dir,
        &["-O2"],
        &["-lvdeplug", "-lpthread"],
    )
}

/// A switch under test, killed (by pid) on drop.
struct Running {
    name: &'static str,
    child: Child,
    dir: PathBuf,
    _stdin: Option<std::process::ChildStdin>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// utime+stime of the switch process, in seconds.
    fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        ticks / 100.0
    }
}

fn wait_for(p: &Path) -> Result<()> {
    let t = Instant::now();
    while !p.exists() {
        if t.elapsed() > Duration::from_secs(10) {
            return Err(bail(format!("{} did not appear", p.display())));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    Ok(())
}

fn start_vde_switch(dir: &Path) -> Result<Running> {
    let mut child = Command::new("vde_switch")
        .arg("-s")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(ctx("cannot run vde_switch (apt-get install vde2)"))?;
    let stdin = child.stdin.take();
    let r = Running {
        name: "vde_switch",
        child,
        dir: dir.to_path_buf(),
        _stdin: stdin,
    };
    wait_for(&dir.join("ctl"))?;
    Ok(r)
}

fn start_umlkit(exe: &Path, dir: &Path, extra: &[String], name: &'static str) -> Result<Running> {
    let child = Command::new(exe)
        .arg("switch")
        .arg("-s")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(ctx("cannot start umlkit switch"))?;
    let r = Running {
        name,
        child,
        dir: dir.to_path_buf(),
        _stdin: None,
    };
    wait_for(&dir.join("ctl"))?;
    Ok(r)
}

/// `umlkit capture MGMT -w FILE` in the background (killed on drop).
fn start_capture(exe: &Path, mgmt: &Path, file: &Path) -> Result<Running> {
    wait_for(mgmt)?;
    let child = Command::new(exe)
        .arg("capture")
        .arg(mgmt)
        .arg("-w")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(ctx("cannot start umlkit capture"))?;
    let r = Running {
        name: "capture",
        child,
        dir: mgmt.to_path_buf(),
        _stdin: None,
    };
    wait_for(file)?;
    Ok(r)
}

fn blast(exe: &Path, sw: &Running, args: &[String]) -> Result<String> {
    let d = sw.dir.display().to_string();
    let out = Command::new(exe)
        .arg(&d)
        .arg(&d)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(ctx(format!("cannot run {}", exe.display())))?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if line.is_empty() {
        return Err(bail(format!(
            "vdeblast against {} printed nothing: {}",
            sw.name,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(line)
}

/// The same blast with the two clients wired straight to each other
/// (libvdeplug ptp://, no switch): the ceiling any switch can reach here.
fn direct(exe: &Path, tmp: &Path, args: &[String]) -> Result<String> {
    let p = tmp.join("ptp");
    let _ = std::fs::remove_file(&p);
    let url = format!("ptp://{}", p.display());
    let out = Command::new(exe)
        .arg(&url)
        .arg(&url)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(ctx(format!("cannot run {}", exe.display())))?;
    let _ = std::fs::remove_file(&p);
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// Cost of the two socket operations a frame needs through a switch (one
/// datagram received, one sent), measured on a socket pair: µs per frame.
fn raw_pair_cost(frames: u64, size: usize) -> Result<f64> {
    let io = || ctx("socket pair");
    let (a, b) = UnixDatagram::pair().map_err(io())?;
    let buf = vec![0u8; size];
    let mut rbuf = vec![0u8; 2048];
    let t = Instant::now();
    for _ in 0..frames {
        a.send(&buf).map_err(io())?;
        b.recv(&mut rbuf).map_err(io())?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / frames as f64)
}

/// Run the benchmark: per-run lines go to `progress`, the report to `out`.
pub fn run(a: &SwitchBench, progress: &mut dyn FnMut(&str), out: &mut dyn Write) -> Result<()> {
    if which("vde_switch").is_none() {
        return Err(bail("vde_switch not found: apt-get install vde2".into()));
    }
    let tmp = std::env::temp_dir().join(format!("umlkit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(crate::io_err("cannot create", &tmp))?;
    let result = bench_in(a, &tmp, progress, out);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

#[derive(Default)]
struct Acc {
    kpps: Vec<f64>,
    loss: Vec<f64>,
    cpu_us: Vec<f64>,
}

fn bench_in(
    a: &SwitchBench,
    tmp: &Path,
    progress: &mut dyn FnMut(&str),
    out: &mut dyn Write,
) -> Result<()> {
    let exe = &a.umlkit;
    macro_rules! outln {
        ($($t:tt)*) => {
            writeln!(out, $($t)*).map_err(Error::Output)?
        };
    }
    let blaster = build_vdeblast(a.vdeblast.clone(), tmp)?;
    let vde = start_vde_switch(&tmp.join("vde"))?;
    let uk = start_umlkit(exe, &tmp.join("umlkit"), &[], "umlkit")?;
    let mut extra = Vec::new();
    let mut _capture = None;
    if a.links {
        let neutral: Vec<String> = (1..8)
            .flat_map(|p| ["--link".to_string(), format!("{p}:none")])
            .collect();
        extra.push(start_umlkit(
            exe,
            &tmp.join("uk-link"),
            &neutral,
            "umlkit+link",
        )?);
        let mgmt = tmp.join("uk-cap.mgmt");
        let m = vec!["-M".to_string(), mgmt.display().to_string()];
        extra.push(start_umlkit(exe, &tmp.join("uk-cap"), &m, "umlkit+cap")?);
        _capture = Some(start_capture(exe, &mgmt, &tmp.join("capture.pcapng"))?);
    }
    let sizes = &a.sizes;
    let mut switches = vec![&vde, &uk];
    switches.extend(extra.iter());
    let n = switches.len();
    // [switch][size]
    let mut acc: Vec<Vec<Acc>> = (0..n)
        .map(|_| sizes.iter().map(|_| Acc::default()).collect())
        .collect();
    let mut rtt: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut ceiling: Vec<Vec<f64>> = sizes.iter().map(|_| Vec::new()).collect();
    for round in 0..a.rounds.max(1) {
        let mut order: Vec<usize> = (0..n).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for (si, &size) in sizes.iter().enumerate() {
            for &w in &order {
                let sw = switches[w];
                let cpu0 = sw.cpu_secs();
                let line = blast(
                    &blaster,
                    sw,
                    &[a.frames.to_string(), size.to_string(), "blast".into()],
                )?;
                let cpu = sw.cpu_secs() - cpu0;
                let received = field(&line, "received").unwrap_or(0.0);
                progress(&format!("round {} {:<10} {}", round + 1, sw.name, line));
                let e = &mut acc[w][si];
                e.kpps.push(field(&line, "rx_kpps").unwrap_or(0.0));
                e.loss.push(field(&line, "loss_pct").unwrap_or(100.0));
                if received > 0.0 {
                    e.cpu_us.push(cpu * 1e6 / received);
                }
            }
            let line = direct(
                &blaster,
                tmp,
                &[a.frames.to_string(), size.to_string(), "blast".into()],
            )?;
            progress(&format!("round {} {:<10} {}", round + 1, "direct", line));
            if let Some(k) = field(&line, "rx_kpps") {
                ceiling[si].push(k);
            }
        }
        for &w in &order {
            let sw = switches[w];
            let line = blast(
                &blaster,
                sw,
                &[a.pingpong.to_string(), "64".into(), "pingpong".into()],
            )?;
            progress(&format!("round {} {:<10} {}", round + 1, sw.name, line));
            if let Some(v) = field(&line, "rtt_p50_us") {
                rtt[w].push(v);
            }
        }
    }
    outln!(
        "umlkit bench switch: {} frames/run, {} rounds (median), vdeblast A->B unicast over each switch",
        a.frames, a.rounds
    );
    outln!(
        "{:>6} | {:>22} | {:>22} | {:>8} | {:>10} | {:>22}",
        "size",
        "vde_switch kpps (loss)",
        "umlkit kpps (loss)",
        "ratio",
        "loss delta",
        "no-switch ceiling kpps"
    );
    let mut ok = true;
    for (si, size) in sizes.iter().enumerate() {
        let (vk, vl) = (median(&mut acc[0][si].kpps), median(&mut acc[0][si].loss));
        let (uk_, ul) = (median(&mut acc[1][si].kpps), median(&mut acc[1][si].loss));
        let ratio = uk_ / vk;
        ok &= ratio >= 2.5 && ul <= vl + 1.0;
        let ceil = median(&mut ceiling[si]);
        outln!(
            "{:>6} | {:>13.1} ({:>5.2}%) | {:>13.1} ({:>5.2}%) | {:>7.2}x | {:>+9.2}pt | {:>8.1} (umlkit {:>3.0}%)",
            size,
            vk,
            vl,
            uk_,
            ul,
            ratio,
            ul - vl,
            ceil,
            100.0 * uk_ / ceil
        );
    }
    for w in 2..n {
        let line: Vec<String> = sizes
            .iter()
            .enumerate()
            .map(|(si, size)| {
                let k = median(&mut acc[w][si].kpps);
                let l = median(&mut acc[w][si].loss);
                let base = median(&mut acc[1][si].kpps);
                format!(
                    "{size} B {k:.1} kpps ({l:.2}% loss, {:.0}% of plain umlkit)",
                    100.0 * k / base
                )
            })
            .collect();
        outln!(
            "{:<12} {}; pingpong median RTT {:.1} us",
            switches[w].name,
            line.join(", "),
            median(&mut rtt[w])
        );
    }
    let (vr, ur) = (median(&mut rtt[0]), median(&mut rtt[1]));
    ok &= ur <= vr;
    outln!(
        "pingpong 64 B median RTT: vde_switch {:.1} us, umlkit {:.1} us (ratio {:.2})",
        vr,
        ur,
        ur / vr
    );
    for (si, size) in sizes.iter().enumerate() {
        let raw = raw_pair_cost(50_000, *size)?;
        let vc = median(&mut acc[0][si].cpu_us);
        let uc = median(&mut acc[1][si].cpu_us);
        outln!(
            "cost per forwarded {size} B frame (switch CPU time / frames received): vde_switch {vc:.2} us, umlkit {uc:.2} us; \
             one send+recv on a socket pair: {raw:.2} us (umlkit = {:.2}x that)",
            uc / raw
        );
    }
    outln!(
        "goal (>= 2.5x pps, loss <= vde_switch + 1 point, RTT not higher): {}",
        if ok { "met" } else { "NOT met" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdeblast_fields_and_medians() {
        let l = "sent=200000 received=199000 rx_kpps=512.5 loss_pct=0.50 rtt_p50_us=12";
        assert_eq!(field(l, "received"), Some(199000.0));
        assert_eq!(field(l, "rx_kpps"), Some(512.5));
        assert_eq!(field(l, "kpps"), None);
        assert_eq!(field(l, "missing"), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn vdeblast_missing_source_is_named() {
        let e = build_vdeblast(
            Some("/nonexistent/vdeblast.c".into()),
            Path::new("/nonexistent"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "vdeblast not found at /nonexistent/vdeblast.c (give --vdeblast PATH)"
        );
    }
}

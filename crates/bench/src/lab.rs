//! `umlkit lab bench`: labs of N machines on one collision domain, started
//! through the lab runner until every machine answers a ping (median over
//! runs), their host memory, and, for comparison, guests started directly
//! through the `guest` crate on the same kernel and default image.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab::runner;

use crate::{io_err, Error, Result};

/// Parameters of the lab benchmark.
#[derive(Debug, Clone)]
pub struct LabBench {
    /// Machine counts to try.
    pub sizes: Vec<usize>,
    /// Runs per size (the median is reported).
    pub runs: usize,
    /// Machines booted at once (None: the lab default).
    pub parallel: Option<usize>,
    /// Lab state root (None: a folder under the work directory).
    pub state_root: Option<PathBuf>,
    /// Memory floor in MiB for the machines.
    pub min_mem: Option<u32>,
    /// The umlkit executable (supervisors and switches).
    pub umlkit: PathBuf,
}

/// Guests started at once through the `guest` crate for the comparison line.
const GUESTS: usize = 10;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Host memory (PSS, kB: shared guest RAM counted once, each address space
/// once) of all processes whose cmdline names `needle`.
fn pss_kb_matching(needle: &str) -> u64 {
    let pids: Vec<u32> = umlkit_sys::process::all_pids()
        .into_iter()
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmd.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect();
    guest::host_memory(&pids).pss_kb
}

/// Shmem + AnonPages of /proc/meminfo (KiB): guest RAM (the kernels'
/// /dev/shm files) and private memory of every process on the host.
fn meminfo_used_kb() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("Shmem:") || l.starts_with("AnonPages:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(io_err("cannot write", path))
}

/// Run the benchmark: each result line goes to `progress` as it is
/// measured, all of them to `out` at the end. Work files live in a fresh
/// folder under /tmp, removed afterwards.
pub fn run(b: &LabBench, progress: &mut dyn FnMut(&str), out: &mut dyn Write) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("umlkit-labbench-{}", std::process::id()));
    let r = run_in(b, &tmp, progress);
    let _ = std::fs::remove_dir_all(&tmp);
    for l in r? {
        writeln!(out, "{l}").map_err(Error::Output)?;
    }
    Ok(())
}

fn run_in(b: &LabBench, tmp: &Path, progress: &mut dyn FnMut(&str)) -> Result<Vec<String>> {
    let root = lab::open::state_root(Some(
        &b.state_root.clone().unwrap_or_else(|| tmp.join("state")),
    ));
    let mut report = Vec::new();
    for &n in &b.sizes {
        // n machines on one collision domain, one /16.
        let dir = tmp.join(format!("lab{n}"));
        std::fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        let mut conf = String::from("LAB_DESCRIPTION=\"umlkit bench\"\n");
        for i in 0..n {
            conf.push_str(&format!("m{i}[0]=d0\n"));
            write(
                &dir.join(format!("m{i}.startup")),
                &format!(
                    "ip addr add 10.1.{}.{}/16 dev eth0\nip link set eth0 up\n",
                    i / 250,
                    i % 250 + 1
                ),
            )?;
        }
        write(&dir.join("lab.conf"), &conf)?;
        let (plan, _) = lab::open::load(&dir, None, b.min_mem, &root)?;
        let backend = runner::backend_for(&plan, Some(&b.umlkit))?;
        let p = b
            .parallel
            .unwrap_or_else(|| lab::sizing::default_parallel(&plan));
        let mut times = Vec::new();
        let mut rss = 0;
        let mut freed = 0;
        for _ in 0..b.runs {
            runner::clean(&plan)?;
            let t0 = Instant::now();
            let r = runner::start(
                &backend,
                &plan,
                &plan.waves,
                p,
                Duration::from_secs(600),
                &mut |_: &str| {},
            );
            if let Err(e) = r {
                runner::clean(&plan)?;
                return Err(e.into());
            }
            // Reachable: the first machine pings every other one (all pings
            // at once, in one exec round trip).
            let first = &plan.machines[0];
            let mut script = String::new();
            for m in &plan.machines[1..] {
                let i: usize = m.name[1..]
                    .parse()
                    .map_err(|_| Error::Failed(format!("unexpected machine {}", m.name)))?;
                let addr = format!("10.1.{}.{}", i / 250, i % 250 + 1);
                script.push_str(&format!(
                    "(ping -c 1 -W 2 {addr} >/dev/null 2>&1 || echo unreachable {addr}) &\n"
                ));
            }
            script.push_str("wait\n");
            let o = backend.exec(first, &script, Duration::from_secs(60))?;
            if o.code != 0 || o.stdout.contains("unreachable") {
                runner::clean(&plan)?;
                return Err(Error::Failed(format!(
                    "{} cannot reach every machine: {}{}",
                    first.name,
                    o.stdout.trim(),
                    o.stderr.trim()
                )));
            }
            times.push(t0.elapsed().as_secs_f64());
            rss = pss_kb_matching(&plan.state_dir.to_string_lossy());
            // Second method: what the host gets back when the lab goes.
            let before = meminfo_used_kb();
            runner::clean(&plan)?;
            freed = before.saturating_sub(meminfo_used_kb());
        }
        let med = median(times.clone());
        report.push(format!(
            "lab of {n} machines (-p {p}): start -> all reachable median {med:.2} s over {} runs {:?}; host memory (PSS) {:.1} MiB/machine (lab clean freed {:.1} MiB/machine of Shmem+AnonPages)",
            b.runs,
            times.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>(),
            rss as f64 / 1024.0 / n as f64,
            freed as f64 / 1024.0 / n as f64
        ));
        progress(report.last().expect("pushed"));
    }
    let gmed = guests(b, tmp)?;
    report.push(format!(
        "bare guests: {GUESTS} guests (guest crate, default image) started in parallel until all are ready, median {gmed:.2} s"
    ));
    progress(report.last().expect("pushed"));
    Ok(report)
}

/// Guests killed and removed from their store when dropped.
struct Started<'a> {
    store: &'a guest::Store,
    names: Vec<String>,
}

impl Drop for Started<'_> {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.store.kill(n);
            let _ = self.store.cleanup(n);
        }
    }
}

/// [`GUESTS`] guests on the kernel and default image the lab machines
/// boot, started at once through the `guest` crate until every one is
/// ready (its exec agent answers): the median over the runs, in seconds.
fn guests(b: &LabBench, tmp: &Path) -> Result<f64> {
    let store = guest::Store::at(tmp.join("guests"))?.with_supervisor_exe(b.umlkit.clone());
    let img = image::default_image(&image::DefaultImageOpts::default())?;
    let mut times = Vec::new();
    for _ in 0..b.runs.max(1) {
        let mut started = Started {
            store: &store,
            names: Vec::new(),
        };
        let t0 = Instant::now();
        for i in 0..GUESTS {
            let name = format!("kb{i}");
            let mut cfg = guest::GuestConfig::new(&name);
            cfg.mem_mb = b.min_mem.unwrap_or(64).max(guest::MIN_MEM_MB);
            cfg.disks.push(guest::DiskSpec::new(&img));
            cfg.console = guest::ConsoleMode::None;
            started.names.push(name);
            store.start(&cfg)?;
        }
        for n in &started.names {
            store.wait_ready(n, Duration::from_secs(120))?;
        }
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

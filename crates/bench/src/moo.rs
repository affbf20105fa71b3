//! `umlkit bench moo`: builds the benchmark case (a sparse ext4 image with
//! a busybox root, a COW over it into which the real kernel writes random
//! data), then times uml_moo against `umlkit moo` in the same run, checks
//! the outputs are identical, and compares with the cost of a plain sparse
//! copy of the allocated data.

use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cow::{mkcow, CowError, MkcowOptions};

use crate::Result;

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct MooBench {
    /// Backing image size in bytes.
    pub size: u64,
    /// Bytes of random data the guest writes.
    pub write: u64,
    /// Measured runs of each tool (after one warm-up run each); the best is compared.
    pub runs: u32,
    /// Work directory; None = a fresh one under /tmp, removed afterwards.
    pub dir: Option<PathBuf>,
    /// The umlkit executable to time.
    pub umlkit: PathBuf,
}

/// Results, printed by `Display`.
#[derive(Debug, Clone)]
pub struct MooReport {
    pub size: u64,
    pub write: u64,
    pub setup: Duration,
    pub c_times: Vec<Duration>,
    pub our_times: Vec<Duration>,
    pub identical: bool,
    pub c_alloc: u64,
    pub our_alloc: u64,
    pub backing_alloc: u64,
    pub cow_alloc: u64,
    pub copy_time: Duration,
    /// In-place merges (`-d`) on sparse copies of the backing file.
    pub c_d_times: Vec<Duration>,
    pub our_d_times: Vec<Duration>,
    /// The in-place results equal each other and the new-file merge.
    pub d_identical: bool,
}

fn best(v: &[Duration]) -> Duration {
    v.iter().copied().min().unwrap_or_default()
}

impl fmt::Display for MooReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let list = |v: &[Duration]| v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ");
        writeln!(
            f,
            "bench moo: backing {} MiB sparse ext4 (busybox root, {} MiB allocated), COW with {} MiB written by the guest ({} MiB allocated); setup {:.1} s",
            self.size >> 20,
            self.backing_alloc >> 20,
            self.write >> 20,
            self.cow_alloc >> 20,
            self.setup.as_secs_f64()
        )?;
        writeln!(
            f,
            "uml_moo     : {} (best {})",
            list(&self.c_times),
            ms(best(&self.c_times))
        )?;
        writeln!(
            f,
            "umlkit moo  : {} (best {})",
            list(&self.our_times),
            ms(best(&self.our_times))
        )?;
        let ratio =
            best(&self.c_times).as_secs_f64() / best(&self.our_times).as_secs_f64().max(1e-9);
        writeln!(f, "speedup     : {ratio:.1}x (best vs best)")?;
        writeln!(
            f,
            "outputs     : {} (cmp); allocated uml_moo {} bytes, umlkit {} bytes",
            if self.identical {
                "identical"
            } else {
                "DIFFERENT"
            },
            self.c_alloc,
            self.our_alloc
        )?;
        writeln!(
            f,
            "copy cost   : cp --sparse=always of backing + COW: {}",
            ms(self.copy_time)
        )?;
        let rd =
            best(&self.c_d_times).as_secs_f64() / best(&self.our_d_times).as_secs_f64().max(1e-9);
        writeln!(
            f,
            "in place -d : uml_moo {} | umlkit {} | speedup {rd:.1}x | results {}",
            list(&self.c_d_times),
            list(&self.our_d_times),
            if self.d_identical {
                "identical"
            } else {
                "DIFFERENT"
            }
        )
    }
}

fn fail(path: &Path, msg: impl Into<String>) -> crate::Error {
    CowError::Invalid {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
    .into()
}

use umlkit_sys::file::which;

fn tool(name: &str, package: &str) -> Result<PathBuf> {
    which(name).ok_or_else(|| {
        fail(
            Path::new(name),
            format!("not found; install the Debian package {package}"),
        )
    })
}

fn run_ok(cmd: &mut Command, what: &Path) -> Result<Duration> {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(what, format!("cannot run {cmd:?}: {e}")))?;
    let d = t.elapsed();
    if !out.status.success() {
        return Err(fail(
            what,
            format!(
                "{cmd:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    Ok(d)
}

/// Build a busybox root in `root` with `init` as /sbin/init.
fn busybox_root(root: &Path, init: &str) -> Result<()> {
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| fail(Path::new("busybox"), "not found; install busybox-static"))?;
    let io = |e: std::io::Error| fail(root, e.to_string());
    for d in ["bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).map_err(io)?;
    }
    std::fs::copy(&bb, root.join("bin/busybox")).map_err(io)?;
    let list = Command::new(&bb).arg("--list").output().map_err(io)?;
    for a in String::from_utf8_lossy(&list.stdout).lines() {
        let a = a.trim();
        if !a.is_empty() && a != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
        }
    }
    let ip = root.join("sbin/init");
    std::fs::write(&ip, init).map_err(io)?;
    std::fs::set_permissions(&ip, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    Ok(())
}

/// Guests of the benchmark, killed and removed when dropped.
struct BootGuard<'a>(&'a guest::Store, &'static str);

impl Drop for BootGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill(self.1);
        let _ = self.0.cleanup(self.1);
    }
}

/// Boot a guest (through the `guest` crate, kernel found as for every
/// guest) on `<cow>` over `<img>` until it powers off; nothing of it
/// outlives this function. Returns the console output.
fn boot(dir: &Path, umlkit: &Path, img: &Path, cow: &Path, timeout: Duration) -> Result<String> {
    let store = guest::Store::at(dir.join("guests"))?.with_supervisor_exe(umlkit.to_path_buf());
    let name = "benchmoo";
    let mut cfg = guest::GuestConfig::new(name);
    cfg.mem_mb = 256;
    cfg.disks.push(guest::DiskSpec {
        image: img.to_path_buf(),
        cow: Some(cow.to_path_buf()),
        readonly: false,
        no_cow: false,
    });
    cfg.console = guest::ConsoleMode::Pty;
    let _guard = BootGuard(&store, name);
    store.start(&cfg)?;
    let deadline = Instant::now() + timeout;
    let ended = loop {
        if !store.status(name)?.alive() {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(store.paths(name).console_log()).unwrap_or_default();
    if !ended {
        return Err(fail(
            cow,
            format!("guest did not power off in {timeout:?}; console:\n{out}"),
        ));
    }
    Ok(out)
}

/// Flush dirty pages of earlier runs (`sync`), outside the timed region.
fn settle() {
    let _ = Command::new("sync").status();
}

/// Build the case and run the benchmark.
pub fn run_moo_bench(cfg: &MooBench) -> Result<MooReport> {
    let uml_moo = tool("uml_moo", "uml-utilities")?;
    let mkfs = tool("mkfs.ext4", "e2fsprogs")?;
    let (dir, remove) = match &cfg.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("umlkit-bench-moo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).map_err(|e| fail(&dir, e.to_string()))?;
    let r = bench_in(cfg, &dir, &uml_moo, &mkfs);
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}

fn bench_in(cfg: &MooBench, dir: &Path, uml_moo: &Path, mkfs: &Path) -> Result<MooReport> {
    let t0 = Instant::now();
    let io = |p: &Path, e: std::io::Error| fail(p, e.to_string());
    let root = dir.join("root");
    let _ = std::fs::remove_dir_all(&root);
    let mb = cfg.write.div_ceil(1 << 20);
    let init = format!(
        "#!/bin/sh\nmount -t proc proc /proc\nmount -t devtmpfs dev /dev 2>/dev/null\n\
         dd if=/dev/urandom of=/bench.bin bs=1048576 count={mb} 2>/dev/null\nsync\n\
         echo BENCH-WRITE-DONE $(ls -l /bench.bin)\npoweroff -f\n"
    );
    busybox_root(&root, &init)?;
    let img = dir.join("backing.img");
    let cowp = dir.join("bench.cow");
    for p in [&img, &cowp] {
        let _ = std::fs::remove_file(p);
    }
    let f = std::fs::File::create(&img).map_err(|e| io(&img, e))?;
    f.set_len(cfg.size).map_err(|e| io(&img, e))?;
    drop(f);
    run_ok(
        Command::new(mkfs)
            .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
            .arg(&root)
            .arg(&img),
        &img,
    )?;
    mkcow(&cowp, &img, &MkcowOptions::default())?;
    let out = boot(dir, &cfg.umlkit, &img, &cowp, Duration::from_secs(600))?;
    if !out.contains("BENCH-WRITE-DONE") {
        return Err(fail(
            &cowp,
            format!("the guest did not write its data; console:\n{out}"),
        ));
    }
    let setup = t0.elapsed();

    let a = dir.join("c.img");
    let b = dir.join("ours.img");
    let mut c_times = Vec::new();
    let mut our_times = Vec::new();
    for i in 0..=cfg.runs {
        // Before each timed run: no old output, no pending writeback (so
        // neither tool is throttled by the other's dirty pages). Inputs stay
        // in the page cache (warm).
        let _ = std::fs::remove_file(&a);
        settle();
        let tc = run_ok(Command::new(uml_moo).arg(&cowp).arg(&a), &a)?;
        let _ = std::fs::remove_file(&b);
        settle();
        let to = run_ok(Command::new(&cfg.umlkit).arg("moo").arg(&cowp).arg(&b), &b)?;
        if i > 0 {
            c_times.push(tc);
            our_times.push(to);
        }
    }
    let cmp = |x: &Path, y: &Path| -> Result<bool> {
        Ok(Command::new("cmp")
            .arg(x)
            .arg(y)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| io(x, e))?
            .success())
    };
    let identical = cmp(&a, &b)?;

    // In place: each tool merges into its own sparse copy of the backing
    // file (cp -p keeps the mtime the COW header expects); -b points at it.
    let dc = dir.join("d-c.img");
    let du = dir.join("d-ours.img");
    let mut c_d_times = Vec::new();
    let mut our_d_times = Vec::new();
    for _ in 0..cfg.runs.max(1) {
        for p in [&dc, &du] {
            let _ = std::fs::remove_file(p);
            run_ok(
                Command::new("cp")
                    .args(["-p", "--sparse=always"])
                    .arg(&img)
                    .arg(p),
                p,
            )?;
        }
        settle();
        c_d_times.push(run_ok(
            Command::new(uml_moo)
                .arg("-d")
                .arg("-b")
                .arg(&dc)
                .arg(&cowp),
            &dc,
        )?);
        settle();
        our_d_times.push(run_ok(
            Command::new(&cfg.umlkit)
                .args(["moo", "-d", "-b"])
                .arg(&du)
                .arg(&cowp),
            &du,
        )?);
    }
    let d_identical = cmp(&dc, &du)? && cmp(&dc, &a)?;
    let alloc = |p: &Path| std::fs::metadata(p).map(|m| m.blocks() * 512).unwrap_or(0);
    let copy_img = dir.join("copy.img");
    let copy_cow = dir.join("copy.cow");
    for p in [&copy_img, &copy_cow] {
        let _ = std::fs::remove_file(p);
    }
    // Warm-up copy, then the measured one.
    let mut copy_time = Duration::ZERO;
    for i in 0..2 {
        for p in [&copy_img, &copy_cow] {
            let _ = std::fs::remove_file(p);
        }
        settle();
        let t1 = run_ok(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(&img)
                .arg(&copy_img),
            &copy_img,
        )?;
        let t2 = run_ok(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(&cowp)
                .arg(&copy_cow),
            &copy_cow,
        )?;
        if i == 1 {
            copy_time = t1 + t2;
        }
    }
    let report = MooReport {
        size: cfg.size,
        write: cfg.write,
        setup,
        c_times,
        our_times,
        identical,
        c_alloc: alloc(&a),
        our_alloc: alloc(&b),
        backing_alloc: alloc(&img),
        cow_alloc: alloc(&cowp),
        copy_time,
        c_d_times,
        our_d_times,
        d_identical,
    };
    for p in [&a, &b, &copy_img, &copy_cow, &dc, &du] {
        let _ = std::fs::remove_file(p);
    }
    if !report.identical || !report.d_identical {
        return Err(fail(
            &b,
            format!("umlkit moo output differs from uml_moo's\n{report}"),
        ));
    }
    Ok(report)
}

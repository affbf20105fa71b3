//! Helpers shared by the cow_* integration tests: running umlkit and the C
//! tools, building backing files and COW files by hand (as the kernel
//! writes them), and tmpfs mounts that are unmounted on drop.
#![allow(dead_code)]

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cow_format::header::Version;
use cow_format::CowHeader;

pub fn umlkit() -> PathBuf {
    testkit::umlkit_bin()
}

/// A link named `name` (uml_moo, uml_mkcow) to umlkit inside `dir`.
pub fn multicall(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    if !p.exists() {
        std::os::unix::fs::symlink(umlkit(), &p).unwrap();
    }
    p
}

/// Run a command to completion (it cannot outlive the call).
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "failed: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A sparse backing file of `size` bytes with data in a few places (and
/// some all-zero allocated blocks), mtime set to `mtime`.
pub fn backing_file(path: &Path, size: u64, mtime: i64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut off = 0u64;
    let mut i = 0u64;
    while off + 65536 <= size {
        if i.is_multiple_of(3) {
            f.write_all_at(&noise(i + 1, 65536), off).unwrap();
        } else if i % 7 == 1 {
            f.write_all_at(&vec![0u8; 8192], off).unwrap();
        }
        off += 65536 * 5 + 4096 * (i % 4);
        i += 1;
    }
    // Last sector has data too (sometimes).
    if size >= 512 && size.is_multiple_of(1024) {
        f.write_all_at(&[0xabu8; 512], size - 512).unwrap();
    }
    drop(f);
    set_mtime(path, mtime);
}

pub fn set_mtime(path: &Path, secs: i64) {
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(t))
        .unwrap();
}

pub fn mtime(path: &Path) -> i64 {
    std::fs::metadata(path).unwrap().mtime()
}

pub fn alloc(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Write guest data into a COW as the kernel does: data at
/// `data_offset + sector*512`, bit set. `runs` = (first sector, count);
/// `zero` writes zero sectors (a guest zeroing data).
pub fn guest_write(cow: &Path, runs: &[(u64, u64)], seed: u64, zero: bool) {
    let f = std::fs::File::options()
        .read(true)
        .write(true)
        .open(cow)
        .unwrap();
    let mut hb = vec![0u8; cow_format::MAX_HEADER_LEN];
    let n = f.read_at(&mut hb, 0).unwrap();
    let h = CowHeader::parse(&hb[..n]).unwrap();
    let l = h.layout().unwrap();
    let mut bm = vec![0u8; l.bitmap_len as usize];
    f.read_exact_at(&mut bm, l.bitmap_offset).unwrap();
    for (k, &(s, c)) in runs.iter().enumerate() {
        let data = if zero {
            vec![0u8; (c * 512) as usize]
        } else {
            noise(seed + k as u64, (c * 512) as usize)
        };
        f.write_all_at(&data, l.data_offset + s * 512).unwrap();
        for i in s..s + c {
            cow_format::set_bit(&mut bm, i);
        }
    }
    f.write_all_at(&bm, l.bitmap_offset).unwrap();
}

/// Hand-build a COW file of any version over `backing` (absolute path).
pub fn build_cow(path: &Path, version: Version, backing: &Path) {
    let md = std::fs::metadata(backing).unwrap();
    let alignment = match version {
        Version::V1 | Version::V2 => 512,
        _ => 4096,
    };
    let h = CowHeader {
        version,
        backing_file: backing.as_os_str().as_encoded_bytes().to_vec(),
        mtime: md.mtime() as u32,
        size: md.len(),
        sector_size: 512,
        alignment,
        cow_format: 0,
    };
    let l = h.layout().unwrap();
    let f = std::fs::File::create(path).unwrap();
    f.write_all_at(&h.to_bytes().unwrap(), 0).unwrap();
    f.set_len(l.file_len).unwrap();
}

/// A tmpfs of `size` mounted on `dir`, unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let o = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir));
        ok(&o);
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Files in `dir` (names).
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn same_content(a: &Path, b: &Path) -> bool {
    run(Command::new("cmp").arg(a).arg(b)).status.success()
}

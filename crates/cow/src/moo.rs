//! Merging a COW file with its backing file (`uml_moo`), fast.
//!
//! New-file mode reads only what matters: the backing file's allocated
//! extents (`SEEK_DATA`/`SEEK_HOLE`) and the COW's set-bit runs, in large
//! windows; it writes only the 4 KiB blocks of the merged image that are not
//! all zero (plus the last sector, which uml_moo always writes). The result
//! is byte-identical to uml_moo's, with the same holes. It is written to a
//! temporary name in the destination directory and renamed at the end, so a
//! failure (disk full, bad input) leaves no half-written output.
//!
//! In-place mode (`-d`) writes only the COW's set runs into the backing
//! file, and only the sectors that differ. It is crash-safe through a
//! sidecar journal `COW.moo-journal` (see [`moo_in_place`]).

use std::fs::{File, OpenOptions};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use cow_format::SetRuns;

use crate::error::IoCtx;
use crate::{
    backing_stat, read_full_at, sync_parent, temp_sibling, validate_backing, CowError, CowFile, Op,
    Result,
};

/// File-system block used to decide which blocks to write (and so which
/// holes to keep).
const BLOCK: u64 = 4096;
/// Bytes processed per read/write window.
const WINDOW: u64 = 1 << 20;

/// Test hook: after this many written chunks, `moo -d` kills itself with
/// SIGKILL (simulates a crash mid-merge). Only for tests.
pub const KILL_AFTER_ENV: &str = "UMLKIT_MOO_KILL_AFTER_CHUNKS";

/// Options shared by both merge modes.
#[derive(Debug, Clone, Default)]
pub struct MooOptions {
    /// Use this backing file instead of the one named in the header (`-b`).
    pub backing: Option<PathBuf>,
    /// New-file mode: overwrite an existing output file.
    pub force: bool,
    /// Refuse to merge while a running guest holds its lock on the COW
    /// (or, in place, on the backing file). uml_moo does not check.
    pub check_locks: bool,
}

/// What a merge did.
#[derive(Debug, Clone, Default)]
pub struct MooStats {
    /// Sectors taken from the COW file.
    pub cow_sectors: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// In-place mode: an interrupted merge was resumed from its journal.
    pub resumed: bool,
}

fn all_zero(b: &[u8]) -> bool {
    let (head, tail) = b.split_at(b.len() / 16 * 16);
    head.chunks_exact(16)
        .all(|c| u128::from_ne_bytes(c.try_into().expect("16 bytes")) == 0)
        && tail.iter().all(|&x| x == 0)
}

/// Removes a file on drop unless disarmed.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Sorted, merged ranges `[a, b)`: `a` aligned down and `b` up to `BLOCK`,
/// `b` clipped to `total`.
fn block_ranges(mut v: Vec<(u64, u64)>, total: u64) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (o, l) in v {
        let a = o / BLOCK * BLOCK;
        let b = (o + l).div_ceil(BLOCK).saturating_mul(BLOCK).min(total);
        if a >= b {
            continue;
        }
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// For sorted, disjoint `ranges` and a window `[pos, end)`, call `f` with
/// each overlap; `idx` is a cursor that only moves forward.
fn for_overlaps(
    ranges: &[(u64, u64)],
    idx: &mut usize,
    pos: u64,
    end: u64,
    mut f: impl FnMut(u64, u64) -> Result<()>,
) -> Result<()> {
    while *idx < ranges.len() && ranges[*idx].0 + ranges[*idx].1 <= pos {
        *idx += 1;
    }
    let mut i = *idx;
    while i < ranges.len() && ranges[i].0 < end {
        let s = ranges[i].0.max(pos);
        let e = (ranges[i].0 + ranges[i].1).min(end);
        if s < e {
            f(s, e)?;
        }
        i += 1;
    }
    Ok(())
}

fn read_exact(f: &File, buf: &mut [u8], off: u64, op: Op, path: &Path) -> Result<()> {
    let n = read_full_at(f, buf, off).ctx(op, path)?;
    if n < buf.len() {
        return Err(CowError::Io {
            op,
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "short read: {} bytes at offset {off}, {n} present",
                    buf.len()
                ),
            ),
        });
    }
    Ok(())
}

/// Merge `cow` (backing from the header, or `opts.backing`) into a new file
/// `out`. Refuses an existing `out` unless `opts.force`.
pub fn moo_new(cow_path: &Path, out: &Path, opts: &MooOptions) -> Result<MooStats> {
    let cow = CowFile::open(cow_path, false)?;
    if opts.check_locks {
        crate::ensure_unlocked(&cow.file, cow_path, umlkit_sys::file::LockKind::Read)?;
    }
    let backing = opts.backing.clone().unwrap_or_else(|| cow.backing_path());
    validate_backing(&cow, &backing)?;
    let bf = File::open(&backing).ctx(Op::OpenBacking, &backing)?;
    if !opts.force && out.symlink_metadata().is_ok() {
        return Err(CowError::Exists {
            path: out.to_path_buf(),
        });
    }
    let bm = cow.read_bitmap()?;
    let n = cow.layout.merge_sectors;
    cow.check_data_area(&bm, n)?;

    let tmp_path = temp_sibling(out, "umlkit-moo");
    let of = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp_path)
        .ctx(Op::CreateOutput, out)?;
    let mut tmp = TempFile {
        path: tmp_path,
        armed: true,
    };
    let stats = merge_into(&cow, &bm, &bf, &backing, &of, out)?;
    drop(of);
    std::fs::rename(&tmp.path, out).ctx(Op::Rename, out)?;
    tmp.armed = false;
    Ok(stats)
}

fn merge_into(
    cow: &CowFile,
    bm: &[u8],
    bf: &File,
    backing: &Path,
    of: &File,
    out: &Path,
) -> Result<MooStats> {
    let ss = u64::from(cow.header.sector_size);
    let n = cow.layout.merge_sectors;
    let total = n * ss;
    let mut st = MooStats::default();
    let bext = umlkit_sys::file::data_extents(bf, 0, total).ctx(Op::ReadBacking, backing)?;
    let cruns: Vec<(u64, u64)> = SetRuns::new(bm, n)
        .map(|(s, c)| {
            st.cow_sectors += c;
            (s * ss, c * ss)
        })
        .collect();
    let windows = block_ranges(bext.iter().chain(cruns.iter()).copied().collect(), total);
    of.set_len(total).ctx(Op::WriteData, out)?;

    let mut buf = vec![0u8; WINDOW as usize];
    let (mut bi, mut ci) = (0usize, 0usize);
    for &(a, b) in &windows {
        let mut pos = a;
        while pos < b {
            let end = (pos + WINDOW).min(b);
            let len = (end - pos) as usize;
            let w = &mut buf[..len];
            w.fill(0);
            for_overlaps(&bext, &mut bi, pos, end, |s, e| {
                st.bytes_read += e - s;
                read_exact(
                    bf,
                    &mut w[(s - pos) as usize..(e - pos) as usize],
                    s,
                    Op::ReadBacking,
                    backing,
                )
            })?;
            for_overlaps(&cruns, &mut ci, pos, end, |s, e| {
                st.bytes_read += e - s;
                read_exact(
                    &cow.file,
                    &mut w[(s - pos) as usize..(e - pos) as usize],
                    cow.layout.data_offset + s,
                    Op::ReadData,
                    &cow.path,
                )
            })?;
            // Write the runs of non-zero blocks; zero blocks stay holes.
            let bl = BLOCK as usize;
            let mut i = 0usize;
            while i < len {
                let j = (i + bl).min(len);
                if all_zero(&w[i..j]) {
                    i = j;
                    continue;
                }
                let mut k = j;
                while k < len {
                    let k2 = (k + bl).min(len);
                    if all_zero(&w[k..k2]) {
                        break;
                    }
                    k = k2;
                }
                of.write_all_at(&w[i..k], pos + i as u64)
                    .ctx(Op::WriteData, out)?;
                st.bytes_written += (k - i) as u64;
                i = k;
            }
            pos = end;
        }
    }
    // uml_moo always writes the last sector, zero or not.
    if n > 0 {
        let last = n - 1;
        let mut sec = vec![0u8; ss as usize];
        if cow_format::bit_is_set(bm, last) {
            read_exact(
                &cow.file,
                &mut sec,
                cow.layout.data_offset + last * ss,
                Op::ReadData,
                &cow.path,
            )?;
        } else {
            read_exact(bf, &mut sec, last * ss, Op::ReadBacking, backing)?;
        }
        of.write_all_at(&sec, last * ss).ctx(Op::WriteData, out)?;
    }
    Ok(st)
}

/// The sidecar journal of an in-place merge: `<COW>.moo-journal`.
pub fn journal_path(cow: &Path) -> PathBuf {
    let mut s = cow.as_os_str().to_os_string();
    s.push(".moo-journal");
    PathBuf::from(s)
}

const JOURNAL_MAGIC: &str = "umlkit moo -d journal 1";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// What the journal records: the backing file and the size/mtime the COW
/// header recorded before the merge started changing the backing file.
#[derive(Debug, PartialEq, Eq)]
struct Journal {
    backing: Vec<u8>,
    size: u64,
    mtime: u32,
}

impl Journal {
    fn render(&self) -> String {
        format!(
            "{JOURNAL_MAGIC}\nbacking={}\nsize={}\nmtime={}\n",
            hex(&self.backing),
            self.size,
            self.mtime
        )
    }

    fn parse(text: &str) -> Option<Journal> {
        let mut lines = text.lines();
        if lines.next()? != JOURNAL_MAGIC {
            return None;
        }
        let (mut backing, mut size, mut mtime) = (None, None, None);
        for l in lines {
            let (k, v) = l.split_once('=')?;
            match k {
                "backing" => backing = unhex(v),
                "size" => size = v.parse().ok(),
                "mtime" => mtime = v.parse().ok(),
                _ => {}
            }
        }
        Some(Journal {
            backing: backing?,
            size: size?,
            mtime: mtime?,
        })
    }
}

fn maybe_die(chunks: u64) {
    if let Some(n) = std::env::var(KILL_AFTER_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        if chunks >= n {
            let _ = umlkit_sys::process::kill(std::process::id(), umlkit_sys::process::SIGKILL);
        }
    }
}

/// Merge the COW into its backing file in place (`uml_moo -d`).
///
/// Crash safety: before the first write to the backing file, a journal
/// `COW.moo-journal` is written and synced, recording the backing path and
/// the size/mtime the COW header expects. The COW file itself is never
/// changed. The merge only writes COW data over the backing file's
/// corresponding sectors, so applying it again is harmless. If the merge
/// is interrupted, the backing file's mtime has changed and a normal
/// validation would refuse it; re-running `moo -d` on the same COW finds the
/// journal, checks it matches the COW header and the backing size, skips the
/// mtime check and applies the whole merge again. The backing file is synced
/// before the journal is removed.
pub fn moo_in_place(cow_path: &Path, opts: &MooOptions) -> Result<MooStats> {
    let cow = CowFile::open(cow_path, false)?;
    let backing = opts.backing.clone().unwrap_or_else(|| cow.backing_path());
    let jpath = journal_path(cow_path);
    // Record the backing file by its canonical path, so a resume may name
    // it differently (relative, through a link).
    let canon = std::fs::canonicalize(&backing).unwrap_or_else(|_| backing.clone());
    let expected = Journal {
        backing: canon.as_os_str().as_bytes().to_vec(),
        size: cow.header.size,
        mtime: cow.header.mtime,
    };
    let resumed = match std::fs::read(&jpath) {
        Ok(bytes) => {
            let j = Journal::parse(&String::from_utf8_lossy(&bytes)).ok_or_else(|| {
                CowError::Journal {
                    path: jpath.clone(),
                    msg: "unreadable journal; it is not from umlkit moo -d".into(),
                }
            })?;
            if j != expected {
                return Err(CowError::Journal {
                    path: jpath.clone(),
                    msg: format!(
                        "it records backing file \"{}\" (size {}, mtime {}) but the COW header of {} says \"{}\" (size {}, mtime {}); finish that merge with the same COW and -b, or remove the journal if that merge is known to be complete",
                        PathBuf::from(std::ffi::OsString::from_vec(j.backing.clone())).display(),
                        j.size,
                        j.mtime,
                        cow_path.display(),
                        backing.display(),
                        expected.size,
                        expected.mtime
                    ),
                });
            }
            let (size, _, _) = backing_stat(&backing)?;
            if size != cow.header.size {
                return Err(CowError::SizeMismatch {
                    cow: cow_path.to_path_buf(),
                    backing,
                    recorded: cow.header.size,
                    actual: size,
                });
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            validate_backing(&cow, &backing)?;
            false
        }
        Err(e) => return Err(e).ctx(Op::Journal, &jpath),
    };
    let bf = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&backing)
        .ctx(Op::OpenBacking, &backing)?;
    if opts.backing.is_none() {
        // the header names the file: only the user's own is merged into
        // unless -b names it explicitly (uml_moo overwrites anything)
        use std::os::unix::fs::MetadataExt;
        let owner = bf.metadata().ctx(Op::StatBacking, &backing)?.uid();
        let me = umlkit_sys::net::euid();
        if owner != me {
            return Err(CowError::ForeignBacking {
                cow: cow_path.to_path_buf(),
                backing,
                owner,
                me,
            });
        }
    }
    if opts.check_locks {
        crate::ensure_unlocked(&cow.file, cow_path, umlkit_sys::file::LockKind::Read)?;
        crate::ensure_unlocked(&bf, &backing, umlkit_sys::file::LockKind::Write)?;
    }
    let bm = cow.read_bitmap()?;
    let n = cow.layout.merge_sectors;
    cow.check_data_area(&bm, n)?;

    if !resumed {
        let tmp = temp_sibling(&jpath, "new");
        std::fs::write(&tmp, expected.render())
            .and_then(|_| File::open(&tmp)?.sync_all())
            .and_then(|_| std::fs::rename(&tmp, &jpath))
            .ctx(Op::Journal, &jpath)?;
        sync_parent(&jpath)?;
    }

    let ss = u64::from(cow.header.sector_size);
    let mut st = MooStats {
        resumed,
        ..Default::default()
    };
    let chunk_sectors = WINDOW / ss;
    let mut cbuf = vec![0u8; WINDOW as usize];
    let mut bbuf = vec![0u8; WINDOW as usize];
    let mut chunks = 0u64;
    for (s0, c0) in SetRuns::new(&bm, n) {
        st.cow_sectors += c0;
        let mut s = s0;
        while s < s0 + c0 {
            let c = (s0 + c0 - s).min(chunk_sectors);
            let len = (c * ss) as usize;
            let off = s * ss;
            read_exact(
                &cow.file,
                &mut cbuf[..len],
                cow.layout.data_offset + off,
                Op::ReadData,
                &cow.path,
            )?;
            let got = read_full_at(&bf, &mut bbuf[..len], off).ctx(Op::ReadBacking, &backing)?;
            bbuf[got..len].fill(0);
            st.bytes_read += 2 * len as u64;
            // Write only the sectors that differ, coalesced into runs.
            let sl = ss as usize;
            let mut i = 0usize;
            while i < len {
                if cbuf[i..i + sl] == bbuf[i..i + sl] {
                    i += sl;
                    continue;
                }
                let mut k = i + sl;
                while k < len && cbuf[k..k + sl] != bbuf[k..k + sl] {
                    k += sl;
                }
                bf.write_all_at(&cbuf[i..k], off + i as u64)
                    .ctx(Op::WriteData, &backing)?;
                st.bytes_written += (k - i) as u64;
                i = k;
            }
            chunks += 1;
            maybe_die(chunks);
            s += c;
        }
    }
    bf.sync_all().ctx(Op::Sync, &backing)?;
    std::fs::remove_file(&jpath).ctx(Op::Journal, &jpath)?;
    sync_parent(&jpath)?;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_align() {
        let r = block_ranges(vec![(5000, 10), (0, 512), (4096, 100), (20000, 1)], 20001);
        assert_eq!(r, vec![(0, 8192), (16384, 20001)]);
    }

    #[test]
    fn journal_round_trip() {
        let j = Journal {
            backing: b"/a b/\xffimg".to_vec(),
            size: 42,
            mtime: 7,
        };
        assert_eq!(Journal::parse(&j.render()), Some(j));
        assert_eq!(Journal::parse("garbage"), None);
    }

    #[test]
    fn zero_check() {
        let mut v = vec![0u8; 4099];
        assert!(all_zero(&v));
        v[4098] = 1;
        assert!(!all_zero(&v));
    }
}

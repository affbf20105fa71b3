//! COW file I/O for User-Mode Linux disks: create (`mkcow`), merge (`moo`,
//! to a new file or in place with a crash-safe journal), inspect (`info`),
//! validate (`check`), repair (`rebase`) and move (`pack`/`unpack` as a
//! sparse tar). The byte formats live in `cow-format`; raw syscalls in
//! `umlkit-sys`.

pub mod error;
pub mod moo;
pub mod tar;

use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use cow_format::{CowHeader, Layout};

use error::IoCtx;
pub use error::{CowError, Op, Result};
pub use moo::{moo_in_place, moo_new, MooOptions, MooStats};

/// An open COW file with its parsed header.
pub struct CowFile {
    pub path: PathBuf,
    pub file: File,
    pub header: CowHeader,
    pub layout: Layout,
    /// Length of the COW file on disk.
    pub len: u64,
}

/// Read up to `buf.len()` bytes at `off`, stopping early only at EOF.
pub(crate) fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl CowFile {
    /// Open `path` (read-only, or read-write) and parse its header.
    pub fn open(path: &Path, write: bool) -> Result<CowFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .ctx(Op::OpenCow, path)?;
        Self::from_file(path, file)
    }

    pub fn from_file(path: &Path, file: File) -> Result<CowFile> {
        let mut buf = vec![0u8; cow_format::MAX_HEADER_LEN];
        let n = read_full_at(&file, &mut buf, 0).ctx(Op::ReadHeader, path)?;
        let header = CowHeader::parse(&buf[..n]).map_err(|source| CowError::Format {
            path: path.to_path_buf(),
            source,
        })?;
        let layout = header.layout().expect("validated by parse");
        let len = file.metadata().ctx(Op::ReadHeader, path)?.len();
        Ok(CowFile {
            path: path.to_path_buf(),
            file,
            header,
            layout,
            len,
        })
    }

    /// The backing path recorded in the header.
    pub fn backing_path(&self) -> PathBuf {
        PathBuf::from(std::ffi::OsString::from_vec(
            self.header.backing_file.clone(),
        ))
    }

    /// Read the whole bitmap; a short file is an error naming the COW.
    pub fn read_bitmap(&self) -> Result<Vec<u8>> {
        // Check the length first: a corrupt header could claim a huge size.
        let present = self.len.saturating_sub(self.layout.bitmap_offset);
        if present < self.layout.bitmap_len {
            return Err(CowError::Io {
                op: Op::ReadBitmap,
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "truncated bitmap: {} bytes needed at offset {}, {} present",
                        self.layout.bitmap_len, self.layout.bitmap_offset, present
                    ),
                ),
            });
        }
        let mut bm = vec![0u8; self.layout.bitmap_len as usize];
        let n = read_full_at(&self.file, &mut bm, self.layout.bitmap_offset)
            .ctx(Op::ReadBitmap, &self.path)?;
        if n < bm.len() {
            return Err(CowError::Io {
                op: Op::ReadBitmap,
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "truncated bitmap: {} bytes needed at offset {}, {} present",
                        bm.len(),
                        self.layout.bitmap_offset,
                        n
                    ),
                ),
            });
        }
        Ok(bm)
    }

    /// Fail if a sector marked in `bitmap` (among the first `sectors`) has
    /// its data past the end of the file.
    pub fn check_data_area(&self, bitmap: &[u8], sectors: u64) -> Result<()> {
        let ss = u64::from(self.header.sector_size);
        if let Some((s, n)) = cow_format::SetRuns::new(bitmap, sectors).last() {
            let last = s + n - 1;
            let needed = self.layout.data_offset + (last + 1) * ss;
            if needed > self.len {
                return Err(CowError::DataShort {
                    path: self.path.clone(),
                    sector: last,
                    needed,
                    len: self.len,
                });
            }
        }
        Ok(())
    }

    /// Rewrite the header in place (same version, same layout) and sync.
    pub fn write_header(&self, h: &CowHeader) -> Result<()> {
        let bytes = h.to_bytes().map_err(|source| CowError::BackingName {
            name: PathBuf::from(std::ffi::OsStr::from_bytes(&h.backing_file)),
            source,
        })?;
        self.file
            .write_all_at(&bytes, 0)
            .ctx(Op::WriteCow, &self.path)?;
        self.file.sync_all().ctx(Op::Sync, &self.path)
    }
}

/// Fail with [`CowError::InUse`] if another process holds an `fcntl` lock
/// on `f` that conflicts with `kind` (the UML kernel locks its disks).
pub fn ensure_unlocked(f: &File, path: &Path, kind: umlkit_sys::file::LockKind) -> Result<()> {
    match umlkit_sys::file::lock_holder(f, kind) {
        Ok(Some(pid)) => Err(CowError::InUse {
            path: path.to_path_buf(),
            pid,
        }),
        // A file system without POSIX locks cannot tell; go on.
        Ok(None) | Err(_) => Ok(()),
    }
}

/// Backing size and mtime as the C tools see them: `st_size` (or the device
/// size for block devices) and `st_mtime`.
pub fn backing_stat(path: &Path) -> Result<(u64, i64, Metadata)> {
    let md = std::fs::metadata(path).ctx(Op::StatBacking, path)?;
    let mut size = md.len();
    use std::os::unix::fs::FileTypeExt;
    if md.file_type().is_block_device() {
        use std::io::Seek;
        let mut f = File::open(path).ctx(Op::StatBacking, path)?;
        size = f
            .seek(std::io::SeekFrom::End(0))
            .ctx(Op::StatBacking, path)?;
    }
    Ok((size, md.mtime(), md))
}

/// Check the kernel's rule: backing size and mtime exactly equal the header's.
pub fn validate_backing(cow: &CowFile, backing: &Path) -> Result<(u64, i64)> {
    let (size, mtime, _) = backing_stat(backing)?;
    if size != cow.header.size {
        return Err(CowError::SizeMismatch {
            cow: cow.path.clone(),
            backing: backing.to_path_buf(),
            recorded: cow.header.size,
            actual: size,
        });
    }
    if mtime != i64::from(cow.header.mtime) {
        return Err(CowError::MtimeMismatch {
            cow: cow.path.clone(),
            backing: backing.to_path_buf(),
            recorded: cow.header.mtime,
            actual: mtime,
        });
    }
    Ok((size, mtime))
}

/// Absolutize a backing name the way uml_mkcow and the kernel do (see
/// `cow_format::path`). With `c_compat` the C quirk "/name fails" is kept;
/// otherwise "/name" is stored as "/name".
pub fn absolutize(name: &Path, c_compat: bool) -> Result<Vec<u8>> {
    let bytes = name.as_os_str().as_bytes();
    let plan = cow_format::absolutize_plan(bytes).map_err(|source| CowError::BackingName {
        name: name.to_path_buf(),
        source,
    })?;
    let dir = match &plan.dir {
        None => std::env::current_dir().map_err(|source| CowError::Absolutize {
            name: name.to_path_buf(),
            source,
        })?,
        Some(d) if d.is_empty() => {
            if c_compat {
                return Err(CowError::Absolutize {
                    name: name.to_path_buf(),
                    source: std::io::Error::from_raw_os_error(2),
                });
            }
            let mut v = b"/".to_vec();
            v.extend_from_slice(&plan.last);
            return cow_format::header::check_backing_path(&v)
                .map(|_| v)
                .map_err(|source| CowError::BackingName {
                    name: name.to_path_buf(),
                    source,
                });
        }
        Some(d) => {
            let dp = Path::new(std::ffi::OsStr::from_bytes(d));
            let md = std::fs::metadata(dp).map_err(|source| CowError::Absolutize {
                name: name.to_path_buf(),
                source,
            })?;
            if !md.is_dir() {
                return Err(CowError::Absolutize {
                    name: name.to_path_buf(),
                    source: std::io::Error::from_raw_os_error(20),
                });
            }
            std::fs::canonicalize(dp).map_err(|source| CowError::Absolutize {
                name: name.to_path_buf(),
                source,
            })?
        }
    };
    cow_format::join_absolute(dir.as_os_str().as_bytes(), &plan.last).map_err(|source| {
        CowError::BackingName {
            name: name.to_path_buf(),
            source,
        }
    })
}

/// Options of [`mkcow`].
#[derive(Debug, Clone, Default)]
pub struct MkcowOptions {
    /// Open without O_EXCL. Like uml_mkcow -f this does NOT truncate: the
    /// header is rewritten and one byte written at the new end.
    pub force: bool,
    /// Keep uml_mkcow's quirks exactly (an absolute "/name" fails).
    pub c_compat: bool,
}

/// Create a v3 COW file over `backing`, byte-identical to uml_mkcow.
/// On failure, a COW file this call created is removed again.
pub fn mkcow(cow: &Path, backing: &Path, opts: &MkcowOptions) -> Result<CowHeader> {
    let existed = opts.force && cow.symlink_metadata().is_ok();
    let mut oo = OpenOptions::new();
    oo.read(true).write(true).mode(0o644);
    if opts.force {
        oo.create(true);
    } else {
        oo.create_new(true);
    }
    let file = oo.open(cow).ctx(Op::OpenCow, cow)?;
    if existed && !opts.c_compat {
        ensure_unlocked(&file, cow, umlkit_sys::file::LockKind::Write)?;
    }
    let r = write_new_header(&file, cow, backing, opts.c_compat);
    if r.is_err() && !existed {
        let _ = std::fs::remove_file(cow);
    }
    r
}

fn write_new_header(file: &File, cow: &Path, backing: &Path, c_compat: bool) -> Result<CowHeader> {
    let abs = absolutize(backing, c_compat)?;
    let abs_path = PathBuf::from(std::ffi::OsString::from_vec(abs.clone()));
    let (size, mtime, _) = backing_stat(&abs_path)?;
    let h =
        CowHeader::new_v3(&abs, mtime as u32, size).map_err(|source| CowError::BackingName {
            name: backing.to_path_buf(),
            source,
        })?;
    let bytes = h.to_v3_bytes().expect("checked by new_v3");
    file.write_all_at(&bytes, 0).ctx(Op::WriteCow, cow)?;
    let l = h.layout().expect("checked by new_v3");
    file.write_all_at(&[0], l.file_len - 1)
        .ctx(Op::WriteCow, cow)?;
    Ok(h)
}

/// What `umlkit cow info` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CowInfo {
    pub path: String,
    pub version: String,
    pub backing_file: String,
    pub recorded_size: u64,
    pub recorded_mtime: u32,
    /// Current size of the backing file, None if it cannot be stat'ed.
    pub current_size: Option<u64>,
    pub current_mtime: Option<i64>,
    /// Why the backing file cannot be used, None when it validates.
    pub backing_problem: Option<String>,
    pub sector_size: u32,
    pub alignment: u32,
    pub bitmap_offset: u64,
    pub bitmap_len: u64,
    pub data_offset: u64,
    pub file_len: u64,
    pub sectors: u64,
    pub sectors_changed: u64,
    pub percent_changed: f64,
    pub allocated_bytes: u64,
    /// Path of an interrupted in-place merge's journal, if one exists.
    pub merge_journal: Option<String>,
}

/// Inspect a COW file (and how its backing file compares).
pub fn info(path: &Path) -> Result<CowInfo> {
    let cow = CowFile::open(path, false)?;
    let bm = cow.read_bitmap()?;
    let changed = cow_format::count_set(&bm, cow.layout.sectors);
    let backing = cow.backing_path();
    let (current_size, current_mtime) = match backing_stat(&backing) {
        Ok((s, m, _)) => (Some(s), Some(m)),
        Err(_) => (None, None),
    };
    let backing_problem = validate_backing(&cow, &backing)
        .err()
        .map(|e| error_text(&e));
    let md = cow.file.metadata().ctx(Op::ReadHeader, path)?;
    Ok(CowInfo {
        path: path.display().to_string(),
        version: cow.header.version.to_string(),
        backing_file: backing.display().to_string(),
        recorded_size: cow.header.size,
        recorded_mtime: cow.header.mtime,
        current_size,
        current_mtime,
        backing_problem,
        sector_size: cow.header.sector_size,
        alignment: cow.header.alignment,
        bitmap_offset: cow.layout.bitmap_offset,
        bitmap_len: cow.layout.bitmap_len,
        data_offset: cow.layout.data_offset,
        file_len: cow.len,
        sectors: cow.layout.sectors,
        sectors_changed: changed,
        percent_changed: if cow.layout.sectors == 0 {
            0.0
        } else {
            changed as f64 * 100.0 / cow.layout.sectors as f64
        },
        allocated_bytes: md.blocks() * 512,
        merge_journal: Some(moo::journal_path(path))
            .filter(|j| j.exists())
            .map(|j| j.display().to_string()),
    })
}

/// An error and its causes on one line.
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// The kernel's check: header readable, bitmap present, data area long
/// enough, backing size and mtime exactly equal. Returns the backing path.
pub fn check(path: &Path) -> Result<PathBuf> {
    let cow = CowFile::open(path, false)?;
    let journal = moo::journal_path(path);
    if journal.exists() {
        return Err(CowError::Journal {
            path: journal,
            msg: format!(
                "an in-place merge of {} into {} was interrupted; the backing file is partly merged. Finish it with `umlkit moo -d {}` (add the same -b if one was used)",
                path.display(),
                cow.backing_path().display(),
                path.display()
            ),
        });
    }
    let bm = cow.read_bitmap()?;
    cow.check_data_area(&bm, cow.layout.sectors)?;
    let backing = cow.backing_path();
    validate_backing(&cow, &backing)?;
    Ok(backing)
}

/// What [`rebase`] changes.
#[derive(Debug, Clone, Default)]
pub struct RebaseOptions {
    /// New backing path (checked: size and mtime must match unless
    /// `accept_mtime`).
    pub backing: Option<PathBuf>,
    /// Take the backing file's current mtime (the size must still match).
    pub accept_mtime: bool,
}

/// Rewrite a COW header's backing path and/or recorded mtime in place.
/// Returns (old header, new header).
pub fn rebase(path: &Path, opts: &RebaseOptions) -> Result<(CowHeader, CowHeader)> {
    let cow = CowFile::open(path, true)?;
    ensure_unlocked(&cow.file, path, umlkit_sys::file::LockKind::Write)?;
    let old = cow.header.clone();
    let mut new = old.clone();
    let backing_path = match &opts.backing {
        Some(b) => {
            let abs = absolutize(b, false)?;
            new.backing_file = abs;
            PathBuf::from(std::ffi::OsString::from_vec(new.backing_file.clone()))
        }
        None => cow.backing_path(),
    };
    let (size, mtime, _) = backing_stat(&backing_path)?;
    if size != old.size {
        return Err(CowError::SizeMismatch {
            cow: path.to_path_buf(),
            backing: backing_path,
            recorded: old.size,
            actual: size,
        });
    }
    if mtime != i64::from(old.mtime) {
        if !opts.accept_mtime {
            return Err(CowError::MtimeMismatch {
                cow: path.to_path_buf(),
                backing: backing_path,
                recorded: old.mtime,
                actual: mtime,
            });
        }
        new.mtime = mtime as u32;
    }
    if new != old {
        cow.write_header(&new)?;
    }
    Ok((old, new))
}

/// Bytes allocated on disk for `path`.
pub fn allocated_bytes(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).ctx(Op::Other, path)?.blocks() * 512)
}

/// A temporary name next to `path` (same directory, so rename is atomic).
pub(crate) fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join(format!(".{name}.{tag}.{}", std::process::id()))
}

/// fsync the directory holding `path` (after a rename or unlink in it).
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(Op::Sync, dir)
}

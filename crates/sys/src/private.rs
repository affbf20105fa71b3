//! Private state on disk: directories only their owner can enter, files
//! only their owner can read, written whole (unique temp name + rename)
//! under an advisory lock, never through a symlink.
//!
//! One implementation for every state dir umlkit keeps (guest store, lab
//! state, image cache, switch dirs a lab creates):
//! - [`private_dir`]: create-or-verify a directory: not a symlink, owned by
//!   the effective uid, not group/world writable; created (and, when asked,
//!   tightened) to mode 0700 whatever the umask.
//! - [`write_atomic`]: a 0600 file replaced atomically, temp name unique per
//!   writer, opened with `O_EXCL|O_NOFOLLOW`.
//! - [`StateLock`]: `flock(2)` on a lock file beside the state, shared for
//!   readers, exclusive for writers.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::net::euid;

/// Why a directory cannot hold private state.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{} is a symbolic link; refusing to keep state there (remove it)", .0.display())]
    Symlink(PathBuf),
    #[error("{} is not a directory", .0.display())]
    NotDir(PathBuf),
    #[error(
        "{} belongs to uid {owner}, not to you (uid {euid}); refusing to keep state there \
         (someone else created it: remove it or choose another state dir)", path.display()
    )]
    NotOwned {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    #[error(
        "{} has mode {mode:04o}: other users can write there; refusing to keep state in it \
         (chmod go-w it or choose another state dir)", path.display()
    )]
    Writable { path: PathBuf, mode: u32 },
}

/// Set the process umask; returns the previous one.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask(2) cannot fail and touches no memory.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// Create `path` (and missing parents) as private directories, or verify an
/// existing one: not a symlink, a directory owned by the effective uid and
/// not writable by group or others. Directories this call creates get mode
/// 0700 (set explicitly, whatever the umask). With `tighten`, an existing
/// directory with any group/other bits is chmod'ed to 0700 (for dirs that
/// are entirely ours, such as one guest's or one lab's state dir).
pub fn private_dir(path: &Path, tighten: bool) -> Result<(), DirError> {
    // A concurrent `lab clean` may remove an empty parent between our
    // check and our mkdir: try again a few times.
    let mut tries = 0;
    loop {
        match private_dir_once(path, tighten) {
            Err(DirError::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound && tries < 3 =>
            {
                tries += 1;
            }
            r => return r,
        }
    }
}

fn private_dir_once(path: &Path, tighten: bool) -> Result<(), DirError> {
    match std::fs::symlink_metadata(path) {
        Ok(md) => return verify(path, &md, tighten),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(DirError::Io {
                path: path.to_path_buf(),
                what: "cannot inspect the state dir",
                source: e,
            })
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if std::fs::symlink_metadata(parent).is_err() {
            private_dir(parent, false)?;
        }
    }
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        // a concurrent creator won: verify what it made
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(DirError::Io {
                path: path.to_path_buf(),
                what: "cannot create the state dir",
                source: e,
            })
        }
    }
    let md = std::fs::symlink_metadata(path).map_err(|e| DirError::Io {
        path: path.to_path_buf(),
        what: "cannot inspect the state dir",
        source: e,
    })?;
    verify(path, &md, true)
}

fn verify(path: &Path, md: &std::fs::Metadata, tighten: bool) -> Result<(), DirError> {
    if md.file_type().is_symlink() {
        return Err(DirError::Symlink(path.to_path_buf()));
    }
    if !md.is_dir() {
        return Err(DirError::NotDir(path.to_path_buf()));
    }
    let me = euid();
    if md.uid() != me {
        return Err(DirError::NotOwned {
            path: path.to_path_buf(),
            owner: md.uid(),
            euid: me,
        });
    }
    let mode = md.mode() & 0o7777;
    if tighten && mode & 0o777 != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            DirError::Io {
                path: path.to_path_buf(),
                what: "cannot chmod the state dir to 0700",
                source: e,
            }
        })?;
        return Ok(());
    }
    if mode & 0o022 != 0 {
        return Err(DirError::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Options for files only the owner may read: mode 0600, never through a
/// symlink (`O_NOFOLLOW`).
pub fn private_open_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    o
}

/// Create (truncate) a private file: 0600 whatever the umask, not through a
/// symlink. An existing file gets its mode set to 0600 too.
pub fn create_private(path: &Path) -> io::Result<File> {
    let f = private_open_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Open a private file for appending (created 0600 when missing).
pub fn append_private(path: &Path) -> io::Result<File> {
    let f = private_open_options()
        .append(true)
        .create(true)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Read a file without following a symlink at its last component.
pub fn read_nofollow(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Replace `path` with `data` atomically: write a 0600 temp file with a
/// name unique to this process and call (`.NAME.PID.SEQ.tmp`, created with
/// `O_EXCL|O_NOFOLLOW`), then rename it over `path`. On any failure the
/// temp file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let r = (|| {
        let mut f = private_open_options()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(data)?;
        // ENOSPC and EDQUOT may only show at close on some file systems
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Rewrite an existing file in place (no new file, no rename): the fallback
/// that can still record an error on a full file system when `data` fits in
/// the blocks the file already has. Callers hold the exclusive
/// [`StateLock`], so readers never see a half-written file.
pub fn rewrite_in_place(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.write_all_at(data, 0)?;
    f.set_len(data.len() as u64)?;
    f.sync_data()
}

/// An advisory `flock(2)` on a lock file; released when dropped (or when the
/// process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    fn open(path: &Path) -> io::Result<File> {
        // Creating an empty file needs an inode but no data block, so this
        // works on a full file system too.
        private_open_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    }

    /// Take the lock exclusively (writers), waiting for other holders.
    pub fn exclusive(path: &Path) -> io::Result<StateLock> {
        let f = Self::open(path)?;
        f.lock()?;
        Ok(StateLock { _file: f })
    }

    /// Take the lock shared (readers), waiting for a writer to finish.
    pub fn shared(path: &Path) -> io::Result<StateLock> {
        let f = Self::open(path)?;
        f.lock_shared()?;
        Ok(StateLock { _file: f })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The umask is per process: tests that change it take turns.
    static UMASK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("umlkit-sys-private-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn private_dir_is_0700_whatever_the_umask() {
        let d = tmp("umask");
        let _g = UMASK.lock().unwrap_or_else(|e| e.into_inner());
        let old = set_umask(0o777);
        let r = private_dir(&d.join("a/b"), false);
        set_umask(old);
        r.unwrap();
        for p in [d.join("a/b"), d.join("a"), d.clone()] {
            let m = std::fs::metadata(&p).unwrap().mode() & 0o7777;
            assert_eq!(m, 0o700, "{}", p.display());
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn private_dir_refuses_symlink_and_world_writable() {
        let d = tmp("refuse");
        private_dir(&d, false).unwrap();
        let target = d.join("t");
        std::fs::create_dir(&target).unwrap();
        let link = d.join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            private_dir(&link, false),
            Err(DirError::Symlink(_))
        ));
        assert!(matches!(
            private_dir(&link, true),
            Err(DirError::Symlink(_))
        ));
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&target, false).unwrap_err();
        assert!(matches!(e, DirError::Writable { .. }), "{e}");
        assert!(e.to_string().contains(&target.display().to_string()));
        // ours entirely: tightened
        private_dir(&target, true).unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o700);
        let f = d.join("file");
        std::fs::write(&f, "x").unwrap();
        assert!(matches!(private_dir(&f, false), Err(DirError::NotDir(_))));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn write_atomic_is_0600_and_leaves_no_temp() {
        let d = tmp("atomic");
        private_dir(&d, false).unwrap();
        let p = d.join("state.json");
        let _g = UMASK.lock().unwrap_or_else(|e| e.into_inner());
        let old = set_umask(0);
        let r = write_atomic(&p, b"one");
        set_umask(old);
        r.unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
        // never through a symlink
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, d.join("link")).unwrap();
        assert!(rewrite_in_place(&d.join("link"), b"evil").is_err());
        assert!(read_nofollow(&d.join("link")).is_err());
        assert!(create_private(&d.join("link")).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        std::fs::remove_dir_all(&d).unwrap();
    }
}

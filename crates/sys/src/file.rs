//! Sparse files and copying: `SEEK_DATA`/`SEEK_HOLE` extent discovery and
//! `copy_file_range`. Plain positioned I/O uses `std::os::unix::fs::FileExt`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

fn lseek(f: &File, off: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let off =
        libc::off_t::try_from(off).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: lseek(2) takes a file descriptor that `f` keeps open for the
    // duration of the call and plain integers; it touches no memory of ours.
    let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

/// Offset of the first data byte at or after `off`, None if only a hole
/// (or EOF) follows.
pub fn seek_data(f: &File, off: u64) -> io::Result<Option<u64>> {
    lseek(f, off, libc::SEEK_DATA)
}

/// Offset of the first hole at or after `off` (EOF counts as a hole).
pub fn seek_hole(f: &File, off: u64) -> io::Result<u64> {
    Ok(lseek(f, off, libc::SEEK_HOLE)?.unwrap_or(off))
}

/// Data extents `(offset, len)` of `f` within `[start, end)`, in order, as
/// the file system reports them (`SEEK_DATA`/`SEEK_HOLE`). A file system
/// without hole support reports one extent covering everything.
pub fn data_extents(f: &File, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        let Some(d) = seek_data(f, pos)? else { break };
        if d >= end {
            break;
        }
        let h = seek_hole(f, d)?.min(end);
        if h <= d {
            break;
        }
        out.push((d, h - d));
        pos = h;
    }
    Ok(out)
}

/// `copy_file_range(2)`: copy up to `len` bytes from `src` at `src_off` to
/// `dst` at `dst_off` inside the kernel (reflinks where the file system can).
/// Returns the bytes copied (0 at EOF of `src`).
pub fn copy_file_range(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: usize,
) -> io::Result<usize> {
    let mut so = libc::loff_t::try_from(src_off)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut d_o = libc::loff_t::try_from(dst_off)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both descriptors are kept open by the borrowed `File`s; the
    // offset pointers point to live local variables the kernel updates; no
    // buffer of ours is involved.
    let r = unsafe {
        libc::copy_file_range(src.as_raw_fd(), &mut so, dst.as_raw_fd(), &mut d_o, len, 0)
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Copy `len` bytes with [`copy_file_range`], falling back to read/write
/// when the kernel refuses (EXDEV, EINVAL, ENOSYS, EOPNOTSUPP).
pub fn copy_range(src: &File, src_off: u64, dst: &File, dst_off: u64, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut done = 0u64;
    let mut fallback = false;
    let mut buf = Vec::new();
    while done < len {
        let chunk = (len - done).min(1 << 30) as usize;
        if !fallback {
            match copy_file_range(src, src_off + done, dst, dst_off + done, chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "source shorter than expected",
                    ))
                }
                Ok(n) => {
                    done += n as u64;
                    continue;
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                    ) =>
                {
                    fallback = true;
                }
                Err(e) => return Err(e),
            }
        }
        let n = chunk.min(4 << 20);
        buf.resize(n, 0);
        src.read_exact_at(&mut buf, src_off + done)?;
        dst.write_all_at(&buf, dst_off + done)?;
        done += n as u64;
    }
    Ok(())
}

/// A POSIX record lock type, for [`lock_holder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
}

/// The pid of a process holding an `fcntl` lock on the whole of `f` that
/// would conflict with taking `kind` (the UML kernel holds F_WRLCK on a
/// writable COW and F_RDLCK on a backing file), None when there is none.
/// Takes no lock itself (`F_GETLK`).
pub fn lock_holder(f: &File, kind: LockKind) -> io::Result<Option<u32>> {
    let mut fl = libc::flock {
        l_type: match kind {
            LockKind::Read => libc::F_RDLCK as libc::c_short,
            LockKind::Write => libc::F_WRLCK as libc::c_short,
        },
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    // SAFETY: F_GETLK reads and writes exactly one `struct flock`, which
    // `fl` is (a live, initialised local); the descriptor is kept open by `f`.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl as *mut libc::flock) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        Ok(None)
    } else {
        Ok(Some(fl.l_pid.max(0) as u32))
    }
}

/// `ELOOP`: what opening a symlink with `O_NOFOLLOW` fails with.
pub const ELOOP: i32 = libc::ELOOP;

/// Create or truncate the regular file `path` for writing with `mode`
/// (chmod'ed explicitly whatever the umask), never through a symlink
/// (`ELOOP`) and never blocking on a fifo put there.
pub fn create_nofollow(path: &std::path::Path, mode: u32) -> io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    f.set_len(0)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// Write `data` to `path` (created with `mode`, chmod'ed explicitly whatever
/// the umask, or truncated) without following a symlink at `path`: `O_NOFOLLOW`
/// makes the open fail with `ELOOP` instead. Only regular files are written.
pub fn write_nofollow(path: &std::path::Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    create_nofollow(path, mode)?.write_all(data)
}

/// Open `name` relative to the directory `dir` (or `name` as a path when
/// `dir` is None) with `O_PATH | O_NOFOLLOW`: a symlink is opened as the
/// link itself, never followed, so `metadata()` of the result tells what is
/// really there. Used to walk a path one component at a time without a
/// component being swapped under the walk.
pub fn open_path_nofollow(
    dir: Option<std::os::fd::BorrowedFd<'_>>,
    name: &std::ffi::OsStr,
) -> io::Result<File> {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let dirfd = dir.map(|d| d.as_raw_fd()).unwrap_or(libc::AT_FDCWD);
    // SAFETY: c is a NUL-terminated string living across the call; dirfd is
    // AT_FDCWD or a descriptor the caller's borrow keeps open.
    let fd = unsafe {
        libc::openat(
            dirfd,
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Open a directory without following a symlink in its last component
/// (`O_DIRECTORY | O_NOFOLLOW`): fails with ELOOP/ENOTDIR on a symlink or
/// a non-directory. The handle allows `fstat`, `fchmod` and `fchown`.
pub fn open_dir_nofollow(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Find an executable program: the first `DIR/name` on `$PATH` that is a
/// regular file with an execute bit, then `/usr/sbin` and `/sbin` (tools
/// such as `mkfs.ext4` live there and are often off a user's PATH). The one
/// `which` of umlkit (guest kernels, vde_switch, benchmarks, tests).
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|d| !d.as_os_str().is_empty())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_executables_only() {
        assert_eq!(
            which("sh").and_then(|p| p.file_name().map(|n| n.to_owned())),
            Some("sh".into())
        );
        assert_eq!(which("umlkit-no-such-program"), None);
        assert_eq!(which(""), None);
        assert_eq!(which("bin/sh"), None);
    }
    use std::os::unix::fs::FileExt;

    #[test]
    fn extents_of_sparse_file() {
        let dir = std::env::temp_dir().join(format!("umlkit-sys-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("sparse");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.set_len(16 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 8 << 20).unwrap();
        let ext = data_extents(&f, 0, 16 << 20).unwrap();
        assert!(!ext.is_empty());
        let total: u64 = ext.iter().map(|e| e.1).sum();
        assert!(total < 16 << 20, "hole not reported: {ext:?}");
        assert!(ext
            .iter()
            .any(|&(o, l)| o <= 8 << 20 && o + l >= (8 << 20) + 4096));
        let g = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("copy"))
            .unwrap();
        copy_range(&f, 8 << 20, &g, 0, 4096).unwrap();
        let mut b = [0u8; 4096];
        g.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b, [1u8; 4096]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

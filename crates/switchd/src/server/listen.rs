//! Listeners: the VDE switch directory and its `ctl` socket (which also
//! takes UML's daemon transport), the uml_switch control socket with its
//! shared data socket(s), and the management console socket.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use net_proto::ctl::SockAddrUn;
use umlkit_sys::net::{self as sys, Epoll, Interest, SockKind};

use super::token::Token;
use crate::{Error, Options};

/// The listening sockets and the files to remove at exit.
pub(super) struct Listeners {
    pub vde: Option<UnixListener>,
    pub uml: Option<UnixListener>,
    pub mgmt: Option<UnixListener>,
    /// Vector (bess) clients: a SOCK_SEQPACKET listener on `DIR/vec`.
    pub vec: Option<OwnedFd>,
    /// uml_switch data sockets: 0 abstract, 1 the `-compat-v0` named one.
    pub shared: Vec<OwnedFd>,
    /// Address of the abstract shared data socket (told to clients).
    pub shared_addr: SockAddrUn,
    /// Files to remove at exit.
    pub cleanup: Vec<PathBuf>,
}

impl Listeners {
    /// Create the directory and every socket of `opts`, watched by `epoll`.
    pub fn bind(opts: &Options, epoll: &Epoll) -> Result<Listeners, Error> {
        if opts.vde_dir.is_none() && opts.uml_ctl.is_none() {
            return Err(Error::NothingToServe);
        }
        let mut cleanup = Vec::new();
        let mut vde = None;
        if let Some(dir) = &opts.vde_dir {
            prepare_switch_dir(dir, opts.dirmode, opts.group)?;
            let ctl = dir.join("ctl");
            let l = bind_listener(&ctl)?;
            set_perm(&ctl, opts.mode, None, opts.group)?;
            cleanup.push(ctl);
            vde = Some(l);
        }
        let mut vec = None;
        if let (true, Some(dir)) = (opts.vector, &opts.vde_dir) {
            let path = crate::vector_socket(dir);
            let l = bind_seqpacket_listener(&path)?;
            set_perm(&path, opts.mode, None, opts.group)?;
            epoll
                .add(l.as_fd(), Token::VecListener.encode(), Interest::READ)
                .map_err(Error::Poll)?;
            cleanup.push(path);
            vec = Some(l);
        }
        let mut shared = Vec::new();
        let shared_addr = SockAddrUn::uml_abstract(std::process::id(), sys::time_usecs());
        let mut uml = None;
        if let Some(path) = &opts.uml_ctl {
            let l = bind_listener(path)?;
            if let Some(m) = opts.uml_mode {
                set_perm(path, m, None, opts.group)?;
            }
            cleanup.push(path.clone());
            uml = Some(l);
            let d = sys::unix_socket(SockKind::Dgram, true).map_err(Error::Socket)?;
            sys::bind_raw(d.as_fd(), shared_addr.as_bytes()).map_err(io_at(path))?;
            sys::set_buffer_sizes(d.as_fd(), opts.sock_buf, opts.sock_buf);
            shared.push(d);
            if let Some(v0) = &opts.v0_data {
                let a = SockAddrUn::from_path(v0).ok_or_else(|| Error::PathTooLong(v0.clone()))?;
                let _ = std::fs::remove_file(v0);
                let d = sys::unix_socket(SockKind::Dgram, true).map_err(Error::Socket)?;
                sys::bind_raw(d.as_fd(), a.as_bytes()).map_err(io_at(v0))?;
                sys::set_buffer_sizes(d.as_fd(), opts.sock_buf, opts.sock_buf);
                cleanup.push(v0.clone());
                shared.push(d);
            }
        }
        let mut mgmt = None;
        if let Some(path) = &opts.mgmt {
            let l = bind_listener(path)?;
            set_perm(path, opts.mgmt_mode, None, None)?;
            cleanup.push(path.clone());
            mgmt = Some(l);
        }
        for (l, t) in [
            (&vde, Token::VdeListener),
            (&uml, Token::UmlListener),
            (&mgmt, Token::MgmtListener),
        ] {
            if let Some(l) = l {
                epoll
                    .add(l.as_fd(), t.encode(), Interest::READ)
                    .map_err(Error::Poll)?;
            }
        }
        for (i, d) in shared.iter().enumerate() {
            epoll
                .add(d.as_fd(), Token::Shared(i as u32).encode(), Interest::READ)
                .map_err(Error::Poll)?;
        }
        Ok(Listeners {
            vde,
            uml,
            mgmt,
            vec,
            shared,
            shared_addr,
            cleanup,
        })
    }

    /// Remove the sockets made by [`Listeners::bind`] (and the switch
    /// directory if it is empty).
    pub fn remove_files(&self, opts: &Options) {
        for p in &self.cleanup {
            let _ = std::fs::remove_file(p);
        }
        if let Some(dir) = &opts.vde_dir {
            // only removes an empty directory
            let _ = std::fs::remove_dir(dir);
        }
    }
}

pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Bind {
        path: path.to_path_buf(),
        source,
    }
}

/// Bind a listening stream socket at `path`, replacing a stale socket file
/// (probe connect refused) and refusing a live one.
fn bind_listener(path: &Path) -> Result<UnixListener, Error> {
    bind_listening(path, SockKind::Stream).map(UnixListener::from)
}

/// Bind a listening SOCK_SEQPACKET socket at `path` (vector clients), with
/// the same rules as [`bind_listener`].
fn bind_seqpacket_listener(path: &Path) -> Result<OwnedFd, Error> {
    bind_listening(path, SockKind::SeqPacket)
}

/// A listening socket of `kind` at `path`: a stale socket file (a probe
/// connect is refused) is replaced, a live one refused, and any other file
/// in the way is never removed.
fn bind_listening(path: &Path, kind: SockKind) -> Result<OwnedFd, Error> {
    let addr = SockAddrUn::from_path(path).ok_or_else(|| Error::PathTooLong(path.into()))?;
    let sock = sys::unix_socket(kind, true).map_err(Error::Socket)?;
    if kind == SockKind::Stream {
        let _ = sys::set_reuseaddr(sock.as_fd());
    }
    if let Err(e) = sys::bind_raw(sock.as_fd(), addr.as_bytes()) {
        if e.kind() != io::ErrorKind::AddrInUse {
            return Err(io_at(path)(e));
        }
        let probe = sys::unix_socket(kind, false).map_err(Error::Socket)?;
        match sys::connect_raw(probe.as_fd(), addr.as_bytes()) {
            Ok(()) => return Err(Error::InUse(path.into())),
            Err(ce) if ce.kind() == io::ErrorKind::ConnectionRefused => {
                // only ever replace a stale *socket*, never another file
                use std::os::unix::fs::FileTypeExt;
                let is_socket = std::fs::symlink_metadata(path)
                    .map(|m| m.file_type().is_socket())
                    .unwrap_or(false);
                if !is_socket {
                    return Err(io_at(path)(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a file that is not a socket is in the way",
                    )));
                }
                std::fs::remove_file(path).map_err(io_at(path))?;
                sys::bind_raw(sock.as_fd(), addr.as_bytes()).map_err(io_at(path))?;
            }
            Err(_) => return Err(io_at(path)(e)),
        }
    }
    sys::listen(sock.as_fd(), 128).map_err(io_at(path))?;
    Ok(sock)
}

pub(super) fn set_perm(
    path: &Path,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), Error> {
    let perr = |source| Error::Perm {
        path: path.to_path_buf(),
        source,
    };
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(path, uid, gid).map_err(perr)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(perr)?;
    Ok(())
}

/// Create the switch directory, or take an existing one only if it is a
/// real directory (not a symlink) owned by the user running the switch;
/// then set its mode and group through the opened handle, so the checked
/// directory is the one changed.
fn prepare_switch_dir(dir: &Path, mode: u32, group: Option<u32>) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(Error::Mkdir {
                path: dir.to_path_buf(),
                source,
            })
        }
    }
    let lmeta = std::fs::symlink_metadata(dir).map_err(|source| Error::Mkdir {
        path: dir.to_path_buf(),
        source,
    })?;
    if lmeta.file_type().is_symlink() {
        return Err(Error::SymlinkDir(dir.to_path_buf()));
    }
    if !lmeta.is_dir() {
        return Err(Error::NotADir(dir.to_path_buf()));
    }
    // swapped for a symlink or a file since the check above: same errors
    let f =
        umlkit_sys::file::open_dir_nofollow(dir).map_err(|e| {
            match std::fs::symlink_metadata(dir) {
                Ok(m) if m.file_type().is_symlink() => Error::SymlinkDir(dir.to_path_buf()),
                Ok(m) if !m.is_dir() => Error::NotADir(dir.to_path_buf()),
                _ => Error::Mkdir {
                    path: dir.to_path_buf(),
                    source: e,
                },
            }
        })?;
    let perr = |source| Error::Perm {
        path: dir.to_path_buf(),
        source,
    };
    let meta = f.metadata().map_err(perr)?;
    let me = sys::euid();
    if meta.uid() != me {
        return Err(Error::ForeignDir {
            path: dir.to_path_buf(),
            owner: sys::user_name(meta.uid()).unwrap_or_else(|| meta.uid().to_string()),
            uid: meta.uid(),
            me,
        });
    }
    if group.is_some() {
        std::os::unix::fs::fchown(&f, None, group).map_err(perr)?;
    }
    // sticky when others may write in it: they may then add files but not
    // rename or remove the switch's sockets (`ctl`) to put their own there
    let mode = if mode & 0o022 != 0 {
        mode | 0o1000
    } else {
        mode
    };
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(perr)?;
    Ok(())
}

//! May a client make the switch send frames to a socket path?
//!
//! A client names its own datagram socket in the control request and the
//! switch sends frames there. A switch running as root (or as a user whose
//! control socket others may use, `-m 0666`) must not become a way to reach
//! a socket the client itself could not connect to. So the path is checked
//! with the credentials of the client (SO_PEERCRED of the control
//! connection): search permission on every directory, write permission on
//! the socket, which must be a socket and not a symbolic link. The walk
//! opens one component at a time without following symlinks and the switch
//! then connects through the directory it checked (`/proc/self/fd/N/NAME`),
//! so no component can be swapped between the check and the connect.

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use net_proto::ctl::SockAddrUn;

/// The credentials of a client process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cred {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl Cred {
    /// May this user `want` (r=4, w=2, x=1) on a file with `meta`?
    /// Classic Unix rules: the owner class, else the group class, else
    /// other; root may do anything (ACLs are not consulted).
    fn may(&self, meta: &Metadata, want: u32) -> bool {
        if self.uid == 0 {
            return true;
        }
        let mode = meta.mode();
        let bits = if meta.uid() == self.uid {
            mode >> 6
        } else if meta.gid() == self.gid || self.groups.contains(&meta.gid()) {
            mode >> 3
        } else {
            mode
        };
        bits & want == want
    }
}

/// A socket path checked for a client: connect through [`Checked::addr`].
#[derive(Debug)]
pub(crate) struct Checked {
    /// The checked directory holding the socket (kept open).
    dir: File,
    name: OsString,
    /// The same place by its canonical path (if the /proc path is too long).
    canon: PathBuf,
}

impl Checked {
    /// The address to connect to: through the opened directory when that
    /// fits in a sockaddr_un, else by the canonical path.
    pub fn addr(&self) -> Option<SockAddrUn> {
        let fd = PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd()));
        if !fd.is_dir() {
            return SockAddrUn::from_path(&self.canon); // no /proc
        }
        SockAddrUn::from_path(&fd.join(&self.name)).or_else(|| SockAddrUn::from_path(&self.canon))
    }
}

/// Check that `cred` may connect to the socket `path`; the error says why
/// not (for the log).
pub(crate) fn check(path: &Path, cred: &Cred) -> Result<Checked, String> {
    let shown = path.display();
    let name = path
        .file_name()
        .ok_or_else(|| format!("client socket {shown}: no file name"))?
        .to_os_string();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => return Err(format!("client socket {shown}: not an absolute path")),
    };
    let canon_parent = std::fs::canonicalize(parent)
        .map_err(|e| format!("client socket {shown}: cannot resolve its directory: {e}"))?;
    let mut dir = umlkit_sys::file::open_path_nofollow(None, "/".as_ref())
        .map_err(|e| format!("client socket {shown}: open /: {e}"))?;
    let mut here = PathBuf::from("/");
    for comp in canon_parent.components() {
        let Component::Normal(c) = comp else {
            continue;
        };
        let meta = dir
            .metadata()
            .map_err(|e| format!("{}: {e}", here.display()))?;
        if !cred.may(&meta, 1) {
            return Err(format!(
                "client socket {shown}: uid {} may not search {}",
                cred.uid,
                here.display()
            ));
        }
        here.push(c);
        let next = umlkit_sys::file::open_path_nofollow(Some(dir.as_fd()), c)
            .map_err(|e| format!("client socket {shown}: {}: {e}", here.display()))?;
        if !next.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(format!(
                "client socket {shown}: {} changed while being checked",
                here.display()
            ));
        }
        dir = next;
    }
    let meta = dir
        .metadata()
        .map_err(|e| format!("{}: {e}", here.display()))?;
    if !cred.may(&meta, 1) {
        return Err(format!(
            "client socket {shown}: uid {} may not search {}",
            cred.uid,
            here.display()
        ));
    }
    let sock = umlkit_sys::file::open_path_nofollow(Some(dir.as_fd()), &name)
        .and_then(|f| f.metadata())
        .map_err(|e| format!("client socket {shown}: {e}"))?;
    if sock.file_type().is_symlink() {
        return Err(format!("client socket {shown} is a symbolic link"));
    }
    if !sock.file_type().is_socket() {
        return Err(format!("client socket {shown} is not a socket"));
    }
    if !cred.may(&sock, 2) {
        return Err(format!(
            "client socket {shown} belongs to uid {} (mode {:04o}): uid {} may not connect to it",
            sock.uid(),
            sock.mode() & 0o7777,
            cred.uid
        ));
    }
    Ok(Checked {
        dir,
        canon: canon_parent.join(&name),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixDatagram;

    fn me() -> Cred {
        Cred {
            uid: umlkit_sys::net::euid(),
            gid: 0,
            groups: Vec::new(),
        }
    }

    #[test]
    fn own_socket_passes_and_symlink_or_file_does_not() {
        let t = tempfile::tempdir().unwrap();
        let s = t.path().join("s");
        let _sock = UnixDatagram::bind(&s).unwrap();
        let ok = check(&s, &me()).unwrap();
        // the address goes through the checked directory and works
        let a = ok.addr().unwrap();
        assert!(a.path().unwrap().starts_with("/proc/self/fd/"));
        let c = UnixDatagram::unbound().unwrap();
        c.connect(a.path().unwrap()).unwrap();
        c.send(b"x").unwrap();
        assert_eq!(_sock.recv(&mut [0u8; 4]).unwrap(), 1);
        let l = t.path().join("l");
        std::os::unix::fs::symlink(&s, &l).unwrap();
        assert!(check(&l, &me()).unwrap_err().contains("symbolic link"));
        let f = t.path().join("f");
        std::fs::write(&f, b"").unwrap();
        assert!(check(&f, &me()).unwrap_err().contains("not a socket"));
        assert!(check(Path::new("s"), &me()).is_err());
    }

    #[test]
    fn permission_classes() {
        let t = tempfile::tempdir().unwrap();
        let s = t.path().join("s");
        let _sock = UnixDatagram::bind(&s).unwrap();
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o600)).unwrap();
        let owner = std::fs::metadata(&s).unwrap();
        let stranger = Cred {
            uid: 4242,
            gid: 4242,
            groups: vec![],
        };
        if umlkit_sys::net::euid() == 0 && owner.uid() == 0 {
            assert!(check(&s, &stranger)
                .unwrap_err()
                .contains("may not connect"));
            std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o606)).unwrap();
            // the socket is open to others, but the directory is not searchable
            std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
            assert!(check(&s, &stranger).unwrap_err().contains("may not search"));
            std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o701)).unwrap();
            assert!(check(&s, &stranger).is_ok());
            let member = Cred {
                uid: 4242,
                gid: 4242,
                groups: vec![owner.gid()],
            };
            // group class applies (and has no rights), even though other has
            std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o606)).unwrap();
            std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
            assert!(check(&s, &member).is_err());
        }
    }
}

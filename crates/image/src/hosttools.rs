//! Host programs copied into the default image with the shared libraries
//! they need, where busybox's applets fall short of what labs run: bash for
//! startup files, full iproute2 (`ip`, `tc`, `bridge`), Thomas Habets'
//! `arping` (`-0`, `-B`), util-linux `lsblk`/`blkid`, procps `pgrep`/`pkill`
//! and net-tools `ifconfig` (`ifconfig eth0 A.B.C.D/N`).
//!
//! Libraries are found as the dynamic loader would without `ld.so.cache`:
//! `DT_RUNPATH`/`DT_RPATH`, then the standard directories; each lands at the
//! path it was found under, and the loader at its `PT_INTERP` path. A tool
//! missing on the host is skipped (busybox's applet stays). The cache key
//! covers every copied file by path, size and modification time, so a
//! package upgrade on the host rebuilds the image.

use std::path::{Path, PathBuf};

use crate::{elf, io, Error};

/// A host program the default image carries.
#[derive(Debug, Clone, Copy)]
pub struct HostTool {
    /// Path inside the image (relative to its root).
    pub image_path: &'static str,
    /// Host candidates; the first that exists (and qualifies) is used.
    pub host: &'static [&'static str],
    /// The Debian package that provides it.
    pub package: &'static str,
    /// Bytes the host file must contain (tells Habets' arping from iputils').
    pub must_contain: Option<&'static [u8]>,
}

const fn tool(
    image_path: &'static str,
    host: &'static [&'static str],
    package: &'static str,
) -> HostTool {
    HostTool {
        image_path,
        host,
        package,
        must_contain: None,
    }
}

/// The tools of the default image (each replaces any busybox applet of the
/// same name).
pub const HOST_TOOLS: &[HostTool] = &[
    tool(
        "bin/bash",
        &["/bin/bash-static", "/usr/bin/bash-static", "/bin/bash"],
        "bash-static",
    ),
    tool(
        "sbin/ip",
        &["/sbin/ip", "/usr/sbin/ip", "/bin/ip", "/usr/bin/ip"],
        "iproute2",
    ),
    tool("sbin/tc", &["/sbin/tc", "/usr/sbin/tc"], "iproute2"),
    tool(
        "sbin/bridge",
        &["/sbin/bridge", "/usr/sbin/bridge"],
        "iproute2",
    ),
    HostTool {
        image_path: "usr/sbin/arping",
        host: &["/usr/sbin/arping", "/sbin/arping"],
        package: "arping",
        must_contain: Some(b"Habets"),
    },
    tool("bin/lsblk", &["/bin/lsblk", "/usr/bin/lsblk"], "util-linux"),
    tool(
        "sbin/blkid",
        &["/sbin/blkid", "/usr/sbin/blkid"],
        "util-linux",
    ),
    tool("usr/bin/pgrep", &["/usr/bin/pgrep", "/bin/pgrep"], "procps"),
    tool("usr/bin/pkill", &["/usr/bin/pkill", "/bin/pkill"], "procps"),
    tool(
        "sbin/ifconfig",
        &["/sbin/ifconfig", "/usr/sbin/ifconfig"],
        "net-tools",
    ),
];

/// Host data copied along: (image dir, host dir, file name suffix).
const HOST_DATA: &[(&str, &str, &str)] = &[
    ("etc/iproute2", "/etc/iproute2", ""),
    // netem's delay distribution tables (`tc ... netem ... distribution`)
    (
        "usr/lib/x86_64-linux-gnu/tc",
        "/usr/lib/x86_64-linux-gnu/tc",
        ".dist",
    ),
];

const LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// What to copy: image-relative path and host file, plus the tools that
/// were not found on the host.
#[derive(Debug, Default)]
pub struct HostFiles {
    /// (path in the image, host file), executables first.
    pub files: Vec<(PathBuf, PathBuf)>,
    /// Names of the programs placed in the image (their busybox applets go).
    pub programs: Vec<String>,
    /// Tools not found on the host (image path, package).
    pub missing: Vec<(&'static str, &'static str)>,
}

fn qualifies(p: &Path, t: &HostTool) -> bool {
    if !p.is_file() {
        return false;
    }
    match t.must_contain {
        None => true,
        Some(m) => std::fs::read(p).is_ok_and(|d| d.windows(m.len()).any(|w| w == m)),
    }
}

/// The [`HOST_TOOLS`] not found on this host, as (program, Debian package):
/// the default image falls back to busybox's applet for them.
pub fn missing_on_host() -> Vec<(&'static str, &'static str)> {
    missing(HOST_TOOLS)
}

fn missing(tools: &[HostTool]) -> Vec<(&'static str, &'static str)> {
    tools
        .iter()
        .filter(|t| !t.host.iter().any(|p| qualifies(Path::new(p), t)))
        .map(|t| {
            let name = t.image_path.rsplit('/').next().unwrap_or(t.image_path);
            (name, t.package)
        })
        .collect()
}

/// Resolve `tools` (and the data files) on the host.
pub fn resolve(tools: &[HostTool]) -> Result<HostFiles, Error> {
    let mut out = HostFiles::default();
    let mut seen_libs = std::collections::BTreeSet::new();
    let mut queue: Vec<PathBuf> = Vec::new();
    for t in tools {
        let Some(host) = t.host.iter().map(Path::new).find(|p| qualifies(p, t)) else {
            out.missing.push((t.image_path, t.package));
            continue;
        };
        out.files
            .push((PathBuf::from(t.image_path), host.to_path_buf()));
        if let Some(n) = Path::new(t.image_path).file_name() {
            out.programs.push(n.to_string_lossy().into_owned());
        }
        queue.push(host.to_path_buf());
    }
    // Breadth-first over DT_NEEDED.
    while let Some(f) = queue.pop() {
        let data = std::fs::read(&f).map_err(io(&f, "cannot read"))?;
        let Some(info) = elf::parse(&data) else {
            return Err(Error::NotElf(f));
        };
        if let Some(interp) = &info.interp {
            if seen_libs.insert(interp.clone()) {
                let p = PathBuf::from(interp);
                if !p.is_file() {
                    return Err(Error::Missing {
                        what: format!("the dynamic loader {interp} of {}", f.display()),
                        hint: "install the Debian package libc6".into(),
                    });
                }
                out.files
                    .push((PathBuf::from(interp.trim_start_matches('/')), p));
            }
        }
        for soname in &info.needed {
            if !seen_libs.insert(soname.clone()) {
                continue;
            }
            let dirs = info
                .runpath
                .iter()
                .filter(|d| !d.contains('$'))
                .map(String::as_str)
                .chain(LIB_DIRS.iter().copied());
            let Some(lib) = dirs
                .map(|d| Path::new(d).join(soname))
                .find(|p| p.is_file())
            else {
                return Err(Error::Missing {
                    what: format!("the library {soname} needed by {}", f.display()),
                    hint: "reinstall the package that provides that program".into(),
                });
            };
            let rel = lib.strip_prefix("/").unwrap_or(&lib).to_path_buf();
            out.files.push((rel, lib.clone()));
            queue.push(lib);
        }
    }
    for (img, host, suffix) in HOST_DATA {
        let Ok(rd) = std::fs::read_dir(host) else {
            continue;
        };
        let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let hp = Path::new(host).join(&n);
            if n.to_string_lossy().ends_with(suffix) && hp.is_file() {
                out.files.push((Path::new(img).join(&n), hp));
            }
        }
    }
    Ok(out)
}

/// Feed every file's image path, host path, size and mtime to the cache key.
pub(crate) fn hash_into(h: &mut crate::Fnv, files: &HostFiles) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    for (img, host) in &files.files {
        let md = std::fs::metadata(host).map_err(io(host, "cannot stat"))?;
        h.add(img.as_os_str().as_encoded_bytes());
        h.add(host.as_os_str().as_encoded_bytes());
        h.add(&md.len().to_le_bytes());
        h.add(&md.mtime().to_le_bytes());
        h.add(&md.mtime_nsec().to_le_bytes());
    }
    Ok(())
}

/// Put the files into the staging tree `root`, replacing busybox applet
/// links of the same program names in the four bin directories.
pub(crate) fn stage(root: &Path, files: &HostFiles) -> Result<(), Error> {
    for name in &files.programs {
        for d in ["bin", "sbin", "usr/bin", "usr/sbin"] {
            let l = root.join(d).join(name);
            if l.symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                std::fs::remove_file(&l).map_err(io(&l, "cannot remove"))?;
            }
        }
    }
    for (img, host) in &files.files {
        let dst = root.join(img);
        if dst.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(io(p, "cannot create"))?;
        }
        // The real file (never a link into the host), hard-linked when the
        // file system allows (mkfs copies the bytes either way), else copied.
        let src = std::fs::canonicalize(host).map_err(io(host, "cannot resolve"))?;
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(io(&dst, "cannot copy"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_file_without_the_marker_is_missing() {
        // e.g. iputils' arping installed where Habets' is wanted
        let t = [HostTool {
            image_path: "usr/sbin/arping",
            host: &["/bin/sh"],
            package: "arping",
            must_contain: Some(b"no such marker: Thomas Habets"),
        }];
        assert_eq!(missing(&t), vec![("arping", "arping")]);
        assert_eq!(
            resolve(&t).unwrap().missing,
            vec![("usr/sbin/arping", "arping")]
        );
        let t = [tool("bin/sh", &["/nonexistent", "/bin/sh"], "dash")];
        assert!(missing(&t).is_empty());
        // a script is not a program whose libraries can be found
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("x");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let leaked: &'static str =
            Box::leak(script.to_string_lossy().into_owned().into_boxed_str());
        let hosts: &'static [&'static str] = Box::leak(vec![leaked].into_boxed_slice());
        let err = resolve(&[tool("bin/x", hosts, "x")]).unwrap_err();
        assert!(matches!(err, Error::NotElf(_)), "{err}");
        assert!(err.to_string().contains(leaked), "{err}");
    }

    #[test]
    fn staging_replaces_busybox_applet_links() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for dir in ["bin", "sbin", "usr/bin", "usr/sbin"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::os::unix::fs::symlink("../bin/busybox", root.join("sbin/ip")).unwrap();
        std::os::unix::fs::symlink("../../bin/busybox", root.join("usr/bin/ip")).unwrap();
        let files = resolve(&[tool("sbin/ip", &["/bin/sh"], "x")]).unwrap();
        stage(root, &files).unwrap();
        let md = root.join("sbin/ip").symlink_metadata().unwrap();
        assert!(md.is_file(), "sbin/ip is the host program now");
        assert!(root.join("usr/bin/ip").symlink_metadata().is_err());
        // its libraries and loader came along, as real files
        let libc = files
            .files
            .iter()
            .find(|(i, _)| i.ends_with("libc.so.6"))
            .unwrap();
        assert!(root.join(&libc.0).symlink_metadata().unwrap().is_file());
    }

    #[test]
    fn resolves_a_dynamic_program_with_its_loader_and_libc() {
        let me = std::env::current_exe().unwrap();
        let leaked: &'static str = Box::leak(me.to_string_lossy().into_owned().into_boxed_str());
        let hosts: &'static [&'static str] = Box::leak(vec![leaked].into_boxed_slice());
        let t = [
            tool("bin/me", hosts, "none"),
            tool("bin/nothere", &["/nonexistent/x"], "nopkg"),
        ];
        let f = resolve(&t).unwrap();
        assert_eq!(f.missing, vec![("bin/nothere", "nopkg")]);
        assert_eq!(f.programs, vec!["me".to_string()]);
        let imgs: Vec<_> = f
            .files
            .iter()
            .map(|(i, _)| i.to_string_lossy().into_owned())
            .collect();
        assert!(imgs.iter().any(|p| p.contains("ld-linux")), "{imgs:?}");
        assert!(imgs.iter().any(|p| p.ends_with("/libc.so.6")), "{imgs:?}");
        // every library is listed once
        let mut sorted = imgs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), imgs.len(), "{imgs:?}");
    }
}

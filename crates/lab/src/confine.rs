//! A lab folder is untrusted input: what it may not do to the host.
//!
//! - Machines get the lab folder as a read-only ext4 disk built at `lab
//!   start` ([`build_lab_disk`], mounted at `/hostlab` in the guest), not as
//!   live hostfs; hostfs itself is pointed at `/dev/null` so no guest can
//!   mount a host path (`hostfs=DIR` only prefixes the path lexically, so
//!   `-o ../../..` escapes any directory; nothing resolves below a file).
//! - Kernel arguments from the lab (`M[append]`, lab.toml `kernel_args`)
//!   that open host resources are refused ([`host_kernel_arg`],
//!   [`check_kernel_args`]).
//! - Paths the lab manager writes inside the lab folder are resolved and
//!   must stay inside it ([`resolve_inside`]); writes refuse symlinks
//!   ([`write_inside`]).
//!
//! `lab start --host-access` (trusted labs) restores the live hostfs share
//! and lets host-side kernel arguments through.

use std::path::{Component, Path, PathBuf};

use crate::error::{io_err, LabError, Result};
use crate::load::{Loaded, Source};

/// Why `arg` (one kernel parameter) opens a host resource, or `None` when it
/// is a guest-side parameter. The kernel matches UML options by prefix, so
/// the name is compared the same way (`ubd0r=` is `ubd`).
pub fn host_kernel_arg(arg: &str) -> Option<&'static str> {
    let name = arg.split('=').next().unwrap_or(arg);
    let numbered = |p: &str| {
        name.strip_prefix(p)
            .is_some_and(|r| r.chars().all(|c| c.is_ascii_digit()))
    };
    if name == "hostfs" {
        Some("shares a host directory (hostfs)")
    } else if name.starts_with("ubd") {
        Some("attaches a host file as a disk")
    } else if name.starts_with("eth") || name.starts_with("vec") {
        Some("plugs an interface into a host switch, socket or device")
    } else if (numbered("con") || numbered("ssl")) && arg.contains('=') {
        Some("connects a console or serial line to a host terminal, fd or port")
    } else if matches!(
        name,
        "mconsole"
            | "umid"
            | "uml_dir"
            | "xterm"
            | "iomem"
            | "initrd"
            | "dtb"
            | "mem"
            | "dsp"
            | "mixer"
            | "stderr"
    ) || name.starts_with("virtio_uml")
    {
        Some("is a host-side option of the UML kernel")
    } else if name.starts_with('-') {
        Some("is a host-side option of the UML binary")
    } else {
        None
    }
}

/// The 1-based line of `file_text` that holds `arg` for `machine`: the
/// first line naming the machine and the argument, else the first naming
/// the argument.
fn line_of(file_text: &str, machine: &str, arg: &str) -> usize {
    let lines: Vec<&str> = file_text.lines().collect();
    lines
        .iter()
        .position(|l| l.contains(machine) && l.contains(arg))
        .or_else(|| lines.iter().position(|l| l.contains(arg)))
        .map(|i| i + 1)
        .unwrap_or(0)
}

/// Refuse kernel arguments of the lab that open host resources (see
/// [`host_kernel_arg`]), naming the lab file, its line and the argument.
pub fn check_kernel_args(loaded: &Loaded) -> Result<()> {
    let file = loaded.dir.join(match loaded.source {
        Source::LabConf => "lab.conf",
        Source::LabToml => "lab.toml",
    });
    for (name, m) in &loaded.lab.machines {
        for a in &m.kernel_args {
            if let Some(why) = host_kernel_arg(a) {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                return Err(LabError::Syntax {
                    line: line_of(&text, name, a),
                    file,
                    rule: format!(
                        "machine {name}: kernel argument {a:?} {why}; a lab folder may not open \
                         host resources (`umlkit lab start --host-access` allows it for a lab you trust)"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Resolve `rel` (a path inside the lab folder `lab_dir`, which is
/// canonical) following every symlink, and require the result to stay
/// inside `lab_dir`. Missing trailing components are allowed (a file about
/// to be created); every existing one is resolved.
pub fn resolve_inside(lab_dir: &Path, rel: &Path) -> Result<PathBuf> {
    let unsafe_path = |rule: String| LabError::Unsafe {
        path: lab_dir.join(rel),
        rule,
    };
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(unsafe_path(
            "must be a plain relative path inside the lab folder".into(),
        ));
    }
    // The deepest existing ancestor, canonicalized; the rest is appended.
    let full = lab_dir.join(rel);
    let mut existing = full.clone();
    let mut rest = Vec::new();
    while existing.symlink_metadata().is_err() {
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(p)) => {
                rest.push(n.to_os_string());
                existing = p.to_path_buf();
            }
            _ => break,
        }
    }
    let mut resolved = existing.canonicalize().map_err(|e| {
        unsafe_path(format!(
            "cannot be resolved ({e}): a dangling or looping symlink"
        ))
    })?;
    for n in rest.into_iter().rev() {
        resolved.push(n);
    }
    if !resolved.starts_with(lab_dir) {
        return Err(unsafe_path(format!(
            "resolves to {} outside the lab folder (through a symlink)",
            resolved.display()
        )));
    }
    Ok(resolved)
}

/// Write `data` to `rel` inside the lab folder: parents are created, the
/// path must resolve inside the folder, and the file itself is opened with
/// O_NOFOLLOW (a symlink put there is refused, never followed).
pub fn write_inside(lab_dir: &Path, rel: &Path, data: &[u8]) -> Result<PathBuf> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let dir = resolve_inside(lab_dir, parent)?;
    std::fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
    // Re-check after creating: a concurrent swap of a component for a link is caught.
    let dir = resolve_inside(lab_dir, parent)?;
    let path = dir.join(rel.file_name().unwrap_or_default());
    umlkit_sys::file::write_nofollow(&path, data, 0o644).map_err(|e| {
        if e.raw_os_error() == Some(umlkit_sys::file::ELOOP) {
            LabError::Unsafe {
                path: path.clone(),
                rule: "is a symlink; refusing to write through it".into(),
            }
        } else {
            LabError::Io {
                what: "cannot write",
                path: path.clone(),
                source: e,
            }
        }
    })?;
    Ok(path)
}

/// What went onto a lab disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct LabDiskStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Walk the lab folder without following symlinks: count entries and
/// bytes; refuse device nodes, fifos and sockets (nothing a machine needs,
/// and `mkfs.ext4 -d` would recreate them).
pub fn scan_lab_folder(lab_dir: &Path) -> Result<LabDiskStats> {
    use std::os::unix::fs::FileTypeExt;
    let mut st = LabDiskStats::default();
    let mut stack = vec![lab_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io_err("cannot list", &d))? {
            let e = e.map_err(io_err("cannot list", &d))?;
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).map_err(io_err("cannot stat", &p))?;
            let t = m.file_type();
            st.entries += 1;
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                st.bytes += m.len().div_ceil(4096) * 4096;
            } else if t.is_symlink() {
            } else {
                let kind = if t.is_fifo() {
                    "a fifo"
                } else if t.is_socket() {
                    "a socket"
                } else {
                    "a device node"
                };
                return Err(LabError::Unsafe {
                    path: p,
                    rule: format!(
                        "is {kind}; a lab folder may hold only files, folders and symlinks \
                         (remove it)"
                    ),
                });
            }
        }
    }
    Ok(st)
}

/// Build the read-only disk machines see at `/hostlab`: an ext4 image of
/// the whole lab folder at `out` (mode 0600), sized from the folder with
/// headroom and one inode per entry plus spare ones. Symlinks are copied as
/// links (never followed on the host).
pub fn build_lab_disk(lab_dir: &Path, out: &Path) -> Result<LabDiskStats> {
    let out_dir = out.parent().and_then(|p| p.canonicalize().ok());
    if out_dir.is_some_and(|d| d.starts_with(lab_dir)) {
        return Err(LabError::Unsafe {
            path: out.to_path_buf(),
            rule: format!(
                "the lab's state folder is inside the lab folder {} (it would be copied \
                 onto its own disk); use a --state-root outside it",
                lab_dir.display()
            ),
        });
    }
    let st = scan_lab_folder(lab_dir)?;
    let inodes = st.entries + 256;
    let size = st.bytes + st.bytes / 8 + inodes * 1024 + (16 << 20);
    image::create_private(out, size, lab_dir, inodes).map_err(|source| LabError::LabDisk {
        disk: out.to_path_buf(),
        dir: lab_dir.to_path_buf(),
        source,
    })?;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_side_kernel_args_are_named() {
        for a in [
            "hostfs=/",
            "hostfs=/etc,append",
            "ubd1=/etc/shadow",
            "ubdbr=/x",
            "eth1=daemon,,unix,/tmp/other/ctl",
            "vec0:transport=raw,ifname=eth0",
            "con1=port:9000",
            "ssl=pty",
            "con=fd:1",
            "mconsole=notify:/tmp/x",
            "umid=other",
            "uml_dir=/tmp",
            "xterm=evil,-T,-e",
            "mem=100G",
            "initrd=/etc/shadow",
            "iomem=x,/etc/passwd",
            "virtio_uml.device=/tmp/s:1",
            "--help",
        ] {
            assert!(host_kernel_arg(a).is_some(), "{a} must be refused");
        }
    }

    #[test]
    fn guest_side_kernel_args_pass() {
        for a in [
            "quiet",
            "loglevel=3",
            "console=ttyS0",
            "ssl-non-raw",
            "init=/sbin/init",
            "umlkit.modules=bridge",
            "noreboot",
            "panic=1",
        ] {
            assert_eq!(host_kernel_arg(a), None, "{a} is guest-side");
        }
    }

    #[test]
    fn resolve_inside_follows_links_fully() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("lab")).unwrap();
        let lab = t.path().join("lab").canonicalize().unwrap();
        std::fs::create_dir_all(lab.join("_test/in")).unwrap();
        std::os::unix::fs::symlink("/etc", lab.join("hop")).unwrap();
        std::os::unix::fs::symlink("../hop", lab.join("_test/x")).unwrap();
        std::os::unix::fs::symlink("in", lab.join("_test/ok")).unwrap();
        let r = resolve_inside(&lab, Path::new("_test/x/passwd"));
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("outside the lab folder"));
        assert_eq!(
            resolve_inside(&lab, Path::new("_test/ok/new/file")).unwrap(),
            lab.join("_test/in/new/file")
        );
        assert!(resolve_inside(&lab, Path::new("../x")).is_err());
        assert!(resolve_inside(&lab, Path::new("/etc")).is_err());
    }

    #[test]
    fn line_of_finds_the_machine_line() {
        let t = "pc2[append]=quiet\npc1[0]=A\npc1[append]=\"hostfs=/\"\n";
        assert_eq!(line_of(t, "pc1", "hostfs=/"), 3);
    }
}

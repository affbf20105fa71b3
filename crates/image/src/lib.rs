//! Disk image builder: sparse ext4 images without root, loop devices or
//! mounts (`mkfs.ext4 -d`), the default busybox image for guests, and
//! Debian lab images built with mmdebstrap from embedded recipes
//! ([`recipe`], [`debian`]; `kathara/frr` and friends).
//!
//! # The default image
//! [`default_image`] builds (or reuses from the cache, keyed by a hash of all
//! inputs) an ext4 image holding the host's static busybox, busybox `init`
//! as PID 1, the static exec agent `umlkit-agent` (respawned on
//! `/dev/ttyS1`), host programs busybox lacks or gets wrong, with their
//! shared libraries (see [`hosttools`]: bash, iproute2, arping, lsblk,
//! blkid, pgrep, ifconfig), an `ifup`/`ifdown` for `/etc/network/interfaces`
//! (run as `ifup -a` at boot when that file exists), and the kernel modules of `/usr/lib/uml/modules/<ver>` in
//! `/lib/modules/<ver>` (so `modprobe bridge` / `modprobe 8021q` work).
//!
//! Boot sequence: `/etc/init.d/rcS` mounts proc, sys, devtmpfs, devpts,
//! /dev/shm, /run, /tmp, brings up `lo`, then applies these kernel command
//! line parameters (last one wins; pass them in `GuestConfig::extra_args`):
//!
//! | parameter | effect |
//! |---|---|
//! | `umlkit.hostname=NAME` | host name (default `uml`) |
//! | `umlkit.ip.eth0=10.0.0.1/24[,ADDR/LEN...]` | sets `eth0` up with these addresses (`up` = no address; `dhcp` = a lease from busybox `udhcpc`, e.g. from `umlkit switch --nat`) |
//! | `umlkit.gw=10.0.0.254` | default route |
//! | `umlkit.modules=bridge,8021q` | modules loaded before network setup |
//! | `umlkit.hostfs=/hostlab` | mount hostfs there (the host passes `hostfs=DIR`) |
//! | `umlkit.startup=/path/script` | run after network setup, before the agent, with `bash` (`sh` if absent; a `#!` naming another interpreter is honoured) |
//!
//! Then init starts the exec agent, offers a shell on the console (press
//! Enter), reaps orphans, and maps Ctrl-Alt-Del (mconsole `cad`) to a clean
//! `poweroff`: processes killed, filesystems synced and remounted read-only,
//! then the kernel powers off (UML exits 0).

pub mod debian;
pub mod elf;
pub mod hosttools;
pub mod recipe;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Errors of the image builder.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} already exists (refusing to overwrite it)")]
    Exists(PathBuf),
    #[error("image size {0} bytes is too small (at least 4 MiB)")]
    TooSmall(u64),
    #[error("{what} not found: {hint}")]
    Missing { what: String, hint: String },
    #[error("{0} is not a directory")]
    NotDir(PathBuf),
    #[error("{0}: not an x86-64 ELF program or library (cannot find what it links)")]
    NotElf(PathBuf),
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("mkfs.ext4 failed for {}: {stderr}", path.display())]
    Mkfs { path: PathBuf, stderr: String },
    #[error(
        "the exec agent {0} is not a static binary; build it with: \
         RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release -p umlkit-agent --target x86_64-unknown-linux-gnu"
    )]
    AgentNotStatic(PathBuf),
    /// The cache dir is a symlink, someone else's, or writable by others.
    #[error("image cache")]
    Private(#[from] umlkit_sys::private::DirError),
    #[error("image {image}: {msg}")]
    Build { image: String, msg: String },
    #[error("no image recipe named '{0}' (`umlkit image ls` lists the recipes and their names)")]
    UnknownImage(String),
    #[error(
        "cannot build images as user {user} without root: mmdebstrap --mode=unshare needs {missing}"
    )]
    Unprivileged { user: String, missing: String },
    #[error(transparent)]
    Recipe(#[from] recipe::RecipeError),
}

pub(crate) fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, what, source }
}

/// A per-process counter for temporary names (several threads may build at once).
fn unique() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Find `mkfs.ext4`.
fn mkfs() -> Result<PathBuf, Error> {
    let mut cands: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("mkfs.ext4"))
                .collect()
        })
        .unwrap_or_default();
    cands.extend(["/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"].map(PathBuf::from));
    cands
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Missing {
            what: "mkfs.ext4".into(),
            hint: "install the Debian package e2fsprogs".into(),
        })
}

/// Create a sparse ext4 image of `size_bytes` at `out`, filled with the tree
/// `from_dir` (owned by root) when given. Written to a temporary name and
/// renamed, so `out` never holds a half-built image.
pub fn create(out: &Path, size_bytes: u64, from_dir: Option<&Path>) -> Result<(), Error> {
    create_with(out, size_bytes, from_dir, Place::New, None)
}

/// How a finished image takes its place at `out`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// `out` must not exist.
    New,
    /// Atomically replace `out` (guests holding the old file keep it).
    Replace,
    /// A cache entry named by its content: the first finished build
    /// stays. Replacing it would change its mtime under the COW files of
    /// guests already made on it, and the kernel refuses those (backing
    /// file mismatch): two labs building the same image at once must not
    /// break each other.
    KeepFirst,
}

/// Build a private (mode 0600) ext4 image of `size_bytes` at `out` from the
/// tree `from_dir` with at least `inodes` inodes, replacing `out` atomically
/// (guests that still hold the old image keep reading the old file).
/// `mkfs.ext4 -d` copies symlinks as links, never following them.
pub fn create_private(
    out: &Path,
    size_bytes: u64,
    from_dir: &Path,
    inodes: u64,
) -> Result<(), Error> {
    create_with(
        out,
        size_bytes,
        Some(from_dir),
        Place::Replace,
        Some(inodes),
    )
}

fn create_with(
    out: &Path,
    size_bytes: u64,
    from_dir: Option<&Path>,
    place: Place,
    inodes: Option<u64>,
) -> Result<(), Error> {
    if size_bytes < 4 << 20 {
        return Err(Error::TooSmall(size_bytes));
    }
    if place == Place::New && out.symlink_metadata().is_ok() {
        return Err(Error::Exists(out.to_path_buf()));
    }
    if let Some(d) = from_dir {
        if !d.is_dir() {
            return Err(Error::NotDir(d.to_path_buf()));
        }
    }
    let mkfs = mkfs()?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = out.with_file_name(format!(".{name}.tmp{}-{}", std::process::id(), unique()));
    let f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if inodes.is_some() { 0o600 } else { 0o666 })
            .open(&tmp)
            .map_err(io(&tmp, "cannot create the image file"))?
    };
    if inodes.is_some() {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io(&tmp, "cannot chmod the image file"))?;
    }
    f.set_len(size_bytes)
        .map_err(io(&tmp, "cannot size the image file"))?;
    drop(f);
    let mut cmd = Command::new(mkfs);
    cmd.args([
        "-q",
        "-F",
        "-E",
        "root_owner=0:0",
        "-O",
        "^has_journal",
        "-L",
        "umlkit",
    ]);
    if let Some(n) = inodes {
        cmd.arg("-N").arg(n.to_string());
    }
    if let Some(d) = from_dir {
        cmd.arg("-d").arg(d);
    }
    cmd.arg(&tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let r = cmd.output().map_err(io(&tmp, "cannot run mkfs.ext4"))?;
    if !r.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Mkfs {
            path: out.to_path_buf(),
            stderr: String::from_utf8_lossy(&r.stderr).trim().to_string(),
        });
    }
    if place == Place::KeepFirst {
        let r = std::fs::hard_link(&tmp, out);
        let _ = std::fs::remove_file(&tmp);
        return match r {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                Err(io(out, "cannot move the image into place")(e))
            }
            _ => Ok(()),
        };
    }
    std::fs::rename(&tmp, out).map_err(io(out, "cannot move the image into place"))
}

/// Parse a size such as `512M`, `2G`, `1048576`, `64K` (binary units).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Options for [`default_image`]; `Default` finds everything on the host.
#[derive(Debug, Clone, Default)]
pub struct DefaultImageOpts {
    /// Write the image here instead of the cache (must not exist).
    pub out: Option<PathBuf>,
    /// Image size (default 512 MiB; sparse).
    pub size_bytes: Option<u64>,
    /// Static exec agent (default: see [`find_agent`]).
    pub agent: Option<PathBuf>,
    /// Static busybox (default `/bin/busybox`, `/usr/bin/busybox`).
    pub busybox: Option<PathBuf>,
    /// Kernel modules root holding `<version>/` dirs (default `/usr/lib/uml/modules`).
    pub modules: Option<PathBuf>,
    /// Cache directory (default: [`cache_dir`]).
    pub cache_dir: Option<PathBuf>,
}

/// The image cache: `$UMLKIT_CACHE_DIR`, else `$XDG_DATA_HOME/umlkit/images`,
/// else `~/.local/share/umlkit/images`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("UMLKIT_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("umlkit/images");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/share/umlkit/images")
}

/// Where a static agent lands in a cargo target dir.
const AGENT_IN_TARGET: &str = "x86_64-unknown-linux-gnu/release/umlkit-agent";

/// The places [`find_agent`] looks, in order, for the executable `exe`
/// (pure): `umlkit-agent` next to it (an installed pair), then the build tree
/// it was built in, found from its own path: `TARGET/debug/umlkit` or
/// `TARGET/debug/deps/TEST` give `TARGET/x86_64-unknown-linux-gnu/release/
/// umlkit-agent`, whatever TARGET is called. Never the current directory.
pub fn agent_candidates(exe: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(dir) = exe.parent() {
        v.push(dir.join("umlkit-agent"));
    }
    // exe's dir (PROFILE or deps), its parent (PROFILE or TARGET), TARGET
    for anc in exe.ancestors().skip(1).take(3) {
        if anc.as_os_str().is_empty() {
            continue;
        }
        let c = anc.join(AGENT_IN_TARGET);
        if !v.contains(&c) {
            v.push(c);
        }
    }
    v
}

/// Locate the static exec agent: `$UMLKIT_AGENT` (which must be a static
/// executable), else the first static one of [`agent_candidates`] of the
/// running executable. Nothing depends on the current directory.
pub fn find_agent() -> Result<PathBuf, Error> {
    const HINT: &str = "build it with: RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build \
                        --release -p umlkit-agent --target x86_64-unknown-linux-gnu (or set UMLKIT_AGENT)";
    if let Some(p) = std::env::var_os("UMLKIT_AGENT") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(Error::Missing {
                what: format!("the exec agent {} (from $UMLKIT_AGENT)", p.display()),
                hint: "point UMLKIT_AGENT at a static umlkit-agent".into(),
            });
        }
        if !is_static_elf(&p)? {
            return Err(Error::Missing {
                what: format!(
                    "a static exec agent: {} (from $UMLKIT_AGENT) is dynamically linked",
                    p.display()
                ),
                hint: HINT.into(),
            });
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().map_err(io(Path::new("/proc/self/exe"), "cannot read"))?;
    let cands = agent_candidates(&exe);
    for c in &cands {
        if c.is_file() && is_static_elf(c).unwrap_or(false) {
            return Ok(c.clone());
        }
    }
    Err(Error::Missing {
        what: format!(
            "a static umlkit-agent (looked at $UMLKIT_AGENT, {})",
            cands
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        hint: HINT.into(),
    })
}

/// True when the ELF file has no program interpreter (static or static-pie).
pub fn is_static_elf(path: &Path) -> Result<bool, Error> {
    let data = std::fs::read(path).map_err(io(path, "cannot read"))?;
    Ok(elf_is_static(&data))
}

fn elf_is_static(d: &[u8]) -> bool {
    if d.len() < 64 || &d[..4] != b"\x7fELF" || d[4] != 2 || d[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([d[o], d[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(d[0x20..0x28].try_into().unwrap_or([0; 8])) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        let Some(t) = d.get(o..o + 4) else {
            return false;
        };
        if u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == 3 {
            return false; // PT_INTERP
        }
    }
    true
}

fn find_busybox(opt: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(p) = opt {
        return Ok(p.to_path_buf());
    }
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Missing {
            what: "busybox".into(),
            hint: "install the Debian package busybox-static".into(),
        })
}

/// FNV-1a 64: a stable, dependency-free hash for cache keys.
pub(crate) struct Fnv(u64);
impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, b: &[u8]) {
        for &c in b {
            self.0 ^= u64::from(c);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // length separator so that ("ab","c") != ("a","bc")
        self.0 ^= b.len() as u64;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fn add_file(&mut self, p: &Path) -> Result<(), Error> {
        let mut f = std::fs::File::open(p).map_err(io(p, "cannot open"))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(io(p, "cannot read"))?;
            if n == 0 {
                break;
            }
            for &c in &buf[..n] {
                self.0 ^= u64::from(c);
                self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        Ok(())
    }
}

const RCS: &str = include_str!("files/rcS");
const RCK: &str = include_str!("files/rcK");
const INITTAB: &str = include_str!("files/inittab");
const FSTAB: &str = include_str!("files/fstab");
const IFUPDOWN: &str = include_str!("files/ifupdown");
const UDHCPC_SCRIPT: &str = include_str!("files/udhcpc.script");
const NETWORKING: &str = include_str!("files/networking");
/// Files of the default image written from this crate: (path, text, mode).
/// Each is part of the cache key. (`inittab` is written apart: its shell
/// depends on the host programs, which are in the key too.)
const EMBEDDED: &[(&str, &str, u32)] = &[
    ("etc/init.d/rcS", RCS, 0o755),
    ("etc/init.d/rcK", RCK, 0o755),
    ("etc/init.d/networking", NETWORKING, 0o755),
    ("etc/fstab", FSTAB, 0o644),
    ("sbin/ifup", IFUPDOWN, 0o755),
    ("usr/share/udhcpc/default.script", UDHCPC_SCRIPT, 0o755),
];
/// Bumped whenever the layout of the default image changes.
const LAYOUT_VERSION: &str = "umlkit-default-image-4";

/// Walk `dir` recursively, feeding relative paths, sizes and mtimes to `h`.
fn hash_tree(h: &mut Fnv, dir: &Path) -> Result<(), Error> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir, "cannot list"))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let md = p.symlink_metadata().map_err(io(&p, "cannot stat"))?;
        h.add(p.as_os_str().as_encoded_bytes());
        if md.is_dir() {
            hash_tree(h, &p)?;
        } else {
            use std::os::unix::fs::MetadataExt;
            h.add(&md.len().to_le_bytes());
            h.add(&md.mtime().to_le_bytes());
        }
    }
    Ok(())
}

/// Build the default image, or reuse the cached one with the same inputs.
/// Returns the image path.
pub fn default_image(opts: &DefaultImageOpts) -> Result<PathBuf, Error> {
    let busybox = find_busybox(opts.busybox.as_deref())?;
    let agent = match &opts.agent {
        Some(a) => a.clone(),
        None => find_agent()?,
    };
    if !is_static_elf(&agent)? {
        return Err(Error::AgentNotStatic(agent));
    }
    let modules = opts
        .modules
        .clone()
        .unwrap_or_else(|| PathBuf::from("/usr/lib/uml/modules"));
    let size = opts.size_bytes.unwrap_or(512 << 20);
    let mut h = Fnv::new();
    let host_files = hosttools::resolve(hosttools::HOST_TOOLS)?;
    hosttools::hash_into(&mut h, &host_files)?;
    for s in [LAYOUT_VERSION, INITTAB] {
        h.add(s.as_bytes());
    }
    for (path, text, mode) in EMBEDDED {
        h.add(path.as_bytes());
        h.add(text.as_bytes());
        h.add(&mode.to_le_bytes());
    }
    h.add(&size.to_le_bytes());
    h.add_file(&busybox)?;
    h.add_file(&agent)?;
    if modules.is_dir() {
        hash_tree(&mut h, &modules)?;
    }
    let out = match &opts.out {
        Some(o) => {
            if o.symlink_metadata().is_ok() {
                return Err(Error::Exists(o.clone()));
            }
            o.clone()
        }
        None => {
            let dir = opts.cache_dir.clone().unwrap_or_else(cache_dir);
            // others must not be able to plant an image we would boot
            umlkit_sys::private::private_dir(&dir, false)?;
            let p = dir.join(format!("default-{:016x}.img", h.0));
            if p.is_file() {
                return Ok(p);
            }
            p
        }
    };
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stage = parent.join(format!(
        ".umlkit-stage-{}-{}-{:x}",
        std::process::id(),
        unique(),
        h.0
    ));
    let _ = std::fs::remove_dir_all(&stage);
    let r = stage_tree(&stage, &busybox, &agent, &modules, &host_files).and_then(|()| {
        let place = if opts.out.is_none() {
            Place::KeepFirst
        } else {
            Place::New
        };
        create_with(&out, size, Some(&stage), place, None)
    });
    let _ = std::fs::remove_dir_all(&stage);
    r.map(|()| out)
}

fn write_file(p: &Path, text: &str, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(p, text).map_err(io(p, "cannot write"))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(io(p, "cannot chmod"))
}

/// Hard-link (or copy, across filesystems) a tree.
fn link_tree(src: &Path, dst: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dst).map_err(io(dst, "cannot create"))?;
    for e in std::fs::read_dir(src).map_err(io(src, "cannot list"))? {
        let e = e.map_err(io(src, "cannot list"))?;
        let (s, d) = (e.path(), dst.join(e.file_name()));
        let ft = e.file_type().map_err(io(&s, "cannot stat"))?;
        if ft.is_dir() {
            link_tree(&s, &d)?;
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&s).map_err(io(&s, "cannot read link"))?;
            std::os::unix::fs::symlink(t, &d).map_err(io(&d, "cannot create link"))?;
        } else if std::fs::hard_link(&s, &d).is_err() {
            std::fs::copy(&s, &d).map_err(io(&d, "cannot copy"))?;
        }
    }
    Ok(())
}

fn stage_tree(
    root: &Path,
    busybox: &Path,
    agent: &Path,
    modules: &Path,
    host_files: &hosttools::HostFiles,
) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc/init.d",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "root",
        "mnt",
        "hostlab",
        "var/log",
        "var/lib",
        "var/tmp",
        "etc/network/if-up.d",
        "etc/network/if-pre-up.d",
        "etc/network/if-down.d",
        "etc/network/if-post-down.d",
        "lib/modules",
    ] {
        std::fs::create_dir_all(root.join(d)).map_err(io(&root.join(d), "cannot create"))?;
    }
    // Scripts (busybox ifup among them) expect /var/run; it is /run, a tmpfs.
    let var_run = root.join("var/run");
    std::os::unix::fs::symlink("../run", &var_run).map_err(io(&var_run, "cannot create link"))?;
    let _ = std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777));
    let bb = root.join("bin/busybox");
    std::fs::copy(busybox, &bb).map_err(io(&bb, "cannot copy busybox here"))?;
    std::fs::set_permissions(&bb, std::fs::Permissions::from_mode(0o755))
        .map_err(io(&bb, "cannot chmod"))?;
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(io(busybox, "cannot run busybox --list-full"))?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet.ends_with("/busybox") {
            continue;
        }
        let depth = applet.matches('/').count();
        let target = format!("{}bin/busybox", "../".repeat(depth));
        let link = root.join(applet);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(target, &link).map_err(io(&link, "cannot create link"))?;
        }
    }
    hosttools::stage(root, host_files)?;
    let ag = root.join("sbin/umlkit-agent");
    std::fs::copy(agent, &ag).map_err(io(&ag, "cannot copy the agent here"))?;
    std::fs::set_permissions(&ag, std::fs::Permissions::from_mode(0o755))
        .map_err(io(&ag, "cannot chmod"))?;
    let etc = root.join("etc");
    // ifup/ifdown for /etc/network/interfaces (busybox's reject A/LEN).
    for l in ["sbin/ifup", "sbin/ifdown"] {
        let _ = std::fs::remove_file(root.join(l));
    }
    for (path, text, mode) in EMBEDDED {
        let p = root.join(path);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(io(d, "cannot create"))?;
        }
        write_file(&p, text, *mode)?;
    }
    let ifdown = root.join("sbin/ifdown");
    std::os::unix::fs::symlink("ifup", &ifdown).map_err(io(&ifdown, "cannot create link"))?;
    // With bash in the image, consoles get bash: busybox sh runs its own
    // applets (ip, arping, ...) instead of the image's full tools.
    let bash = root.join("bin/bash").is_file();
    let shell = if bash { "/bin/bash" } else { "/bin/sh" };
    let inittab = INITTAB.replace(
        "/bin/cttyhack /bin/sh -l",
        &format!("/bin/cttyhack {shell} -l"),
    );
    write_file(&etc.join("inittab"), &inittab, 0o644)?;
    write_file(
        &etc.join("passwd"),
        &format!("root::0:0:root:/root:{shell}\n"),
        0o644,
    )?;
    write_file(&etc.join("group"), "root:x:0:\ntty:x:5:\n", 0o644)?;
    write_file(&etc.join("hosts"), "127.0.0.1\tlocalhost\n", 0o644)?;
    write_file(&etc.join("hostname"), "uml\n", 0o644)?;
    write_file(
        &etc.join("profile"),
        "export PATH=/sbin:/bin:/usr/sbin:/usr/bin\nexport PS1='\\h:\\w\\$ '\n",
        0o644,
    )?;
    if modules.is_dir() {
        link_tree(modules, &root.join("lib/modules"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: two builds of one cached image (two labs starting at
    /// once) each renamed their file into place, so the later one changed
    /// the file (and its mtime) under guests already made on the first,
    /// whose COWs the kernel then refused at boot.
    #[test]
    fn a_cached_image_is_never_replaced_by_a_later_build() {
        if mkfs().is_err() {
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("default-x.img");
        create_with(&out, 4 << 20, None, Place::KeepFirst, None).unwrap();
        let first = std::fs::metadata(&out).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        create_with(&out, 4 << 20, None, Place::KeepFirst, None).unwrap();
        let now = std::fs::metadata(&out).unwrap();
        assert_eq!(
            (now.ino(), now.mtime_nsec(), now.mtime()),
            (first.ino(), first.mtime_nsec(), first.mtime())
        );
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["default-x.img"], "no temporary file left");
        // an explicit replacement still replaces
        create_with(&out, 4 << 20, None, Place::Replace, None).unwrap();
        assert_ne!(std::fs::metadata(&out).unwrap().ino(), first.ino());
    }

    #[test]
    fn agent_lookup_follows_the_executable_never_the_cwd() {
        let t = "x86_64-unknown-linux-gnu/release/umlkit-agent";
        let c = agent_candidates(Path::new("/w/target/debug/umlkit"));
        assert_eq!(c[0], Path::new("/w/target/debug/umlkit-agent"));
        assert!(c.contains(&Path::new("/w/target").join(t)), "{c:?}");
        // a test binary in deps/, and a CARGO_TARGET_DIR of another name
        let c = agent_candidates(Path::new("/w/out/debug/deps/lab_e2e-0123"));
        assert!(c.contains(&Path::new("/w/out").join(t)), "{c:?}");
        // an installed pair
        let c = agent_candidates(Path::new("/usr/local/bin/umlkit"));
        assert_eq!(c[0], Path::new("/usr/local/bin/umlkit-agent"));
        assert!(c.iter().all(|p| p.is_absolute()), "{c:?}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn elf_static_detection() {
        assert!(!elf_is_static(b"not an elf"));
        // the test binary itself is dynamically linked (has PT_INTERP)
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!elf_is_static(&me));
    }

    #[test]
    fn create_sparse_image_and_refuse_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("hello"), "hi").unwrap();
        let img = d.path().join("x.img");
        create(&img, 256 << 20, Some(&src)).unwrap();
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(&img).unwrap();
        assert_eq!(md.len(), 256 << 20);
        assert!(
            md.blocks() * 512 < md.len() / 10,
            "image not sparse: {} blocks",
            md.blocks()
        );
        assert!(matches!(
            create(&img, 256 << 20, None),
            Err(Error::Exists(_))
        ));
        assert!(matches!(
            create(&d.path().join("y"), 1000, None),
            Err(Error::TooSmall(_))
        ));
        assert!(matches!(
            create(&d.path().join("z"), 8 << 20, Some(&d.path().join("nope"))),
            Err(Error::NotDir(_))
        ));
    }
}

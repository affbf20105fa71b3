//! Lab images built from Debian packages with `mmdebstrap`, cached.
//!
//! [`build`] turns a [`Recipe`] into a sparse ext4 image:
//! 1. an overlay tree is staged: busybox `init` as `/sbin/init` with
//!    `/etc/inittab`, the bash `rcS` (same `umlkit.*` parameters as the
//!    default image, plus `umlkit.ipv6=1`), `systemctl`/`service` shims,
//!    the static exec agent on `/dev/ttyS1`, fstab, the recipe's files and
//!    the kernel modules of the exact kernel version (`depmod` runs in the
//!    image);
//! 2. `mmdebstrap --mode=root` (euid 0) or `--mode=unshare` (an ordinary
//!    user with `/etc/subuid` and `/etc/subgid` entries and `newuidmap`)
//!    writes a tarball with the packages, the overlay and the recipe's
//!    commands applied, and the installed package versions;
//! 3. the tarball is unpacked and `mkfs.ext4 -d` makes the image (for an
//!    ordinary user inside `mmdebstrap --unshare-helper`, so owners and
//!    setuid bits stay; e2fsprogs 1.47.0 reads only directories).
//!
//! Cache: `<cache>/<recipe>-<key>.img` (read-only, 0400; written to a
//! temporary name and renamed), `.json` (metadata) and `.packages`
//! (`dpkg-query -W`), in [`crate::cache_dir`] (0700). The key hashes the
//! recipe, the runtime files, the agent, busybox, the kernel modules (so
//! the kernel version) and [`BUILDER_VERSION`].

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::recipe::{self, Recipe};
use crate::{io, Error, Fnv};

/// Bumped whenever what the builder puts in an image changes.
pub const BUILDER_VERSION: &str = "umlkit-debian-builder-2";

const RCS: &str = include_str!("files/debian/rcS");
const RCK: &str = include_str!("files/debian/rcK");
const INITTAB: &str = include_str!("files/debian/inittab");
const FSTAB: &str = include_str!("files/debian/fstab");
const SYSTEMCTL: &str = include_str!("files/debian/systemctl");

/// Runs in the image before the recipe's own commands.
const CUSTOMIZE_PRE: &str = r#"
# umlkit runtime: `service` is the systemctl shim (Debian's is diverted)
dpkg-divert --quiet --local --rename --divert /usr/sbin/service.debian --add /usr/sbin/service
ln -sf /usr/bin/systemctl /usr/sbin/service
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts
echo uml > /etc/hostname
: > /etc/machine-id
"#;

/// Options of [`build`]; `Default` finds everything on the host.
#[derive(Debug, Clone, Default)]
pub struct BuildOpts {
    /// Rebuild even when the cache holds the image.
    pub force: bool,
    /// Cache directory (default [`crate::cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// Static exec agent (default [`crate::find_agent`]).
    pub agent: Option<PathBuf>,
    /// Static busybox (default `/bin/busybox`).
    pub busybox: Option<PathBuf>,
    /// Kernel module trees (default `/usr/lib/uml/modules`).
    pub modules_root: Option<PathBuf>,
}

/// What the cache knows about a built image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub recipe: String,
    pub key: String,
    pub image: PathBuf,
    pub built_unix: u64,
    pub build_secs: f64,
    pub kernel: String,
    pub builder: String,
    pub mode: String,
    pub size_bytes: u64,
    pub recipe_text: String,
}

/// A resolved, possibly built image.
#[derive(Debug, Clone)]
pub struct Image {
    pub recipe: Recipe,
    pub recipe_text: &'static str,
    pub key: String,
    pub kernel: String,
    /// Where the image is (or will be) in the cache.
    pub path: PathBuf,
}

impl Image {
    /// True when the image of this exact key is in the cache.
    pub fn is_built(&self) -> bool {
        self.path.is_file() && meta_path(&self.path).is_file()
    }

    /// The metadata of the built image.
    pub fn meta(&self) -> Result<Meta, Error> {
        read_meta(&meta_path(&self.path))
    }

    /// `dpkg-query -W` output saved at build time.
    pub fn packages(&self) -> Result<String, Error> {
        let p = self.path.with_extension("packages");
        std::fs::read_to_string(&p).map_err(io(&p, "cannot read the package list"))
    }
}

fn meta_path(img: &Path) -> PathBuf {
    img.with_extension("json")
}

fn read_meta(p: &Path) -> Result<Meta, Error> {
    let t = std::fs::read_to_string(p).map_err(io(p, "cannot read image metadata"))?;
    serde_json::from_str(&t).map_err(|e| Error::Build {
        image: p.display().to_string(),
        msg: format!("bad metadata: {e}"),
    })
}

fn cache(opts: &BuildOpts) -> PathBuf {
    opts.cache_dir.clone().unwrap_or_else(crate::cache_dir)
}

/// Create the cache dir 0700 (whatever the umask) and refuse a symlink.
fn ensure_cache(dir: &Path) -> Result<(), Error> {
    if let Ok(md) = dir.symlink_metadata() {
        if md.file_type().is_symlink() {
            return Err(Error::Build {
                image: dir.display().to_string(),
                msg: "the image cache is a symbolic link; refusing to follow it".into(),
            });
        }
    } else {
        std::fs::create_dir_all(dir).map_err(io(dir, "cannot create the image cache"))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(dir, "cannot chmod the image cache"))
}

/// The kernel version whose modules go into images: the newest
/// `<root>/<version>` directory.
fn kernel_version(root: &Path) -> Result<String, Error> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .map_err(io(
            root,
            "cannot list the kernel modules (install user-mode-linux)",
        ))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("modules.order").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v.pop().ok_or_else(|| Error::Missing {
        what: format!("kernel modules in {}", root.display()),
        hint: "install the Debian package user-mode-linux".into(),
    })
}

/// Resolve an image name (`kathara/frr:latest`, `kathara`) to its recipe
/// and cache path. `Ok(None)` when no recipe has that name.
pub fn resolve(name: &str, opts: &BuildOpts) -> Result<Option<Image>, Error> {
    let Some((recipe, text)) = recipe::resolve(name) else {
        return Ok(None);
    };
    let agent = match &opts.agent {
        Some(a) => a.clone(),
        None => crate::find_agent()?,
    };
    let busybox = crate::find_busybox(opts.busybox.as_deref())?;
    let mroot = opts
        .modules_root
        .clone()
        .unwrap_or_else(|| PathBuf::from("/usr/lib/uml/modules"));
    let kernel = kernel_version(&mroot)?;
    let mut h = Fnv::new();
    for s in [
        BUILDER_VERSION,
        RCS,
        RCK,
        INITTAB,
        FSTAB,
        SYSTEMCTL,
        CUSTOMIZE_PRE,
        text,
    ] {
        h.add(s.as_bytes());
    }
    for f in &recipe.files {
        if let Some(t) = f.asset.as_deref().and_then(recipe::asset) {
            h.add(t.as_bytes());
        }
    }
    h.add(kernel.as_bytes());
    h.add_file(&agent)?;
    h.add_file(&busybox)?;
    crate::hash_tree(&mut h, &mroot.join(&kernel))?;
    let key = format!("{:016x}", h.0);
    let path = cache(opts).join(format!("{}-{key}.img", recipe.name));
    Ok(Some(Image {
        recipe,
        recipe_text: text,
        key,
        kernel,
        path,
    }))
}

/// Every built image in the cache (current and stale keys).
pub fn list(opts: &BuildOpts) -> Result<Vec<Meta>, Error> {
    let dir = cache(opts);
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") && p.with_extension("img").is_file() {
            if let Ok(m) = read_meta(&p) {
                out.push(m);
            }
        }
    }
    out.sort_by(|a, b| (&a.recipe, a.built_unix).cmp(&(&b.recipe, b.built_unix)));
    Ok(out)
}

/// Remove every cached build of the recipe `name` resolves to; returns
/// the removed image files.
pub fn remove(name: &str, opts: &BuildOpts) -> Result<Vec<PathBuf>, Error> {
    let Some((r, _)) = recipe::resolve(name) else {
        return Err(Error::UnknownImage(name.into()));
    };
    let mut gone = Vec::new();
    for m in list(opts)? {
        if m.recipe != r.name {
            continue;
        }
        for ext in ["img", "json", "packages"] {
            let p = m.image.with_extension(ext);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p, "cannot remove")(e)),
            }
        }
        gone.push(m.image);
    }
    Ok(gone)
}

/// How mmdebstrap runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Root,
    Unshare,
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// True when `file` (subuid/subgid format) has a range for `user` or `uid`.
fn has_subid(file: &str, user: &str, uid: u32) -> bool {
    std::fs::read_to_string(file).is_ok_and(|t| {
        t.lines().any(|l| {
            let mut f = l.split(':');
            let who = f.next().unwrap_or("");
            let count = f.nth(1).and_then(|c| c.trim().parse::<u64>().ok());
            (who == user || who == uid.to_string()) && count.is_some_and(|c| c >= 65536)
        })
    })
}

/// Pick the mmdebstrap mode, or say exactly what is missing.
fn mode() -> Result<Mode, Error> {
    let uid = umlkit_sys::net::euid();
    if uid == 0 {
        return Ok(Mode::Root);
    }
    let user = umlkit_sys::net::user_name(uid).unwrap_or_else(|| uid.to_string());
    let mut missing = Vec::new();
    for t in ["newuidmap", "newgidmap"] {
        if find_tool(t).is_none() {
            missing.push(format!("{t} (install the Debian package uidmap)"));
        }
    }
    for f in ["/etc/subuid", "/etc/subgid"] {
        if !has_subid(f, &user, uid) {
            missing.push(format!(
                "an entry for user {user} in {f} (as root: usermod --add-subuids 100000-165535 \
                 --add-subgids 100000-165535 {user})"
            ));
        }
    }
    if missing.is_empty() {
        Ok(Mode::Unshare)
    } else {
        Err(Error::Unprivileged {
            user,
            missing: missing.join("; "),
        })
    }
}

/// In-image path (`/sbin/x`) to overlay-relative path, under `usr/` for the
/// merged-/usr directories so the tarball never replaces their symlinks.
fn overlay_rel(p: &str) -> PathBuf {
    let p = p.trim_start_matches('/');
    for top in ["bin/", "sbin/", "lib/", "lib64/"] {
        if p.starts_with(top) {
            return PathBuf::from("usr").join(p);
        }
    }
    PathBuf::from(p)
}

fn mkdirs(root: &Path, rel: &Path) -> Result<(), Error> {
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        if cur.symlink_metadata().is_err() {
            std::fs::create_dir(&cur).map_err(io(&cur, "cannot create"))?;
            std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&cur, "cannot chmod"))?;
        }
    }
    Ok(())
}

fn put(root: &Path, rel: impl AsRef<Path>, text: &[u8], mode: u32) -> Result<(), Error> {
    let rel = rel.as_ref();
    if let Some(parent) = rel.parent() {
        mkdirs(root, parent)?;
    }
    let p = root.join(rel);
    std::fs::write(&p, text).map_err(io(&p, "cannot write"))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
        .map_err(io(&p, "cannot chmod"))
}

fn link(root: &Path, rel: impl AsRef<Path>, target: &str) -> Result<(), Error> {
    let rel = rel.as_ref();
    if let Some(parent) = rel.parent() {
        mkdirs(root, parent)?;
    }
    let p = root.join(rel);
    std::os::unix::fs::symlink(target, &p).map_err(io(&p, "cannot create link"))
}

fn copy_tree(src: &Path, dst: &Path) -> Result<(), Error> {
    for e in std::fs::read_dir(src).map_err(io(src, "cannot list"))? {
        let e = e.map_err(io(src, "cannot list"))?;
        let (s, d) = (e.path(), dst.join(e.file_name()));
        let ft = e.file_type().map_err(io(&s, "cannot stat"))?;
        if ft.is_dir() {
            std::fs::create_dir(&d).map_err(io(&d, "cannot create"))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&d, "cannot chmod"))?;
            copy_tree(&s, &d)?;
        } else if ft.is_file() && std::fs::hard_link(&s, &d).is_err() {
            std::fs::copy(&s, &d).map_err(io(&d, "cannot copy"))?;
        }
    }
    Ok(())
}

/// Single-quote for sh.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn stage_overlay(
    root: &Path,
    img: &Image,
    agent: &Path,
    busybox: &Path,
    mroot: &Path,
) -> Result<(), Error> {
    std::fs::create_dir(root).map_err(io(root, "cannot create"))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))
        .map_err(io(root, "cannot chmod"))?;
    let bb = std::fs::read(busybox).map_err(io(busybox, "cannot read busybox"))?;
    put(root, "usr/lib/umlkit/busybox", &bb, 0o755)?;
    put(root, "usr/lib/umlkit/rcS", RCS.as_bytes(), 0o755)?;
    put(root, "usr/lib/umlkit/rcK", RCK.as_bytes(), 0o755)?;
    for l in ["init", "poweroff", "halt", "reboot"] {
        link(root, format!("usr/sbin/{l}"), "../lib/umlkit/busybox")?;
    }
    let ag = std::fs::read(agent).map_err(io(agent, "cannot read the agent"))?;
    put(root, "usr/sbin/umlkit-agent", &ag, 0o755)?;
    put(root, "usr/bin/systemctl", SYSTEMCTL.as_bytes(), 0o755)?;
    put(root, "etc/inittab", INITTAB.as_bytes(), 0o644)?;
    put(root, "etc/fstab", FSTAB.as_bytes(), 0o644)?;
    for f in &img.recipe.files {
        let rel = overlay_rel(&f.path);
        if let Some(t) = f.asset.as_deref().and_then(recipe::asset) {
            put(root, &rel, t.as_bytes(), f.mode.unwrap_or(0o644))?;
        } else if let Some(t) = &f.link {
            link(root, &rel, t)?;
        }
    }
    // kernel modules: the recipe's subtrees (or all) and depmod's inputs
    let src = mroot.join(&img.kernel);
    let dst = PathBuf::from("usr/lib/modules").join(&img.kernel);
    mkdirs(root, &dst)?;
    let dst = root.join(dst);
    if img.recipe.modules.is_empty() {
        copy_tree(&src, &dst)?;
    } else {
        for m in &img.recipe.modules {
            if src.join(m).is_dir() {
                mkdirs(&dst, Path::new(m))?;
                copy_tree(&src.join(m), &dst.join(m))?;
            }
        }
        for f in [
            "modules.order",
            "modules.builtin",
            "modules.builtin.modinfo",
        ] {
            if src.join(f).is_file() {
                std::fs::copy(src.join(f), dst.join(f)).map_err(io(&dst.join(f), "cannot copy"))?;
            }
        }
    }
    let mut script = String::from("set -e\n");
    script.push_str(CUSTOMIZE_PRE);
    for c in &img.recipe.customize {
        script.push_str(c);
        script.push('\n');
    }
    script.push_str(&format!("depmod -a {}\n", sq(&img.kernel)));
    script.push_str(
        "dpkg-query -W -f '${Package}\\t${Version}\\n' > /usr/lib/umlkit/packages\n\
         rm -f /usr/lib/umlkit/customize /etc/dpkg/dpkg.cfg.d/99mmdebstrap\n",
    );
    put(root, "usr/lib/umlkit/customize", script.as_bytes(), 0o755)
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Run a command, passing each stderr line to `progress`; keep the tail for
/// the error.
fn run_logged(
    mut cmd: Command,
    what: &str,
    image: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(), Error> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::Build {
        image: image.into(),
        msg: format!("cannot run {what}: {e}"),
    })?;
    let mut tail: Vec<String> = Vec::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            progress(&line);
            tail.push(line);
            if tail.len() > 20 {
                tail.remove(0);
            }
        }
    }
    let st = child.wait().map_err(|e| Error::Build {
        image: image.into(),
        msg: format!("{what}: {e}"),
    })?;
    if st.success() {
        Ok(())
    } else {
        Err(Error::Build {
            image: image.into(),
            msg: format!("{what} failed ({st}):\n{}", tail.join("\n")),
        })
    }
}

/// Removes the build directory however the build ends.
struct WorkDir(PathBuf, Mode);
impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.0).is_err() && self.1 == Mode::Unshare {
            // the tree is owned by subordinate ids: remove it from inside
            // (through the directory on stdin: the cache is 0700)
            if let Ok(d) = std::fs::File::open(&self.0) {
                let _ = Command::new("mmdebstrap")
                    .args([
                        "--unshare-helper",
                        "sh",
                        "-c",
                        "cd /proc/self/fd/0 && rm -rf root",
                    ])
                    .stdin(d)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Build the image `name` resolves to (or reuse the cached one unless
/// `opts.force`). `progress` receives human-readable step lines.
pub fn build(
    name: &str,
    opts: &BuildOpts,
    progress: &mut dyn FnMut(&str),
) -> Result<(Image, bool), Error> {
    let img = resolve(name, opts)?.ok_or_else(|| Error::UnknownImage(name.into()))?;
    if img.is_built() && !opts.force {
        return Ok((img, false));
    }
    let label = img.recipe.name.clone();
    let mmdebstrap = find_tool("mmdebstrap").ok_or_else(|| Error::Missing {
        what: "mmdebstrap".into(),
        hint: "install the Debian package mmdebstrap".into(),
    })?;
    let mkfs = crate::mkfs()?;
    let mode = mode()?;
    let dir = cache(opts);
    ensure_cache(&dir)?;
    let agent = match &opts.agent {
        Some(a) => a.clone(),
        None => crate::find_agent()?,
    };
    if !crate::is_static_elf(&agent)? {
        return Err(Error::AgentNotStatic(agent));
    }
    let busybox = crate::find_busybox(opts.busybox.as_deref())?;
    let mroot = opts
        .modules_root
        .clone()
        .unwrap_or_else(|| PathBuf::from("/usr/lib/uml/modules"));
    let t0 = Instant::now();
    let work = dir.join(format!(
        ".build-{label}-{}-{}",
        std::process::id(),
        crate::unique()
    ));
    std::fs::create_dir(&work).map_err(io(&work, "cannot create the build dir"))?;
    let _guard = WorkDir(work.clone(), mode);
    // the unshare helper runs as a subordinate uid: it needs to enter
    std::fs::set_permissions(
        &work,
        std::fs::Permissions::from_mode(if mode == Mode::Root { 0o700 } else { 0o777 }),
    )
    .map_err(io(&work, "cannot chmod"))?;
    let overlay = work.join("overlay");
    stage_overlay(&overlay, &img, &agent, &busybox, &mroot)?;
    let overlay_tar = work.join("overlay.tar");
    let mut tar = Command::new("tar");
    tar.args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(&overlay)
        .arg("-cf")
        .arg(&overlay_tar)
        .arg(".");
    tar.stdin(Stdio::null());
    run_logged(tar, "tar (overlay)", &label, &mut |_| {})?;
    progress(&format!(
        "[{:6.1}s] mmdebstrap --mode={} {} ({} packages)",
        secs(t0),
        if mode == Mode::Root {
            "root"
        } else {
            "unshare"
        },
        img.recipe.suite,
        img.recipe.packages.len()
    ));
    let rootfs_tar = work.join("rootfs.tar");
    let packages_out = work.join("packages");
    let mut m = Command::new(&mmdebstrap);
    m.arg(format!(
        "--mode={}",
        if mode == Mode::Root {
            "root"
        } else {
            "unshare"
        }
    ))
    .arg(format!("--variant={}", img.recipe.variant))
    // no fsync per file: a failed build is thrown away anyway
    .arg("--dpkgopt=force-unsafe-io")
    .arg("--verbose");
    if !img.recipe.packages.is_empty() {
        m.arg(format!("--include={}", img.recipe.packages.join(",")));
    }
    m.arg(format!(
        "--customize-hook=tar-in {} /",
        overlay_tar.display()
    ))
    .arg(r#"--customize-hook=chroot "$1" /bin/bash /usr/lib/umlkit/customize"#)
    .arg(format!(
        "--customize-hook=download /usr/lib/umlkit/packages {}",
        packages_out.display()
    ))
    .arg(&img.recipe.suite)
    .arg(&rootfs_tar);
    if img.recipe.mirrors.is_empty() {
        m.arg("http://deb.debian.org/debian");
    } else {
        m.args(&img.recipe.mirrors);
    }
    m.stdin(Stdio::null());
    let mut last = String::new();
    run_logged(m, "mmdebstrap", &label, &mut |line| {
        // mmdebstrap's steps are its "I:" lines; the rest is apt/dpkg noise
        if let Some(step) = line.strip_prefix("I: ") {
            if step != last {
                progress(&format!("[{:6.1}s] {step}", secs(t0)));
                last = step.to_string();
            }
        } else if line.starts_with("E: ") || line.starts_with("W: ") {
            progress(&format!("[{:6.1}s] {line}", secs(t0)));
        }
    })?;
    progress(&format!(
        "[{:6.1}s] unpacking and mkfs.ext4 {}",
        secs(t0),
        img.recipe.size
    ));
    let size = crate::parse_size(&img.recipe.size).unwrap_or(2 << 30);
    // Everything below runs in the work dir. As an ordinary user the
    // unshare helper (a subordinate uid) cannot pass the 0700 cache: it gets
    // the work dir (0777 inside the private cache) as its stdin and works
    // relative to /proc/self/fd/0.
    let tmp_img = work.join("image.tmp");
    let script = format!(
        "set -e; cd {cwd}; mkdir root; tar -C root --numeric-owner -xpf rootfs.tar --exclude='./dev/*'; \
         {mkfs} -q -F -E root_owner=0:0 -O ^has_journal -L umlkit -d root image.tmp {kib}k",
        cwd = if mode == Mode::Root {
            sq(&work.to_string_lossy())
        } else {
            "/proc/self/fd/0".into()
        },
        mkfs = sq(&mkfs.to_string_lossy()),
        kib = size / 1024,
    );
    // created by us (so we own it) before mkfs fills it
    let f = std::fs::File::create(&tmp_img).map_err(io(&tmp_img, "cannot create"))?;
    f.set_len(size).map_err(io(&tmp_img, "cannot size"))?;
    drop(f);
    let mut mk = if mode == Mode::Root {
        let mut c = Command::new("sh");
        c.arg("-c").arg(&script).stdin(Stdio::null());
        c
    } else {
        for (p, m) in [(&tmp_img, 0o666), (&rootfs_tar, 0o644)] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
                .map_err(io(p, "cannot chmod"))?;
        }
        let d = std::fs::File::open(&work).map_err(io(&work, "cannot open"))?;
        let mut c = Command::new(&mmdebstrap);
        c.args(["--unshare-helper", "sh", "-c"])
            .arg(&script)
            .stdin(d);
        c
    };
    mk.env("LC_ALL", "C");
    run_logged(mk, "unpack and mkfs.ext4", &label, &mut |l| {
        progress(&format!("[{:6.1}s] {l}", secs(t0)))
    })?;
    std::fs::set_permissions(&tmp_img, std::fs::Permissions::from_mode(0o400))
        .map_err(io(&tmp_img, "cannot chmod"))?;
    let pk = img.path.with_extension("packages");
    let pk_text = std::fs::read(&packages_out).map_err(io(&packages_out, "cannot read"))?;
    write_private(&pk, &pk_text)?;
    if opts.force {
        std::fs::rename(&tmp_img, &img.path)
            .map_err(io(&img.path, "cannot move the image into place"))?;
    } else {
        // a build of the same recipe that finished first stays: replacing
        // it would change its mtime under the COW files of guests already
        // made on it (the kernel refuses those as a backing file mismatch)
        let r = std::fs::hard_link(&tmp_img, &img.path);
        let _ = std::fs::remove_file(&tmp_img);
        match r {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(io(&img.path, "cannot move the image into place")(e));
            }
            _ => {}
        }
    }
    let meta = Meta {
        recipe: img.recipe.name.clone(),
        key: img.key.clone(),
        image: img.path.clone(),
        built_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        build_secs: (secs(t0) * 10.0).round() / 10.0,
        kernel: img.kernel.clone(),
        builder: BUILDER_VERSION.into(),
        mode: if mode == Mode::Root {
            "root"
        } else {
            "unshare"
        }
        .into(),
        size_bytes: size,
        recipe_text: img.recipe_text.into(),
    };
    let json = serde_json::to_vec_pretty(&meta).unwrap_or_default();
    write_private(&meta_path(&img.path), &json)?;
    progress(&format!("[{:6.1}s] done: {}", secs(t0), img.path.display()));
    Ok((img, true))
}

/// Write a 0600 file via a temporary name and rename.
fn write_private(p: &Path, data: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let tmp = p.with_extension(format!("tmp{}-{}", std::process::id(), crate::unique()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp, "cannot create"))?;
    f.write_all(data).map_err(io(&tmp, "cannot write"))?;
    drop(f);
    std::fs::rename(&tmp, p).map_err(io(p, "cannot rename into place"))
}

use std::os::unix::fs::OpenOptionsExt;

/// Allocated and apparent size of a file.
pub fn disk_usage(p: &Path) -> Option<(u64, u64)> {
    let md = p.metadata().ok()?;
    Some((md.blocks() * 512, md.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_paths_stay_under_usr_for_merged_dirs() {
        assert_eq!(overlay_rel("/sbin/init"), PathBuf::from("usr/sbin/init"));
        assert_eq!(
            overlay_rel("/lib/modules"),
            PathBuf::from("usr/lib/modules")
        );
        assert_eq!(
            overlay_rel("/etc/init.d/quagga"),
            PathBuf::from("etc/init.d/quagga")
        );
        assert_eq!(overlay_rel("/binary"), PathBuf::from("binary"));
    }

    #[test]
    fn subid_lookup() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("subuid");
        std::fs::write(&f, "alice:100000:65536\n1001:200000:65536\nbob:300000:10\n").unwrap();
        let f = f.to_str().unwrap();
        assert!(has_subid(f, "alice", 1000));
        assert!(has_subid(f, "carol", 1001));
        assert!(!has_subid(f, "bob", 1002), "range too small");
        assert!(!has_subid(f, "dave", 1003));
        assert!(!has_subid("/nonexistent/subuid", "alice", 1000));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sq("a b"), "'a b'");
        assert_eq!(sq("it's"), r"'it'\''s'");
    }
}

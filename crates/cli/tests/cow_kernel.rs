//! End-to-end: the real kernel writes through a COW made by umlkit; merges
//! by uml_moo and umlkit are identical; merged images, rebased COWs and
//! unpacked archives boot and show the guest's files.

mod cow_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cow_common::*;

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// A busybox ext4 image `img` whose init runs `body`.
fn image(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let root = dir.join(format!("{name}.root"));
    testkit::busybox_rootfs(&root, &testkit::simple_init(body));
    let img = dir.join(name);
    testkit::mkfs_ext4(&img, 32, &root);
    img
}

fn boot(dir: &Path, umid: &str, ubd: &str) -> String {
    let (st, out) = testkit::boot_to_poweroff(dir, umid, &[ubd, "init=/sbin/init"], BOOT_TIMEOUT);
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "{umid} did not power off cleanly:\n{out}"
    );
    out
}

/// Guest script: write files (first boot) or print them (later boots).
/// The same init file serves both: /sbin/init checks for /data/f1.
const BODY: &str = r#"
if [ -f /data/f1 ]; then
  echo "SEEN f1=$(cat /data/f1) sum=$(md5sum /data/f2 | cut -d' ' -f1)"
else
  mkdir -p /data
  echo hello-from-guest > /data/f1
  dd if=/dev/urandom of=/data/f2 bs=4096 count=300 2>/dev/null
  rm -f /etc/gone
  echo "WROTE sum=$(md5sum /data/f2 | cut -d' ' -f1)"
fi"#;

fn field<'a>(out: &'a str, tag: &str) -> &'a str {
    let i = out
        .find(tag)
        .unwrap_or_else(|| panic!("no {tag} in console:\n{out}"));
    out[i + tag.len()..].split_whitespace().next().unwrap()
}

/// Image + COW (umlkit mkcow) + first boot that writes through the COW.
/// Returns the md5 of /data/f2 the guest printed.
fn written_cow(dir: &Path, umid: &str) -> String {
    image(dir, "base.img", BODY);
    ok(&run(Command::new(umlkit())
        .current_dir(dir)
        .args(["mkcow", "x.cow", "base.img"])));
    let out = boot(dir, umid, &format!("ubd0={}", dir.join("x.cow").display()));
    field(&out, "WROTE sum=").to_string()
}

fn assert_sees(out: &str, sum: &str) {
    assert!(out.contains("SEEN f1=hello-from-guest"), "console:\n{out}");
    assert_eq!(field(out, "sum="), sum, "console:\n{out}");
}

#[test]
fn kernel_cow_merges_identically_and_boots() {
    let d = testkit::short_tempdir("cowk");
    let dir = d.path();
    let sum = written_cow(dir, "cowk1");
    // info on a kernel-written COW.
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "info", "x.cow", "--json"]));
    ok(&o);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["version"], "v3");
    assert_eq!(
        j["backing_file"],
        dir.join("base.img").display().to_string()
    );
    assert!(j["sectors_changed"].as_u64().unwrap() >= 2400, "{j}");
    assert!(j["backing_problem"].is_null());
    assert_eq!(j["data_offset"], 16384); // 32 MiB: bitmap 8192 bytes at 8192

    ok(&run(Command::new("uml_moo")
        .current_dir(dir)
        .args(["x.cow", "c.img"])));
    ok(&run(Command::new(umlkit())
        .current_dir(dir)
        .args(["moo", "x.cow", "u.img"])));
    assert!(same_content(&dir.join("c.img"), &dir.join("u.img")));
    assert!(alloc(&dir.join("u.img")) <= alloc(&dir.join("c.img")));

    // In place, on copies of the backing file (same mtime), with -b.
    for (name, tool) in [("dc.img", "c"), ("du.img", "u")] {
        std::fs::copy(dir.join("base.img"), dir.join(name)).unwrap();
        set_mtime(&dir.join(name), mtime(&dir.join("base.img")));
        let o = if tool == "c" {
            run(Command::new("uml_moo")
                .current_dir(dir)
                .args(["-d", "-b", name, "x.cow"]))
        } else {
            run(Command::new(umlkit())
                .current_dir(dir)
                .args(["moo", "-b", name, "-d", "x.cow"]))
        };
        ok(&o);
    }
    assert!(same_content(&dir.join("dc.img"), &dir.join("du.img")));
    assert!(same_content(&dir.join("dc.img"), &dir.join("c.img")));

    // The merged images boot and show the guest's files.
    let out = boot(
        dir,
        "cowk2",
        &format!("ubd0={}", dir.join("u.img").display()),
    );
    assert_sees(&out, &sum);
    let out = boot(
        dir,
        "cowk3",
        &format!("ubd0={}", dir.join("du.img").display()),
    );
    assert_sees(&out, &sum);
}

#[test]
fn touched_backing_refused_then_accepted_after_rebase() {
    let d = testkit::short_tempdir("cowr");
    let dir = d.path();
    let sum = written_cow(dir, "cowr1");
    ok(&run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "check", "x.cow"])));
    set_mtime(&dir.join("base.img"), mtime(&dir.join("base.img")) + 3600);
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "check", "x.cow"]));
    assert_ne!(code(&o), 0);
    assert!(
        stderr(&o).contains("mtime mismatch") && stderr(&o).contains("base.img"),
        "{}",
        stderr(&o)
    );
    // The kernel refuses it too.
    let (_, out) = testkit::boot_to_poweroff(
        dir,
        "cowr2",
        &[
            &format!("ubd0={}", dir.join("x.cow").display()),
            "init=/sbin/init",
        ],
        BOOT_TIMEOUT,
    );
    assert!(out.contains("mtime mismatch"), "console:\n{out}");
    ok(&run(Command::new(umlkit()).current_dir(dir).args([
        "cow",
        "rebase",
        "x.cow",
        "--accept-mtime",
    ])));
    ok(&run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "check", "x.cow"])));
    let out = boot(
        dir,
        "cowr3",
        &format!("ubd0={}", dir.join("x.cow").display()),
    );
    assert_sees(&out, &sum);

    // Move the backing file (mv keeps the mtime), rebase, boot.
    std::fs::create_dir(dir.join("moved")).unwrap();
    std::fs::rename(dir.join("base.img"), dir.join("moved/base.img")).unwrap();
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "check", "x.cow"]));
    assert!(stderr(&o).contains("rebase"), "{}", stderr(&o));
    ok(&run(Command::new(umlkit()).current_dir(dir).args([
        "cow",
        "rebase",
        "x.cow",
        "--backing",
        "moved/base.img",
    ])));
    let out = boot(
        dir,
        "cowr4",
        &format!("ubd0={}", dir.join("x.cow").display()),
    );
    assert_sees(&out, &sum);
}

#[test]
fn pack_unpack_to_another_folder_boots_and_gnu_tar_reads_it() {
    let d = testkit::short_tempdir("cowp");
    let dir = d.path();
    let sum = written_cow(dir, "cowp1");
    let tar = dir.join("disk.tar");
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "pack", "disk.tar", "x.cow"]));
    ok(&o);
    assert_eq!(stdout(&o), "base.img\nx.cow\n");
    // Sparse: far smaller than the two apparent sizes.
    let apparent = std::fs::metadata(dir.join("base.img")).unwrap().len()
        + std::fs::metadata(dir.join("x.cow")).unwrap().len();
    assert!(std::fs::metadata(&tar).unwrap().len() < apparent / 2);

    // GNU tar as the oracle: lists real sizes, extracts byte-identical files.
    let o = run(Command::new("tar").arg("tvf").arg(&tar));
    ok(&o);
    let listing = stdout(&o);
    assert!(
        listing.contains("base.img") && listing.contains("x.cow"),
        "{listing}"
    );
    assert!(listing.contains(&format!(" {} ", 32 << 20)), "{listing}");
    let gx = dir.join("gnu");
    std::fs::create_dir(&gx).unwrap();
    ok(&run(Command::new("tar")
        .current_dir(&gx)
        .arg("xf")
        .arg(&tar)
        .arg("--sparse")));
    assert!(same_content(&gx.join("base.img"), &dir.join("base.img")));
    assert_eq!(mtime(&gx.join("base.img")), mtime(&dir.join("base.img")));
    assert!(alloc(&gx.join("base.img")) <= alloc(&dir.join("base.img")));
    // In the archive the COW names its backing file relatively.
    let h = std::fs::read(gx.join("x.cow")).unwrap();
    assert_eq!(&h[32..41], b"base.img\0");
    // Everything past the header is the original COW.
    let orig = std::fs::read(dir.join("x.cow")).unwrap();
    assert!(h[4128..] == orig[4128..]);

    // Unpack elsewhere, check, boot.
    let o = run(Command::new(umlkit()).current_dir(dir).args([
        "cow",
        "unpack",
        "disk.tar",
        "elsewhere",
    ]));
    ok(&o);
    let new_cow = dir.join("elsewhere/x.cow");
    let o = run(Command::new(umlkit()).current_dir(dir).args([
        "cow",
        "info",
        "elsewhere/x.cow",
        "--json",
    ]));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        j["backing_file"],
        dir.join("elsewhere/base.img").display().to_string()
    );
    assert!(j["backing_problem"].is_null(), "{j}");
    // Remove the originals so only the unpacked copy can be used.
    std::fs::remove_file(dir.join("base.img")).unwrap();
    std::fs::remove_file(dir.join("x.cow")).unwrap();
    let out = boot(dir, "cowp2", &format!("ubd0={}", new_cow.display()));
    assert_sees(&out, &sum);
}

#[test]
fn kernel_created_cow_matches_umlkit_mkcow() {
    let d = testkit::short_tempdir("cowc");
    let dir = d.path();
    image(dir, "base.img", "echo KCOW-UP");
    // The kernel creates k.cow (absent) for ubd0=k.cow,base.img; the guest
    // writes nothing but the mount may touch the superblock.
    let ubd = format!(
        "ubd0={},{}",
        dir.join("k.cow").display(),
        dir.join("base.img").display()
    );
    let out = boot(dir, "cowc1", &ubd);
    assert!(out.contains("KCOW-UP"), "{out}");
    ok(&run(Command::new(umlkit())
        .current_dir(dir)
        .args(["mkcow", "u.cow", "base.img"])));
    let k = std::fs::read(dir.join("k.cow")).unwrap();
    let u = std::fs::read(dir.join("u.cow")).unwrap();
    assert_eq!(k.len(), u.len());
    // Same fields; the kernel does not zero the path field past the NUL
    // (it copies into an uninitialised buffer), so compare parsed headers.
    let hk = cow_format::CowHeader::parse(&k[..4136]).unwrap();
    let hu = cow_format::CowHeader::parse(&u[..4136]).unwrap();
    assert_eq!(hk, hu);
    assert!(k[..36 + hu.backing_file.len()] == u[..36 + hu.backing_file.len()]);
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "info", "k.cow"]));
    ok(&o);
    assert!(
        stdout(&o).contains("backing status:    ok"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn cow_in_use_by_a_running_guest_is_refused() {
    let d = testkit::short_tempdir("cowl");
    let dir = d.path();
    image(dir, "base.img", "echo GUEST-READY\nsleep 120");
    ok(&run(Command::new(umlkit())
        .current_dir(dir)
        .args(["mkcow", "x.cow", "base.img"])));
    let log = dir.join("console.log");
    let logf = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(testkit::kernel());
    cmd.arg("umid=cowl1")
        .arg(format!("uml_dir={}", dir.display()))
        .args([
            "mem=64M",
            "con=null",
            "con0=fd:0,fd:1",
            "root=/dev/ubda",
            "rw",
            "init=/sbin/init",
        ])
        .arg(format!("ubd0={}", dir.join("x.cow").display()))
        .stdin(std::process::Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf);
    let mut guest = testkit::ProcGuard::spawn("cowl1", cmd);
    assert!(
        testkit::wait_until(BOOT_TIMEOUT, || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("GUEST-READY")),
        "guest did not come up:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for args in [
        vec!["moo", "x.cow", "out.img"],
        vec!["moo", "-d", "x.cow"],
        vec!["cow", "rebase", "x.cow", "--accept-mtime"],
        vec!["cow", "pack", "p.tar", "x.cow"],
        vec!["mkcow", "-f", "x.cow", "base.img"],
    ] {
        let o = run(Command::new(umlkit()).current_dir(dir).args(&args));
        assert_ne!(code(&o), 0, "{args:?} should be refused");
        assert!(
            stderr(&o).contains("x.cow is in use"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    for f in ["out.img", "p.tar", "x.cow.moo-journal"] {
        assert!(!dir.join(f).exists(), "{f} left behind");
    }
    guest.kill();
    // Once the guest is gone the merge works.
    ok(&run(Command::new(umlkit())
        .current_dir(dir)
        .args(["moo", "x.cow", "out.img"])));
}

//! Bad input: every failure names the file and the problem, exits != 0 and
//! leaves nothing half-written behind.

mod cow_common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

use cow_common::*;

const MTIME: i64 = 1_700_000_000;

fn umlkit_in(dir: &Path, args: &[&str]) -> Output {
    run(Command::new(umlkit()).current_dir(dir).args(args))
}

/// A valid COW `x.cow` over `back.img` (4 MiB) with some guest data.
fn setup(dir: &Path) {
    backing_file(&dir.join("back.img"), 4 << 20, MTIME);
    ok(&umlkit_in(dir, &["mkcow", "x.cow", "back.img"]));
    guest_write(&dir.join("x.cow"), &[(0, 8), (1000, 64)], 3, false);
}

fn expect_fail(o: &Output, needles: &[&str]) {
    assert_ne!(code(o), 0, "should fail; stdout {}", stdout(o));
    let e = stderr(o);
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
}

fn corrupt(path: &Path, off: u64, bytes: &[u8]) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, off)
        .unwrap();
}

#[test]
fn wrong_magic() {
    let d = testkit::short_tempdir("cowb");
    setup(d.path());
    corrupt(&d.path().join("x.cow"), 0, b"XXXX");
    for args in [
        vec!["moo", "x.cow", "out.img"],
        vec!["cow", "info", "x.cow"],
        vec!["cow", "check", "x.cow"],
    ] {
        let o = umlkit_in(d.path(), &args);
        expect_fail(&o, &["x.cow", "wrong magic"]);
    }
    assert!(!d.path().join("out.img").exists());
}

#[test]
fn unknown_version() {
    let d = testkit::short_tempdir("cowb");
    setup(d.path());
    corrupt(&d.path().join("x.cow"), 4, &[0, 0, 0, 7]);
    expect_fail(
        &umlkit_in(d.path(), &["moo", "x.cow", "out.img"]),
        &["x.cow", "unknown COW version 7"],
    );
}

#[test]
fn truncated_header_and_bitmap() {
    let d = testkit::short_tempdir("cowb");
    setup(d.path());
    let p = d.path().join("x.cow");
    let full = std::fs::read(&p).unwrap();
    std::fs::write(&p, &full[..1000]).unwrap();
    expect_fail(
        &umlkit_in(d.path(), &["cow", "info", "x.cow"]),
        &[
            "x.cow",
            "truncated v3 header: 4128 bytes needed, 1000 present",
        ],
    );
    std::fs::write(&p, &full[..8192 + 100]).unwrap();
    expect_fail(
        &umlkit_in(d.path(), &["moo", "x.cow", "out.img"]),
        &["bitmap", "x.cow", "truncated bitmap"],
    );
    assert_eq!(list(d.path()), vec!["back.img", "x.cow"]);
}

#[test]
fn data_area_shorter_than_bitmap_says() {
    let d = testkit::short_tempdir("cowb");
    setup(d.path());
    let p = d.path().join("x.cow");
    // Sector 1000..1063 are marked; cut the file inside sector 1010.
    let data_offset = 12288u64;
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(data_offset + 1010 * 512)
        .unwrap();
    for args in [
        vec!["moo", "x.cow", "out.img"],
        vec!["moo", "-d", "x.cow"],
        vec!["cow", "check", "x.cow"],
    ] {
        expect_fail(
            &umlkit_in(d.path(), &args),
            &["x.cow", "data area too short", "sector 1063"],
        );
    }
    assert_eq!(list(d.path()), vec!["back.img", "x.cow"]);
}

#[test]
fn missing_or_shorter_backing() {
    let d = testkit::short_tempdir("cowb");
    setup(d.path());
    let dir = d.path();
    std::fs::rename(dir.join("back.img"), dir.join("moved.img")).unwrap();
    let o = umlkit_in(dir, &["moo", "x.cow", "out.img"]);
    expect_fail(
        &o,
        &["cannot stat backing file", "back.img", "No such file"],
    );
    let o = umlkit_in(dir, &["cow", "check", "x.cow"]);
    expect_fail(&o, &["back.img", "rebase x.cow --backing"]);
    std::fs::rename(dir.join("moved.img"), dir.join("back.img")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(dir.join("back.img"))
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    set_mtime(&dir.join("back.img"), MTIME);
    let o = umlkit_in(dir, &["moo", "x.cow", "out.img"]);
    expect_fail(
        &o,
        &["Size mismatch (4194304 vs 2097152)", "back.img", "x.cow"],
    );
    assert!(!dir.join("out.img").exists());
}

#[test]
fn backing_path_too_long() {
    let d = testkit::short_tempdir("cowb");
    let dir = d.path();
    let long = "a".repeat(4096);
    let o = umlkit_in(dir, &["mkcow", "x.cow", &long]);
    expect_fail(&o, &["too long", "4096 bytes", "4095"]);
    assert!(!dir.join("x.cow").exists());
    // Absolutized name over the limit: a deep relative path.
    let o = run(Command::new("uml_mkcow")
        .current_dir(dir)
        .args(["c.cow", &long]));
    let m = run(Command::new(multicall(dir, "uml_mkcow"))
        .current_dir(dir)
        .args(["m.cow", &long]));
    assert_eq!(code(&o), code(&m));
    assert_eq!(stdout(&o), stdout(&m).replace("m.cow", "c.cow"));
    assert_eq!(stderr(&o), stderr(&m));
}

#[test]
fn new_file_exists_refused_unless_force() {
    let d = testkit::short_tempdir("cowb");
    setup(d.path());
    let dir = d.path();
    std::fs::write(dir.join("out.img"), b"precious").unwrap();
    let o = umlkit_in(dir, &["moo", "x.cow", "out.img"]);
    expect_fail(&o, &["out.img", "already exists", "--force"]);
    assert_eq!(std::fs::read(dir.join("out.img")).unwrap(), b"precious");
    ok(&umlkit_in(dir, &["moo", "--force", "x.cow", "out.img"]));
    assert_eq!(
        std::fs::metadata(dir.join("out.img")).unwrap().len(),
        4 << 20
    );
    // uml_moo multi-call keeps uml_moo's behaviour: it overwrites.
    std::fs::write(dir.join("out2.img"), b"old").unwrap();
    ok(&run(Command::new(multicall(dir, "uml_moo"))
        .current_dir(dir)
        .args(["x.cow", "out2.img"])));
    assert!(same_content(&dir.join("out.img"), &dir.join("out2.img")));
}

#[test]
fn disk_full_leaves_nothing_behind() {
    let d = testkit::short_tempdir("cowb");
    setup(d.path());
    let dir = d.path();
    // Make the merged image need ~4 MiB of real data.
    guest_write(&dir.join("x.cow"), &[(0, 8000)], 11, false);
    let small = dir.join("small");
    let _mnt = Tmpfs::mount(&small, "2M");
    let out = small.join("out.img");
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .arg("moo")
        .arg("x.cow")
        .arg(&out));
    expect_fail(&o, &["out.img", "No space left on device"]);
    assert!(list(&small).is_empty(), "left behind: {:?}", list(&small));
    let o = run(Command::new(multicall(dir, "uml_moo"))
        .current_dir(dir)
        .arg("x.cow")
        .arg(&out));
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("Writing data: No space left on device"),
        "{}",
        stderr(&o)
    );
    assert!(list(&small).is_empty());
    // pack into the full file system too.
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "pack"])
        .arg(small.join("a.tar"))
        .arg("x.cow"));
    expect_fail(&o, &["a.tar", "No space left on device"]);
    assert!(list(&small).is_empty());
    // mkcow whose sparse COW does not fit the metadata: a COW over a
    // backing bigger than the tmpfs is fine (sparse), so instead fill it.
    std::fs::write(small.join("fill"), vec![1u8; 2 << 20]).unwrap_or(());
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .arg("mkcow")
        .arg(small.join("y.cow"))
        .arg("back.img"));
    if code(&o) != 0 {
        assert!(stderr(&o).contains("y.cow"), "{}", stderr(&o));
        assert!(!small.join("y.cow").exists());
    }
}

#[test]
fn rebase_refuses_size_change_and_unmatched_mtime() {
    let d = testkit::short_tempdir("cowb");
    setup(d.path());
    let dir = d.path();
    backing_file(&dir.join("other.img"), 4 << 20, MTIME + 5);
    let o = umlkit_in(dir, &["cow", "rebase", "x.cow", "--backing", "other.img"]);
    expect_fail(&o, &["mtime mismatch", "other.img", "--accept-mtime"]);
    backing_file(&dir.join("small.img"), 1 << 20, MTIME);
    let o = umlkit_in(
        dir,
        &[
            "cow",
            "rebase",
            "x.cow",
            "--backing",
            "small.img",
            "--accept-mtime",
        ],
    );
    expect_fail(&o, &["Size mismatch", "small.img"]);
    let o = umlkit_in(dir, &["cow", "rebase", "x.cow"]);
    assert_eq!(code(&o), 2, "clap usage error: {}", stderr(&o));
    // Header unchanged by the refused calls.
    ok(&umlkit_in(dir, &["cow", "check", "x.cow"]));
}

#[test]
fn huge_claimed_size_is_an_error_not_an_allocation() {
    let d = testkit::short_tempdir("cowb");
    setup(d.path());
    // size field (BE u64 at 12) = 2^58: the bitmap would be 2^46 bytes.
    corrupt(&d.path().join("x.cow"), 12, &(1u64 << 58).to_be_bytes());
    for args in [vec!["cow", "info", "x.cow"], vec!["moo", "x.cow", "o.img"]] {
        let o = umlkit_in(d.path(), &args);
        assert_ne!(code(&o), 0);
        let e = stderr(&o);
        assert!(e.contains("x.cow"), "{e}");
        assert!(e.contains("truncated bitmap") || e.contains("Size mismatch"), "{e}");
    }
    let o = umlkit_in(d.path(), &["cow", "info", "x.cow"]);
    assert!(stderr(&o).contains("truncated bitmap"), "{}", stderr(&o));
}

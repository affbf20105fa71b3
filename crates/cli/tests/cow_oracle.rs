//! umlkit's COW tools against the C tools (uml_mkcow, uml_moo) as oracles,
//! on hand-built COW files of every version.

mod cow_common;

use std::process::Command;

use cow_common::*;
use cow_format::header::Version;

const MTIME: i64 = 1_704_164_645;

#[test]
fn mkcow_header_and_length_identical_to_uml_mkcow() {
    let d = testkit::short_tempdir("cowo");
    let dir = d.path();
    std::fs::create_dir(dir.join("sub")).unwrap();
    backing_file(&dir.join("sub/back.img"), (8 << 20) + 512 * 3, MTIME);
    std::os::unix::fs::symlink("sub/back.img", dir.join("link.img")).unwrap();
    std::os::unix::fs::symlink("sub", dir.join("sublink")).unwrap();
    // Same cwd-relative arguments for both tools, plain and through links.
    for (i, arg) in [
        "sub/back.img",
        "link.img",
        "sublink/back.img",
        "./sub/../sub/back.img",
    ]
    .iter()
    .enumerate()
    {
        let c = format!("c{i}.cow");
        let u = format!("u{i}.cow");
        ok(&run(Command::new("uml_mkcow")
            .current_dir(dir)
            .args([&c, *arg])));
        ok(&run(Command::new(umlkit())
            .current_dir(dir)
            .args(["mkcow", &u, arg])));
        let a = std::fs::read(dir.join(&c)).unwrap();
        let b = std::fs::read(dir.join(&u)).unwrap();
        assert_eq!(a.len(), b.len(), "length for {arg}");
        assert!(a == b, "bytes differ for {arg}");
        assert_eq!(alloc(&dir.join(&c)), alloc(&dir.join(&u)));
        // Multi-call name too.
        let m = format!("m{i}.cow");
        ok(&run(Command::new(multicall(dir, "uml_mkcow"))
            .current_dir(dir)
            .args([&m, *arg])));
        assert!(std::fs::read(dir.join(&m)).unwrap() == a);
    }
}

#[test]
fn mkcow_force_does_not_truncate_like_uml_mkcow() {
    let d = testkit::short_tempdir("cowf");
    let dir = d.path();
    backing_file(&dir.join("back.img"), 8 << 20, MTIME);
    for (tool, name) in [("uml_mkcow", "c.cow"), ("ours", "u.cow")] {
        let p = dir.join(name);
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(100 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[0xff, 0xff], 8192).unwrap();
        drop(f);
        let mut cmd = if tool == "ours" {
            let mut c = Command::new(umlkit());
            c.arg("mkcow");
            c
        } else {
            Command::new("uml_mkcow")
        };
        // Without -f: refused.
        let o = run(cmd.current_dir(dir).args([name, "back.img"]));
        assert_eq!(code(&o), 1, "{tool}: {}", stderr(&o));
        let mut cmd = if tool == "ours" {
            let mut c = Command::new(umlkit());
            c.arg("mkcow");
            c
        } else {
            Command::new("uml_mkcow")
        };
        ok(&run(cmd.current_dir(dir).args(["-f", name, "back.img"])));
    }
    let a = std::fs::read(dir.join("c.cow")).unwrap();
    let b = std::fs::read(dir.join("u.cow")).unwrap();
    assert_eq!(a.len(), 100 << 20);
    assert!(a == b);
}

#[test]
fn multicall_mkcow_texts_and_exit_codes_match_c() {
    let d = testkit::short_tempdir("cowt");
    let dir = d.path();
    backing_file(&dir.join("back.img"), 1 << 20, MTIME);
    let ours = multicall(dir, "uml_mkcow");
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["only.cow"],
        vec!["-f"],
        vec!["x.cow", "missing.img"],
        vec!["exists.cow", "back.img"],
    ];
    std::fs::write(dir.join("exists.cow"), b"x").unwrap();
    for args in cases {
        let c = run(Command::new("uml_mkcow").current_dir(dir).args(&args));
        let _ = std::fs::remove_file(dir.join("x.cow"));
        let o = run(Command::new(&ours).current_dir(dir).args(&args));
        assert_eq!(code(&o), code(&c), "exit code for {args:?}");
        assert_eq!(stderr(&o), stderr(&c), "stderr for {args:?}");
        assert_eq!(stdout(&o), stdout(&c), "stdout for {args:?}");
        // Difference by design: no 0-byte COW left behind on failure.
        assert!(!dir.join("x.cow").exists());
    }
}

#[test]
fn multicall_moo_texts_and_exit_codes_match_c() {
    let d = testkit::short_tempdir("cowu");
    let dir = d.path();
    backing_file(&dir.join("back.img"), 1 << 20, MTIME);
    ok(&run(Command::new("uml_mkcow")
        .current_dir(dir)
        .args(["ok.cow", "back.img"])));
    std::fs::write(dir.join("garbage.cow"), vec![7u8; 5000]).unwrap();
    backing_file(&dir.join("touched.img"), 1 << 20, MTIME);
    ok(&run(Command::new("uml_mkcow")
        .current_dir(dir)
        .args(["t.cow", "touched.img"])));
    set_mtime(&dir.join("touched.img"), MTIME + 100);
    backing_file(&dir.join("grown.img"), 1 << 20, MTIME);
    ok(&run(Command::new("uml_mkcow")
        .current_dir(dir)
        .args(["g.cow", "grown.img"])));
    std::fs::File::options()
        .write(true)
        .open(dir.join("grown.img"))
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    set_mtime(&dir.join("grown.img"), MTIME);
    let ours = multicall(dir, "uml_moo");
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["ok.cow"],
        vec!["a", "b", "c"],
        vec!["missing.cow", "out.img"],
        vec!["garbage.cow", "out.img"],
        vec!["t.cow", "out.img"],
        vec!["g.cow", "out.img"],
        vec!["-b", "missing.img", "ok.cow", "out.img"],
    ];
    for args in cases {
        let c = run(Command::new("uml_moo").current_dir(dir).args(&args));
        let o = run(Command::new(&ours).current_dir(dir).args(&args));
        assert_eq!(code(&o), code(&c), "exit code for {args:?}");
        assert_eq!(stderr(&o), stderr(&c), "stderr for {args:?}");
        let _ = std::fs::remove_file(dir.join("out.img"));
    }
    // uml_moo -d alone segfaults; we print the usage and exit 1.
    let o = run(Command::new(&ours).arg("-d"));
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).starts_with("uml_moo usage:"));
    let o = run(Command::new(umlkit()).args(["moo", "-d"]));
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).starts_with("uml_moo usage:"));
}

/// Merge a COW with uml_moo and with umlkit (plain and multi-call); all
/// outputs must be cmp-identical, ours allocating no more than uml_moo's.
fn merge_three_ways(dir: &std::path::Path, cow: &str) {
    let c = run(Command::new("uml_moo")
        .current_dir(dir)
        .args([cow, "c.img"]));
    ok(&c);
    ok(&run(Command::new(umlkit())
        .current_dir(dir)
        .args(["moo", cow, "u.img"])));
    ok(&run(Command::new(multicall(dir, "uml_moo"))
        .current_dir(dir)
        .args([cow, "m.img"])));
    for o in ["u.img", "m.img"] {
        assert!(
            same_content(&dir.join("c.img"), &dir.join(o)),
            "{cow}: {o} differs from uml_moo's"
        );
        assert_eq!(
            std::fs::metadata(dir.join("c.img")).unwrap().len(),
            std::fs::metadata(dir.join(o)).unwrap().len()
        );
        assert!(
            alloc(&dir.join(o)) <= alloc(&dir.join("c.img")),
            "{cow}: {o} allocates {} > uml_moo's {}",
            alloc(&dir.join(o)),
            alloc(&dir.join("c.img"))
        );
    }
    for o in ["c.img", "u.img", "m.img"] {
        std::fs::remove_file(dir.join(o)).unwrap();
    }
}

#[test]
fn every_version_merges_identically_to_uml_moo() {
    let d = testkit::short_tempdir("cowv");
    let dir = d.path();
    // A size that is not a multiple of 8 sectors (v1/v2 bitmap rounding)
    // nor of 512 (partial last sector dropped by the merge).
    for size in [(8u64 << 20) + 512 * 5 + 100, 4 << 20] {
        let back = dir.join("back.img");
        backing_file(&back, size, MTIME);
        for (i, v) in [Version::V1, Version::V2, Version::V3, Version::V3Broken]
            .into_iter()
            .enumerate()
        {
            let cow = format!("v{i}.cow");
            build_cow(&dir.join(&cow), v, &back);
            // v1/v2 bitmaps are one byte short when the sector count is
            // not a multiple of 8: keep the writes inside the bitmap.
            let l =
                cow_format::header::layout(v, size, 512, if i < 2 { 512 } else { 4096 }).unwrap();
            let last = (size / 512 - 1).min(l.bitmap_len * 8 - 1);
            let runs = [(0, 3), (100, 200), (4000, 8), (last - 2, 2)];
            guest_write(&dir.join(&cow), &runs, 99 + i as u64, false);
            // Zeroed sectors over non-zero backing data (first data region).
            guest_write(&dir.join(&cow), &[(16, 8)], 0, true);
            let broken = run(Command::new("uml_moo")
                .current_dir(dir)
                .args([&cow, "c.img"]));
            if v == Version::V3Broken {
                assert!(stdout(&broken).contains("broken V3 file with 64-bit layout"));
                let o = run(Command::new(multicall(dir, "uml_moo"))
                    .current_dir(dir)
                    .args([&cow, "m.img"]));
                assert_eq!(stdout(&o), stdout(&broken));
            }
            merge_three_ways(dir, &cow);
        }
        std::fs::remove_file(&back).unwrap();
    }
}

#[test]
fn in_place_merge_identical_to_uml_moo_d() {
    let d = testkit::short_tempdir("cowd");
    let dir = d.path();
    let size = 16u64 << 20;
    backing_file(&dir.join("b1.img"), size, MTIME);
    ok(&run(Command::new("uml_mkcow")
        .current_dir(dir)
        .args(["x.cow", "b1.img"])));
    guest_write(
        &dir.join("x.cow"),
        &[(0, 9), (700, 300), (2000, 1), (size / 512 - 1, 1)],
        5,
        false,
    );
    guest_write(&dir.join("x.cow"), &[(20, 16), (5000, 8)], 0, true);
    // Same backing under a second name, same mtime.
    for b in ["b2.img", "b3.img"] {
        std::fs::copy(dir.join("b1.img"), dir.join(b)).unwrap();
        set_mtime(&dir.join(b), MTIME);
    }
    // Multi-call, options in the order uml_moo's usage shows (which the C
    // tool itself rejects).
    ok(&run(Command::new(multicall(dir, "uml_moo"))
        .current_dir(dir)
        .args(["-b", "b3.img", "-d", "x.cow"])));
    ok(&run(Command::new("uml_moo")
        .current_dir(dir)
        .args(["-d", "x.cow"])));
    ok(&run(Command::new(umlkit())
        .current_dir(dir)
        .args(["moo", "-d", "x.cow", "-b", "b2.img"])));
    assert!(same_content(&dir.join("b1.img"), &dir.join("b2.img")));
    assert!(same_content(&dir.join("b1.img"), &dir.join("b3.img")));
    assert!(!dir.join("x.cow.moo-journal").exists());
}

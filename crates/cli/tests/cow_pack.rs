//! pack/unpack without the kernel: several COWs, shared and same-named
//! backing files, long names, GNU tar as the oracle, unsafe archives.

mod cow_common;

use std::process::Command;

use cow_common::*;

const MTIME: i64 = 1_650_000_000;

#[test]
fn several_cows_shared_and_same_named_backings_round_trip() {
    let d = testkit::short_tempdir("cowk");
    let dir = d.path();
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::create_dir_all(dir.join("b")).unwrap();
    backing_file(&dir.join("a/base.img"), 6 << 20, MTIME);
    backing_file(&dir.join("b/base.img"), (3 << 20) + 1536, MTIME + 9);
    let long = format!("{}.cow", "l".repeat(120));
    let cows = [
        ("one.cow", "a/base.img"),
        ("two.cow", "a/base.img"),
        (long.as_str(), "b/base.img"),
    ];
    for (i, (c, b)) in cows.iter().enumerate() {
        ok(&run(Command::new(umlkit())
            .current_dir(dir)
            .args(["mkcow", c, b])));
        guest_write(
            &dir.join(c),
            &[(i as u64 * 10, 50), (3000, 7)],
            i as u64 + 40,
            false,
        );
        // Reference merge of the original pair.
        ok(&run(Command::new("uml_moo")
            .current_dir(dir)
            .arg(c)
            .arg(format!("ref{i}.img"))));
    }
    let mut args = vec!["cow", "pack", "all.tar"];
    args.extend(cows.iter().map(|c| c.0));
    let o = run(Command::new(umlkit()).current_dir(dir).args(&args));
    ok(&o);
    assert_eq!(
        stdout(&o),
        format!("base.img\none.cow\ntwo.cow\n1-base.img\n{long}\n")
    );

    // GNU tar lists every member with its real size.
    let o = run(Command::new("tar")
        .current_dir(dir)
        .args(["tvf", "all.tar"]));
    ok(&o);
    for n in ["base.img", "one.cow", "two.cow", "1-base.img", &long] {
        assert!(stdout(&o).contains(n), "{}", stdout(&o));
    }
    assert!(
        stdout(&o).contains(&format!(" {} ", (3 << 20) + 1536)),
        "{}",
        stdout(&o)
    );

    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "unpack", "all.tar", "new"]));
    ok(&o);
    for (i, (c, _)) in cows.iter().enumerate() {
        let nc = dir.join("new").join(c);
        ok(&run(Command::new(umlkit())
            .arg("cow")
            .arg("check")
            .arg(&nc)));
        let out = dir.join(format!("new{i}.img"));
        ok(&run(Command::new("uml_moo").arg(&nc).arg(&out)));
        assert!(same_content(&out, &dir.join(format!("ref{i}.img"))), "{c}");
    }
    assert_eq!(mtime(&dir.join("new/1-base.img")), MTIME + 9);
    // Unpacking again into the same folder refuses to overwrite.
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "unpack", "all.tar", "new"]));
    assert_ne!(code(&o), 0);
    assert!(
        stderr(&o).contains("base.img") && stderr(&o).contains("exists"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unpack_refuses_nested_or_unsafe_names_and_garbage() {
    let d = testkit::short_tempdir("cowk");
    let dir = d.path();
    std::fs::create_dir_all(dir.join("src/sub")).unwrap();
    std::fs::write(dir.join("src/sub/f"), b"data").unwrap();
    ok(&run(Command::new("tar")
        .current_dir(dir.join("src"))
        .args(["cf", "../nested.tar", "sub/f"])));
    let o =
        run(Command::new(umlkit())
            .current_dir(dir)
            .args(["cow", "unpack", "nested.tar", "out"]));
    assert_ne!(code(&o), 0);
    assert!(
        stderr(&o).contains("nested.tar") && stderr(&o).contains("sub/f"),
        "{}",
        stderr(&o)
    );
    ok(&run(Command::new("tar")
        .current_dir(dir.join("src/sub"))
        .args(["--format=posix", "-cf", "../../pax.tar", "f"])));
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "unpack", "pax.tar", "out2"]));
    assert_ne!(code(&o), 0);
    assert!(
        stderr(&o).contains("pax.tar") && stderr(&o).contains("PAX"),
        "{}",
        stderr(&o)
    );
    std::fs::write(dir.join("junk.tar"), vec![0x41u8; 1024]).unwrap();
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "unpack", "junk.tar", "out"]));
    assert_ne!(code(&o), 0);
    assert!(
        stderr(&o).contains("junk.tar") && stderr(&o).contains("checksum"),
        "{}",
        stderr(&o)
    );
    // A failed unpack leaves nothing: a good member followed by a bad one.
    std::fs::write(dir.join("src/sub/g"), b"more").unwrap();
    std::fs::create_dir(dir.join("src/sub/d")).unwrap();
    std::fs::write(dir.join("src/sub/d/h"), b"nested").unwrap();
    ok(&run(Command::new("tar")
        .current_dir(dir.join("src/sub"))
        .args(["-cf", "../../mixed.tar", "g", "d/h"])));
    let o =
        run(Command::new(umlkit())
            .current_dir(dir)
            .args(["cow", "unpack", "mixed.tar", "out3"]));
    assert_ne!(code(&o), 0);
    assert!(!dir.join("out3").exists(), "partial unpack left behind");
    // A touched backing file cannot be packed (the COW would not validate).
    backing_file(&dir.join("b.img"), 1 << 20, MTIME);
    ok(&run(Command::new(umlkit())
        .current_dir(dir)
        .args(["mkcow", "x.cow", "b.img"])));
    set_mtime(&dir.join("b.img"), MTIME + 1);
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "pack", "p.tar", "x.cow"]));
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("mtime mismatch"), "{}", stderr(&o));
    assert!(!dir.join("p.tar").exists());
}

//! In-place merge (`moo -d`) is crash-safe: kill it mid-way, re-run it, and
//! the backing file ends up exactly as after an uninterrupted merge.

mod cow_common;

use std::process::Command;

use cow_common::*;

const MTIME: i64 = 1_690_000_000;

#[test]
fn interrupted_in_place_merge_resumes_to_the_same_result() {
    let d = testkit::short_tempdir("cowj");
    let dir = d.path();
    let size = 64u64 << 20;
    backing_file(&dir.join("back.img"), size, MTIME);
    ok(&run(Command::new(umlkit())
        .current_dir(dir)
        .args(["mkcow", "x.cow", "back.img"])));
    // Many separate runs, one of them larger than a merge window (1 MiB).
    let mut runs: Vec<(u64, u64)> = (0..40).map(|i| (i * 2500 + 7, 16 + i)).collect();
    runs.push((110_000, 20_000));
    guest_write(&dir.join("x.cow"), &runs, 77, false);
    guest_write(&dir.join("x.cow"), &[(3, 2)], 0, true);
    let cow_before = std::fs::read(dir.join("x.cow")).unwrap();

    // Reference: uml_moo to a new file before anything changes.
    ok(&run(Command::new("uml_moo")
        .current_dir(dir)
        .args(["x.cow", "ref.img"])));

    // Interrupted merge: the process kills itself (SIGKILL) after 5 chunks.
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["moo", "-d", "x.cow"])
        .env("UMLKIT_MOO_KILL_AFTER_CHUNKS", "5"));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9), "expected SIGKILL: {o:?}");
    assert!(
        dir.join("x.cow.moo-journal").exists(),
        "journal missing after the crash"
    );
    assert!(
        !same_content(&dir.join("ref.img"), &dir.join("back.img")),
        "merge was not partial"
    );
    // The backing file changed: the COW no longer validates; check says
    // why and what to do.
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "check", "x.cow"]));
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("was interrupted"), "{}", stderr(&o));
    assert!(stderr(&o).contains("umlkit moo -d x.cow"), "{}", stderr(&o));
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["cow", "info", "x.cow"]));
    ok(&o);
    assert!(stdout(&o).contains("INTERRUPTED MERGE"), "{}", stdout(&o));
    // uml_moo refuses the half-merged pair (mtime changed).
    let o = run(Command::new("uml_moo")
        .current_dir(dir)
        .args(["x.cow", "other.img"]));
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("mtime mismatch"), "{}", stderr(&o));

    // Resume.
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["moo", "-d", "x.cow"]));
    ok(&o);
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    assert!(!dir.join("x.cow.moo-journal").exists());
    assert!(same_content(&dir.join("ref.img"), &dir.join("back.img")));
    assert!(
        std::fs::read(dir.join("x.cow")).unwrap() == cow_before,
        "COW file was modified"
    );

    // Without a journal, a second -d is refused (backing changed).
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["moo", "-d", "x.cow"]));
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("mtime mismatch"));
}

#[test]
fn journal_for_another_backing_is_refused() {
    let d = testkit::short_tempdir("cowj");
    let dir = d.path();
    backing_file(&dir.join("back.img"), 4 << 20, MTIME);
    ok(&run(Command::new(umlkit())
        .current_dir(dir)
        .args(["mkcow", "x.cow", "back.img"])));
    guest_write(&dir.join("x.cow"), &[(0, 100)], 1, false);
    std::fs::write(
        dir.join("x.cow.moo-journal"),
        "umlkit moo -d journal 1\nbacking=2f6f74686572\nsize=1\nmtime=2\n",
    )
    .unwrap();
    let before = std::fs::read(dir.join("back.img")).unwrap();
    let o = run(Command::new(umlkit())
        .current_dir(dir)
        .args(["moo", "-d", "x.cow"]));
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("x.cow.moo-journal"), "{}", stderr(&o));
    assert!(stderr(&o).contains("\"/other\""), "{}", stderr(&o));
    assert!(std::fs::read(dir.join("back.img")).unwrap() == before);
}

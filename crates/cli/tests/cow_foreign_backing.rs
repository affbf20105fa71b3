//! Issue 8 item 9: `moo -d` overwrote whatever backing file a COW header
//! names, even one the invoking user does not own. uml_moo (the C tool,
//! run here as the oracle) still does; umlkit refuses unless `-b` names the
//! file explicitly.

mod cow_common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use cow_common::*;
use cow_format::header::Version;

const OTHER: &str = "umlkit-sw-other";

fn other_uid() -> Option<u32> {
    testkit::other_user(OTHER)
}

/// A backing file owned by `uid` and a COW over it with 8 sectors written.
fn pair(dir: &Path, name: &str, uid: u32) -> (std::path::PathBuf, std::path::PathBuf) {
    let backing = dir.join(format!("{name}.img"));
    let cow = dir.join(format!("{name}.cow"));
    backing_file(&backing, 1 << 20, 1_600_000_000);
    std::os::unix::fs::chown(&backing, Some(uid), None).unwrap();
    build_cow(&cow, Version::V3, &backing);
    guest_write(&cow, &[(0, 8)], 7, false);
    (backing, cow)
}

fn first_sectors(p: &Path) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    std::fs::File::open(p)
        .unwrap()
        .read_exact_at(&mut b, 0)
        .unwrap();
    b
}

#[test]
fn moo_d_refuses_a_backing_file_of_another_user_unless_named_with_b() {
    let Some(uid) = other_uid() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let merged = noise(7, 4096);

    // the C tool merges into the other user's file without a word
    if let Some(c) = testkit::which("uml_moo") {
        let (b, cow) = pair(tmp.path(), "c", uid);
        ok(&run(Command::new(c).arg("-d").arg(&cow)));
        assert_eq!(first_sectors(&b), merged);
    }

    let (backing, cow) = pair(tmp.path(), "ours", uid);
    let before = std::fs::read(&backing).unwrap();
    let o = run(Command::new(umlkit()).args(["moo", "-d"]).arg(&cow));
    assert_ne!(code(&o), 0);
    let err = stderr(&o);
    assert!(err.contains(&backing.display().to_string()), "{err}");
    assert!(err.contains(&format!("belongs to uid {uid}")), "{err}");
    assert!(err.contains("-b"), "{err}");
    assert_eq!(
        std::fs::read(&backing).unwrap(),
        before,
        "backing untouched"
    );
    assert!(!cow::moo::journal_path(&cow).exists(), "no journal left");

    // the uml_moo drop-in refuses as well (exit 1, as uml_moo's errors)
    let m = multicall(tmp.path(), "uml_moo");
    let o = run(Command::new(&m).arg("-d").arg(&cow));
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("belongs to uid"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&backing).unwrap(), before);

    // named explicitly, it is merged
    ok(&run(Command::new(umlkit())
        .args(["moo", "-b"])
        .arg(&backing)
        .arg("-d")
        .arg(&cow)));
    assert_eq!(first_sectors(&backing), merged);

    // the user's own backing file needs no -b
    let (own, owncow) = pair(tmp.path(), "own", 0);
    ok(&run(Command::new(umlkit())
        .args(["moo", "-d"])
        .arg(&owncow)));
    assert_eq!(first_sectors(&own), merged);
}

//! The lab disk (issue 8.7): the lab folder as a private ext4 image built
//! with `mkfs.ext4 -d`; read back with `debugfs` (e2fsprogs), no mounts.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn debugfs(img: &Path, req: &str) -> String {
    let o = Command::new("debugfs")
        .arg("-R")
        .arg(req)
        .arg(img)
        .output()
        .expect("debugfs (e2fsprogs) runs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A link `pc1/etc/leak -> SECRET` (a host file) must go onto the disk as a
/// link, never as the secret's content.
#[test]
fn lab_disk_copies_symlinks_as_links_never_their_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "host-secret-content\n").unwrap();
    let lab = tmp.path().join("lab");
    std::fs::create_dir_all(lab.join("pc1/etc")).unwrap();
    std::fs::write(lab.join("lab.conf"), "pc1[0]=A\n").unwrap();
    std::fs::write(lab.join("pc1/etc/motd"), "hello\n").unwrap();
    std::os::unix::fs::symlink(&secret, lab.join("pc1/etc/leak")).unwrap();
    let img = tmp.path().join("state/hostlab.img");
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    let st = lab::confine::build_lab_disk(&lab, &img).unwrap();
    assert_eq!(st.entries, 5);
    let mode = std::fs::metadata(&img).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "lab disk mode {mode:o}");
    assert_eq!(debugfs(&img, "cat /pc1/etc/motd"), "hello\n");
    let stat = debugfs(&img, "stat /pc1/etc/leak");
    assert!(stat.contains("Type: symlink"), "{stat}");
    assert!(
        stat.contains(&format!("Fast link dest: \"{}\"", secret.display())),
        "{stat}"
    );
    assert!(!debugfs(&img, "cat /pc1/etc/leak").contains("host-secret"));
    // Rebuilt in place (lab start again) with the new content.
    std::fs::write(lab.join("pc1/etc/motd"), "again\n").unwrap();
    lab::confine::build_lab_disk(&lab, &img).unwrap();
    assert_eq!(debugfs(&img, "cat /pc1/etc/motd"), "again\n");
}

/// Fifos (and sockets, device nodes) have no place on the lab disk: refused
/// with the path named, nothing written.
#[test]
fn lab_disk_refuses_fifos() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = tmp.path().join("lab");
    std::fs::create_dir_all(lab.join("pc1")).unwrap();
    let fifo = lab.join("pc1/pipe");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success());
    let img = tmp.path().join("hostlab.img");
    let e = lab::confine::build_lab_disk(&lab, &img)
        .unwrap_err()
        .to_string();
    assert!(e.contains("pc1/pipe") && e.contains("fifo"), "{e}");
    assert!(!img.exists());
}

/// Enough inodes for a folder of many small files (the default would be
/// one inode per 4 KiB of a small image: about 6,000 here).
#[test]
fn lab_disk_has_an_inode_per_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = tmp.path().join("lab");
    let d = lab.join("pc1/many");
    std::fs::create_dir_all(&d).unwrap();
    for i in 0..8_000 {
        std::fs::write(d.join(i.to_string()), b"").unwrap();
    }
    let img = tmp.path().join("hostlab.img");
    lab::confine::build_lab_disk(&lab, &img).unwrap();
    let ls = debugfs(&img, "ls -p /pc1/many");
    assert_eq!(ls.lines().filter(|l| !l.is_empty()).count(), 8_002);
}

/// A state root inside the lab folder would copy the disk (and the guests'
/// COWs) onto itself: refused with a clear error.
#[test]
fn lab_disk_refuses_a_state_folder_inside_the_lab() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = tmp.path().join("lab");
    std::fs::create_dir_all(lab.join("st")).unwrap();
    let lab = lab.canonicalize().unwrap();
    let e = lab::confine::build_lab_disk(&lab, &lab.join("st/hostlab.img"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--state-root"), "{e}");
}

//! Corrupt archives never panic `unpack` (nor make it allocate wildly):
//! header fields are mutated and the checksum fixed so the parser goes deep.

use std::os::unix::fs::FileExt;

use proptest::prelude::*;

fn valid_archive(dir: &std::path::Path) -> Vec<u8> {
    let b = dir.join("b.img");
    let f = std::fs::File::create(&b).unwrap();
    f.set_len(1 << 20).unwrap();
    f.write_all_at(&[7u8; 8192], 65536).unwrap();
    drop(f);
    let c = dir.join("x.cow");
    cow::mkcow(&c, &b, &cow::MkcowOptions::default()).unwrap();
    let t = dir.join("a.tar");
    cow::tar::pack(&t, &[c]).unwrap();
    std::fs::read(&t).unwrap()
}

fn fix_checksum(h: &mut [u8]) {
    let sum: u64 = h[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn mutated_headers_never_panic(muts in proptest::collection::vec((0usize..512, any::<u8>()), 1..12),
                                   which in 0usize..2) {
        let d = tempfile::Builder::new().prefix("cowtar").tempdir_in("/tmp").unwrap();
        let mut a = valid_archive(d.path());
        // Header block of the first member, or of the second one.
        let start = if which == 0 { 0 } else {
            // find the second header: scan for the "x.cow" name at a block start
            (0..a.len() / 512).map(|i| i * 512).find(|&o| a[o..].starts_with(b"x.cow\0")).unwrap()
        };
        for (off, v) in muts {
            a[start + off] = v;
        }
        fix_checksum(&mut a[start..start + 512]);
        let t = d.path().join("m.tar");
        std::fs::write(&t, &a).unwrap();
        let _ = cow::tar::unpack(&t, &d.path().join("out"));
    }
}

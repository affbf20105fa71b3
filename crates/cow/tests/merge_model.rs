//! Property test: the fast merge (extents + runs + windows + zero-block
//! skipping) equals a sector-by-sector model of uml_moo, for random sizes,
//! bitmaps and data, in both modes.

use std::os::unix::fs::FileExt;
use std::path::Path;

use cow_format::CowHeader;
use proptest::prelude::*;

/// uml_moo's algorithm, one sector at a time, in memory.
fn model(backing: &[u8], bitmap: &[u8], cow_data: &[u8]) -> Vec<u8> {
    let n = backing.len() / 512;
    let mut out = vec![0u8; n * 512];
    for i in 0..n {
        let src = if cow_format::bit_is_set(bitmap, i as u64) {
            &cow_data[i * 512..i * 512 + 512]
        } else {
            &backing[i * 512..i * 512 + 512]
        };
        out[i * 512..i * 512 + 512].copy_from_slice(src);
    }
    out
}

fn sector_content(seed: u8, kind: u8) -> Vec<u8> {
    match kind % 3 {
        0 => vec![0u8; 512],
        1 => vec![seed | 1; 512],
        _ => (0..512).map(|i| (i as u8).wrapping_mul(seed | 1)).collect(),
    }
}

fn write_case(
    dir: &Path,
    size: usize,
    back_runs: &[(usize, usize, u8)],
    cow_runs: &[(usize, usize, u8)],
) -> (Vec<u8>, Vec<u8>) {
    let bpath = dir.join("b.img");
    let bf = std::fs::File::create(&bpath).unwrap();
    bf.set_len(size as u64).unwrap();
    let mut backing = vec![0u8; size];
    let sectors = size / 512;
    for &(s, c, k) in back_runs {
        for i in s.min(sectors)..(s + c).min(sectors) {
            let d = sector_content(i as u8, k);
            backing[i * 512..i * 512 + 512].copy_from_slice(&d);
            bf.write_all_at(&d, (i * 512) as u64).unwrap();
        }
    }
    drop(bf);
    let cpath = dir.join("x.cow");
    cow::mkcow(&cpath, &bpath, &cow::MkcowOptions::default()).unwrap();
    let h = CowHeader::parse(&std::fs::read(&cpath).unwrap()[..4128]).unwrap();
    let l = h.layout().unwrap();
    let cf = std::fs::File::options().write(true).open(&cpath).unwrap();
    let mut bm = vec![0u8; l.bitmap_len as usize];
    let mut data = vec![0u8; (l.sectors * 512) as usize];
    for &(s, c, k) in cow_runs {
        for i in s.min(sectors)..(s + c).min(sectors) {
            let d = sector_content(i as u8 ^ 0x5a, k.wrapping_add(1));
            data[i * 512..i * 512 + 512].copy_from_slice(&d);
            cf.write_all_at(&d, l.data_offset + (i * 512) as u64)
                .unwrap();
            cow_format::set_bit(&mut bm, i as u64);
        }
    }
    cf.write_all_at(&bm, l.bitmap_offset).unwrap();
    (model(&backing, &bm, &data), backing)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn fast_merge_equals_sector_model(
        size_sectors in 1usize..6000,
        tail in 0usize..512,
        back_runs in proptest::collection::vec((0usize..6000, 1usize..3000, any::<u8>()), 0..6),
        cow_runs in proptest::collection::vec((0usize..6000, 1usize..2500, any::<u8>()), 0..8),
    ) {
        let d = tempfile::Builder::new().prefix("cowmodel").tempdir_in("/tmp").unwrap();
        let size = size_sectors * 512 + tail;
        let (expected, _) = write_case(d.path(), size, &back_runs, &cow_runs);
        let out = d.path().join("out.img");
        cow::moo_new(&d.path().join("x.cow"), &out, &cow::MooOptions::default()).unwrap();
        let got = std::fs::read(&out).unwrap();
        prop_assert_eq!(got.len(), expected.len());
        prop_assert!(got == expected, "new-file merge differs");
        if tail == 0 {
            cow::moo_in_place(&d.path().join("x.cow"), &cow::MooOptions::default()).unwrap();
            let got = std::fs::read(d.path().join("b.img")).unwrap();
            prop_assert!(got == expected, "in-place merge differs");
        }
    }
}

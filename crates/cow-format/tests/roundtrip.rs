//! Property tests: header round trips and "arbitrary bytes never panic".

use cow_format::header::{layout, Version};
use cow_format::{CowHeader, MAX_HEADER_LEN};
use proptest::prelude::*;

fn path() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 1..300)
}

proptest! {
    #[test]
    fn v3_round_trip(p in path(), mtime in any::<u32>(), size in 0u64..(1 << 50)) {
        let h = CowHeader::new_v3(&p, mtime, size).unwrap();
        let bytes = h.to_v3_bytes().unwrap();
        prop_assert_eq!(bytes.len(), 4128);
        let back = CowHeader::parse(&bytes).unwrap();
        prop_assert_eq!(back, h);
    }

    #[test]
    fn every_version_round_trips(p in proptest::collection::vec(1u8..=255, 1..255),
                                 mtime in any::<u32>(), size in 0u64..(1 << 40),
                                 v in 0usize..4) {
        let version = [Version::V1, Version::V2, Version::V3, Version::V3Broken][v];
        let alignment = if matches!(version, Version::V1 | Version::V2) { 512 } else { 4096 };
        let h = CowHeader { version, backing_file: p, mtime, size, sector_size: 512, alignment, cow_format: 0 };
        let bytes = h.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), version.header_len());
        prop_assert_eq!(CowHeader::parse(&bytes).unwrap(), h);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..MAX_HEADER_LEN + 8)) {
        let _ = CowHeader::parse(&bytes);
    }

    #[test]
    fn magic_prefixed_garbage_never_panics(ver in 0u8..5, rest in proptest::collection::vec(any::<u8>(), 0..MAX_HEADER_LEN)) {
        let mut bytes = vec![0x4f, 0x4f, 0x4f, 0x4d, 0, 0, 0, ver];
        bytes.extend_from_slice(&rest);
        if let Ok(h) = CowHeader::parse(&bytes) {
            let l = h.layout().unwrap();
            prop_assert!(l.data_offset >= l.bitmap_offset + l.bitmap_len);
        }
    }

    #[test]
    fn layout_invariants(size in 0u64..(1 << 48), v in 0usize..4) {
        let version = [Version::V1, Version::V2, Version::V3, Version::V3Broken][v];
        let l = layout(version, size, 512, 4096).unwrap();
        prop_assert!(l.bitmap_offset >= version.header_len() as u64);
        prop_assert!(l.data_offset >= l.bitmap_offset + l.bitmap_len);
        if matches!(version, Version::V3 | Version::V3Broken) {
            prop_assert!(l.bitmap_len * 8 >= l.sectors);
            prop_assert_eq!(l.data_offset % 4096, 0);
        }
    }
}

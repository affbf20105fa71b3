//! Fuzz the COW header parser: any bytes must parse or fail cleanly, and a
//! parsed header must re-serialize and re-parse to itself.
#![no_main]

use cow_format::{CowHeader, SetRuns};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = CowHeader::parse(data) {
        let l = h.layout().expect("parsed header has a layout");
        assert!(l.data_offset >= l.bitmap_offset + l.bitmap_len);
        if let Ok(bytes) = h.to_bytes() {
            assert_eq!(CowHeader::parse(&bytes).expect("re-parse"), h);
        }
        let tail = &data[h.version.header_len()..];
        let n: u64 = SetRuns::new(tail, l.sectors).map(|(_, c)| c).sum();
        assert!(n <= l.sectors);
    }
});

//! Ethernet frame views and 802.1Q tag insert/strip: never panic, and
//! inserting then stripping a tag gives the frame back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use net_proto::eth::{insert_tag, strip_tag, Frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Frame::new_checked(data) {
        let _ = (f.dst(), f.src(), f.ethertype(), f.vlan());
        let mut t = vec![0u8; data.len() + 4];
        let n = insert_tag(data, 42, &mut t);
        let mut back = vec![0u8; n];
        let m = strip_tag(&t[..n], &mut back);
        assert_eq!(&back[..m], data);
    }
});

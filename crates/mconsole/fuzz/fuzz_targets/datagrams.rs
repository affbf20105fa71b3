//! mconsole request, reply and notify datagrams: never panic; what decodes
//! re-encodes to a datagram that decodes to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mconsole::proto::{Notify, Reply, Request};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        assert_eq!(Request::decode(&r.encode()).expect("re-decode"), r);
    }
    if let Ok(r) = Reply::decode(data) {
        assert_eq!(Reply::decode(&r.encode()).expect("re-decode"), r);
    }
    if let Ok(n) = Notify::decode(data) {
        assert_eq!(Notify::decode(&n.encode()).expect("re-decode"), n);
    }
    let _ = mconsole::proto::is_version0_reply(data);
});

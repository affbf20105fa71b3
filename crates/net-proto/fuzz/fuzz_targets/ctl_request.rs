//! Control requests (uml_switch and VDE dialects): never panic; what
//! parses as V3 re-serializes to bytes that parse to the same request.
#![no_main]
use libfuzzer_sys::fuzz_target;
use net_proto::ctl::{parse_request, Dialect, Request};

fuzz_target!(|data: &[u8]| {
    for d in [Dialect::UmlSwitch, Dialect::Vde] {
        if let Ok(req) = parse_request(data, d) {
            if let Request::V3 { .. } = req {
                let again = parse_request(&req.to_bytes(), d).expect("re-parse");
                assert_eq!(again, req);
            }
        }
    }
});

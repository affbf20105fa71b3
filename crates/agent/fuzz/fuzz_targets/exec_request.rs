//! Exec request payloads: never panic; what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use umlkit_agent::ExecRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = ExecRequest::decode(data) {
        let again = ExecRequest::decode(&r.encode()).expect("re-decode");
        assert_eq!(again, r);
    }
});

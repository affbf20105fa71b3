//! Link impairment specs: never panic; what parses writes back (Display)
//! to text that parses to the same spec.
#![no_main]
use libfuzzer_sys::fuzz_target;
use net_proto::link::LinkSpec;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(spec) = LinkSpec::parse(s) {
            let text = spec.to_string();
            assert_eq!(LinkSpec::parse(&text), Ok(spec), "{text}");
        }
    }
});

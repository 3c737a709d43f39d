//! `Config::decode` on arbitrary bytes: never panics; what it accepts
//! re-encodes to a config that decodes to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use snap::format::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Config::decode(data) {
        let again = Config::decode(&c.encode()).expect("re-encoded config decodes");
        assert_eq!(c, again);
    }
});

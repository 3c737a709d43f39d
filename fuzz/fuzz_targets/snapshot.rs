//! `Snapshot::decode` on arbitrary plaintext: never panics; what it accepts
//! re-encodes to JSON that decodes again, and `time_ms` never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use snap::format::snapshot::Snapshot;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Snapshot::decode(data) {
        let _ = s.time_ms();
        let again = Snapshot::decode(&s.encode()).expect("re-encoded snapshot decodes");
        assert_eq!(again.tree, s.tree);
        assert_eq!(again.paths, s.paths);
    }
});

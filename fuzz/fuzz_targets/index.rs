//! `IndexFile::decode` on arbitrary plaintext: never panics, and what it
//! accepts re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use snap::format::index::IndexFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(idx) = IndexFile::decode(data) {
        assert_eq!(idx.encode(), data);
    }
});

//! `Tree::decode` on arbitrary plaintext: never panics; what it accepts is
//! sorted, has valid names and re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use snap::format::tree::Tree;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tree::decode(data) {
        for w in t.entries.windows(2) {
            assert!(w[0].name < w[1].name);
        }
        for e in &t.entries {
            assert!(!e.name.is_empty() && !e.name.contains(&b'/') && !e.name.contains(&0));
            assert!(t.get(&e.name).is_some());
        }
        assert_eq!(t.encode(), data);
    }
});

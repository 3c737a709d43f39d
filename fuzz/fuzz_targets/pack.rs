//! Pack parsing: `split_pack` + opening the sealed header + `PackHeader::decode`.
//!
//! Input: byte 0 selects the mode.
//! - even: the rest is a whole pack, read as `Repository` does (split, open
//!   the header under the fixed fuzz key, decode against the blob area size);
//! - odd: bytes 1..9 are the blob area length (u64 LE) and the rest is a
//!   header plaintext, decoded directly (sealed headers rarely survive a
//!   mutation, so this reaches the decoder's checks).
#![no_main]
use libfuzzer_sys::fuzz_target;
use snap::crypto::{MasterKey, AAD_PACK_HEADER};
use snap::format::pack::{split_pack, PackHeader};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let key = MasterKey::from_bytes(&[7u8; 96]).expect("96-byte key");
        let Ok((data_len, sealed)) = split_pack(rest) else {
            return;
        };
        assert!(data_len + sealed.len() + 4 == rest.len());
        if let Ok(plain) = key.open(AAD_PACK_HEADER, sealed, "pack header") {
            if let Ok(h) = PackHeader::decode(&plain, data_len as u64) {
                check(&h, &plain, data_len as u64);
            }
        }
    } else if rest.len() >= 8 {
        let data_len = u64::from_le_bytes(rest[..8].try_into().unwrap());
        let plain = &rest[8..];
        if let Ok(h) = PackHeader::decode(plain, data_len) {
            check(&h, plain, data_len);
        }
    }
});

/// An accepted header covers the blob area exactly and re-encodes to itself.
fn check(h: &PackHeader, plain: &[u8], data_len: u64) {
    let mut next = 0u64;
    for e in &h.entries {
        assert_eq!(e.offset as u64, next);
        next += e.length as u64;
    }
    assert_eq!(next, data_len);
    assert_eq!(h.encode(), plain);
}

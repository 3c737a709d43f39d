//! Blob reading as `Repository::decode_blob` does it: open the envelope under
//! the fixed fuzz key, `compress::decode` (or `decode_delta` against a fixed
//! base for delta payloads) to the expected length, compare the keyed id.
//!
//! Input: `flags u8 || raw_len u32 LE || id [32] || body`.
//! - flags bit 0: blob kind (0 data, 1 tree);
//! - flags bit 1 clear: `body` is a sealed envelope (the seeds are valid ones);
//! - flags bit 1 set: `body` is an encoded payload (compression byte + data),
//!   sealed here first, so that `compress::decode` sees arbitrary payloads
//!   behind a valid tag.
//!
//! `raw_len` is masked to 27 bits (up to 128 MiB), so the 64 MiB bound is
//! exercised too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use snap::write::compress;
use snap::crypto::MasterKey;
use snap::format::{BlobId, BlobKind};

fuzz_target!(|data: &[u8]| {
    if data.len() < 37 {
        return;
    }
    let key = MasterKey::from_bytes(&[7u8; 96]).expect("96-byte key");
    let flags = data[0];
    let raw_len = (u32::from_le_bytes(data[1..5].try_into().unwrap()) & ((1 << 27) - 1)) as usize;
    let id = BlobId::from_slice(&data[5..37]).unwrap();
    let body = &data[37..];
    let kind = if flags & 1 == 0 {
        BlobKind::Data
    } else {
        BlobKind::Tree
    };
    let sealed;
    let envelope = if flags & 2 == 0 {
        body
    } else {
        sealed = key.seal_blob(kind, &id, body);
        &sealed[..]
    };
    let Ok(encoded) = key.open_blob(kind, &id, envelope) else {
        return;
    };
    // A delta payload (compression byte 2) is decoded against a fixed base,
    // as `decode_blob` does with the base it reads.
    if compress::delta_base(&encoded).is_some() {
        let base = b"fuzz base: COPY public.lines (id, path, text) FROM stdin;\n1\tone\n";
        if let Ok(plain) = compress::decode_delta(&encoded, base, raw_len, 64 << 20) {
            assert_eq!(plain.len(), raw_len);
        }
    }
    if let Ok(plain) = compress::decode(&encoded, raw_len) {
        assert_eq!(plain.len(), raw_len);
        // A mismatching id is reported, never accepted.
        let _ = key.blob_id(&plain) == id;
    }
});

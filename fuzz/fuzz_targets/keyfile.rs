//! `KeyFile::decode` then `unwrap_master_key` on arbitrary bytes.
//!
//! `KeyFile::decode` bounds the Argon2id parameters (m <= 4 GiB, t <= 100,
//! p <= 64), which is safe but far too slow for fuzzing, so the target clamps
//! them to m <= 256 KiB, t <= 2, p <= 4 before deriving; the seeds use
//! m = 64 KiB, t = 1, p = 1, so they still unlock with the seed password.
#![no_main]
use libfuzzer_sys::fuzz_target;
use snap::crypto::unwrap_master_key;
use snap::format::keyfile::KeyFile;

/// Password of the seed key files (fuzz/corpus/keyfile).
const PASSWORD: &[u8] = b"fuzz password";

fuzz_target!(|data: &[u8]| {
    let Ok(mut kf) = KeyFile::decode(data) else {
        return;
    };
    kf.kdf.m_cost_kib = kf.kdf.m_cost_kib.min(256);
    kf.kdf.t_cost = kf.kdf.t_cost.min(2);
    kf.kdf.p_cost = kf.kdf.p_cost.min(4);
    // Ok(Some) for a seed, Ok(None) for a wrong password, Err for a malformed
    // key file: all fine, as long as nothing panics.
    let _ = unwrap_master_key(&kf, PASSWORD);
});

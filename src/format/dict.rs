//! The dictionary object (format-spec §12.1): a zstd dictionary that stream
//! chunks of the repository are compressed with.
//!
//! Stored sealed under `dicts/<id>` (AAD `snap/dict/v1`), its name the
//! BLAKE3 hash of the sealed bytes like index and snapshot objects; the
//! plaintext is one zstd dictionary in the format of RFC 8878 §5 (magic
//! `37 A4 30 EC`, dictionary id, entropy tables, content). Blobs compressed
//! with it carry compression byte 3 and the object's id (format-spec §12).

use super::DecodeError;

/// Largest dictionary plaintext accepted when reading, bytes (1 MiB); the
/// sealed object may be [`crate::crypto::ENVELOPE_OVERHEAD`] bytes larger.
pub const MAX_DICT_SIZE: usize = 1 << 20;

/// Dictionary size a writer trains, bytes (112 KiB, zstd's own default for
/// `zstd --train`).
pub const TRAIN_DICT_SIZE: usize = 112 << 10;

/// Magic number that opens a zstd dictionary (0xEC30A437, little-endian;
/// RFC 8878 §5).
pub const MAGIC: [u8; 4] = [0x37, 0xA4, 0x30, 0xEC];

/// The zstd dictionary id of a checked dictionary plaintext (bytes 4..8,
/// u32 LE; 0 if too short). snap writers set it to the MiB of stream the
/// dictionary was trained on, and use the dictionary with the highest.
pub fn generation(plain: &[u8]) -> u32 {
    match plain.get(4..8) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// Checks the shape of a dictionary plaintext: at most [`MAX_DICT_SIZE`]
/// bytes, the zstd dictionary magic, a non-zero dictionary id (RFC 8878 §5
/// reserves 0). zstd itself validates the entropy tables when the
/// dictionary is loaded.
pub fn check(plain: &[u8]) -> Result<(), DecodeError> {
    let err = |offset, detail: String| DecodeError {
        what: "dictionary",
        offset,
        detail,
    };
    if plain.len() > MAX_DICT_SIZE {
        return Err(err(
            0,
            format!("{} bytes, more than the 1 MiB limit", plain.len()),
        ));
    }
    if plain.len() < 8 {
        return Err(err(
            plain.len(),
            "shorter than a zstd dictionary header".into(),
        ));
    }
    if plain[..4] != MAGIC {
        return Err(err(0, "no zstd dictionary magic".into()));
    }
    if plain[4..8] == [0, 0, 0, 0] {
        return Err(err(4, "zstd dictionary id 0 is reserved".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_bounds_and_magic() {
        let mut d = MAGIC.to_vec();
        d.extend_from_slice(&[1, 0, 0, 0]);
        assert!(check(&d).is_ok());
        assert_eq!(generation(&d), 1);
        assert!(check(&d[..7]).is_err());
        assert!(check(b"\0\0\0\0\x01\0\0\0").is_err());
        let mut zero = MAGIC.to_vec();
        zero.extend_from_slice(&[0; 4]);
        assert!(check(&zero).is_err());
        d.resize(MAX_DICT_SIZE + 1, 0);
        let e = check(&d).unwrap_err();
        assert!(e.to_string().contains("1 MiB limit"), "{e}");
    }
}

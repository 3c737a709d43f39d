//! Key files `keys/<id>` (format-spec §11): plaintext JSON holding the
//! master key sealed under a key derived from a password with Argon2id.

use serde::{Deserialize, Serialize};

/// Argon2id parameters and salt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kdf {
    /// Always "argon2id".
    pub algorithm: String,
    /// Memory cost, KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
    /// 32 random bytes, hex.
    pub salt: String,
}

/// A key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Key file format version (1).
    pub version: u32,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// Host that created the key.
    pub hostname: String,
    /// User that created the key.
    pub username: String,
    /// Password KDF.
    pub kdf: Kdf,
    /// Sealed envelope (§4) of the 96-byte master key, hex.
    pub sealed_master: String,
}

impl KeyFile {
    /// JSON bytes (pretty, trailing newline).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses and bounds the KDF parameters (m ≤ 4 GiB, t ≤ 100, p ≤ 64) so a
    /// hostile key file cannot make the client allocate without bound.
    pub fn decode(buf: &[u8]) -> Result<KeyFile, super::DecodeError> {
        let err = |detail: String| super::DecodeError {
            what: "key file",
            offset: 0,
            detail,
        };
        let k: KeyFile = serde_json::from_slice(buf).map_err(|e| err(e.to_string()))?;
        if k.version != 1 || k.kdf.algorithm != "argon2id" {
            return Err(err("unsupported key file version or kdf".into()));
        }
        if k.kdf.m_cost_kib < 8
            || k.kdf.m_cost_kib > 4 << 20
            || !(1..=100).contains(&k.kdf.t_cost)
            || !(1..=64).contains(&k.kdf.p_cost)
        {
            return Err(err("kdf parameters out of range".into()));
        }
        Ok(k)
    }
}

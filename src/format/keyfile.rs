//! Key files `keys/<id>` (format-spec §5): plaintext JSON holding the
//! master key sealed under a key derived from a password with Argon2id.

use serde::{Deserialize, Serialize};

/// Length of the Argon2id salt, bytes.
pub const SALT_LEN: usize = 32;

/// Length of the sealed master key: nonce 24 + master key 96 + tag 16, bytes.
pub const SEALED_MASTER_LEN: usize = 24 + 96 + 16;

/// Length of a sealed put key: nonce 24 + put key 128 + tag 16, bytes
/// (format-spec §5.1).
pub const SEALED_PUT_KEY_LEN: usize = 24 + 128 + 16;

/// The `role` of a put-only key file (format-spec §5.1).
pub const ROLE_PUT_ONLY: &str = "put-only";

/// Largest accepted Argon2 memory cost, KiB (256 MiB; writers use 64 MiB).
pub const MAX_M_COST_KIB: u32 = 256 << 10;
/// Largest accepted Argon2 pass count (writers use 3).
pub const MAX_T_COST: u32 = 10;
/// Largest accepted Argon2 lane count (writers use 1).
pub const MAX_P_COST: u32 = 16;
/// Largest accepted `m_cost_kib × t_cost` (1 GiB·pass, about five times the
/// writers' 64 MiB × 3): bounds the time one forged key file can cost.
pub const MAX_KDF_WORK: u64 = 1 << 20;

fn is_hex_of_len(s: &str, bytes: usize) -> bool {
    s.len() == 2 * bytes && s.bytes().all(|c| c.is_ascii_hexdigit())
}

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
    /// `None` (absent): a full key file wrapping the master key;
    /// `"put-only"`: a put-only key file wrapping a put key (format-spec §5.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Password KDF.
    pub kdf: Kdf,
    /// Sealed envelope (§11) of the 96-byte master key (full) or of the
    /// 128-byte put key (put-only), hex.
    pub sealed_master: String,
}

impl KeyFile {
    /// Whether this is a put-only key file (`role` = `put-only`).
    pub fn is_put_only(&self) -> bool {
        self.role.as_deref() == Some(ROLE_PUT_ONLY)
    }

    /// JSON bytes (pretty, trailing newline).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses and bounds the KDF parameters (8·p ≤ m ≤ 256 MiB,
    /// 1 ≤ t ≤ 10, 1 ≤ p ≤ 16, m·t ≤ 1 GiB) so a hostile key file cannot
    /// make the client allocate or compute without bound; checks the salt (32 bytes) and `sealed_master`
    /// (136 bytes) are hex of the right length (format-spec §5).
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
        let (m, t, p) = (k.kdf.m_cost_kib, k.kdf.t_cost, k.kdf.p_cost);
        if !(8..=MAX_M_COST_KIB).contains(&m)
            || !(1..=MAX_T_COST).contains(&t)
            || !(1..=MAX_P_COST).contains(&p)
            || m < 8 * p
            || m as u64 * t as u64 > MAX_KDF_WORK
        {
            return Err(err(format!(
                "kdf parameters m_cost_kib {m}, t_cost {t}, p_cost {p} are outside the accepted bounds (m <= 256 MiB, t <= 10, p <= 16, m*t <= 1 GiB)"
            )));
        }
        // Checked here so that a malformed key file is skipped like any other
        // undecodable one instead of failing key derivation later.
        if !is_hex_of_len(&k.kdf.salt, SALT_LEN) {
            return Err(err(format!("salt is not {SALT_LEN} bytes of hex")));
        }
        let want = match k.role.as_deref() {
            None => SEALED_MASTER_LEN,
            Some(ROLE_PUT_ONLY) => SEALED_PUT_KEY_LEN,
            Some(r) => return Err(err(format!("unknown key file role {r:?}"))),
        };
        if !is_hex_of_len(&k.sealed_master, want) {
            return Err(err(format!("sealed_master is not {want} bytes of hex")));
        }
        Ok(k)
    }
}

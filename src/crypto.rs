//! Keys, keyed ids and the sealed envelope (format-spec §3, §5, §11).
//!
//! Envelope: `nonce[24] || ciphertext || tag[16]`, XChaCha20-Poly1305 under the
//! master encryption key with a random 192-bit nonce and associated data that
//! binds the envelope to its role (a blob's kind and id, or a fixed label).

use crate::error::{Error, ErrorKind, Result};
use crate::format::keyfile::{Kdf, KeyFile};
use crate::format::{BlobId, BlobKind};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Nonce length of the envelope, bytes.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length, bytes.
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext.
pub const ENVELOPE_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Associated data of a sealed pack header.
pub const AAD_PACK_HEADER: &[u8] = b"snap/pack-header/v1";
/// Associated data of a sealed index object.
pub const AAD_INDEX: &[u8] = b"snap/index/v1";
/// Associated data of a sealed snapshot object.
pub const AAD_SNAPSHOT: &[u8] = b"snap/snapshot/v1";
/// Associated data of the sealed master key in a key file.
pub const AAD_KEY: &[u8] = b"snap/key/v1";
/// Associated data of a sealed lease object.
pub const AAD_LOCK: &[u8] = b"snap/lock/v1";
/// Associated data of a sealed prune mark object (format-spec §10, §11).
pub const AAD_MARK: &[u8] = b"snap/mark/v1";
/// Associated data of a sealed dictionary object (format-spec §12.1).
pub const AAD_DICT: &[u8] = b"snap/dict/v1";

/// Length of the master key, bytes: encryption key 32 || id key 32 ||
/// chunker seed 32.
pub const MASTER_KEY_LEN: usize = 96;

/// The repository's master key. Zeroized on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    enc: [u8; 32],
    id: [u8; 32],
    chunker_seed: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Fills `buf` from the OS random source.
pub fn random_bytes(buf: &mut [u8]) {
    // getrandom only fails if the OS has no entropy source at all.
    getrandom::fill(buf).expect("operating system random source unavailable");
}

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> MasterKey {
        let mut k = MasterKey {
            enc: [0; 32],
            id: [0; 32],
            chunker_seed: [0; 32],
        };
        random_bytes(&mut k.enc);
        random_bytes(&mut k.id);
        random_bytes(&mut k.chunker_seed);
        k
    }

    /// A key with this key's id key and chunker seed but a fresh random
    /// encryption key (`snap init --copy-chunker-params-from`).
    pub fn with_fresh_encryption_key(&self) -> MasterKey {
        let mut k = self.clone();
        random_bytes(&mut k.enc);
        k
    }

    /// Whether `other` computes the same blob ids and chunk boundaries
    /// (same id key and chunker seed; compared in constant time).
    pub fn same_ids(&self, other: &MasterKey) -> bool {
        let mut diff = 0u8;
        for (a, b) in self
            .id
            .iter()
            .chain(&self.chunker_seed)
            .zip(other.id.iter().chain(&other.chunker_seed))
        {
            diff |= a ^ b;
        }
        diff == 0
    }

    /// From the 96-byte serialisation.
    pub fn from_bytes(b: &[u8]) -> Option<MasterKey> {
        if b.len() != MASTER_KEY_LEN {
            return None;
        }
        let mut k = MasterKey {
            enc: [0; 32],
            id: [0; 32],
            chunker_seed: [0; 32],
        };
        k.enc.copy_from_slice(&b[..32]);
        k.id.copy_from_slice(&b[32..64]);
        k.chunker_seed.copy_from_slice(&b[64..]);
        Some(k)
    }

    /// The 96-byte serialisation; the caller must zeroize it.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut v = zeroize::Zeroizing::new(Vec::with_capacity(MASTER_KEY_LEN));
        v.extend_from_slice(&self.enc);
        v.extend_from_slice(&self.id);
        v.extend_from_slice(&self.chunker_seed);
        v
    }

    /// The secret seed the chunker's gear table is derived from.
    pub fn chunker_seed(&self) -> &[u8; 32] {
        &self.chunker_seed
    }

    /// Blob id: keyed BLAKE3-256 of the plaintext under the id key, so ids
    /// reveal nothing about content to the storage owner.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id, plaintext).as_bytes())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.enc.into())
    }

    /// Seals `plaintext` into a new envelope with a random nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce);
        seal_with(&self.cipher(), &nonce, aad, plaintext)
    }

    /// Seals `plaintext` with an explicit 24-byte nonce. For test vectors;
    /// real code uses random nonces ([`MasterKey::seal`]): a nonce MUST NOT
    /// be reused under one key.
    pub fn seal_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Vec<u8> {
        seal_with(&self.cipher(), nonce, aad, plaintext)
    }

    /// Seals a blob: associated data is the kind byte followed by the id.
    pub fn seal_blob(&self, kind: BlobKind, id: &BlobId, plaintext: &[u8]) -> Vec<u8> {
        self.seal(&blob_aad(kind, id), plaintext)
    }

    /// Seals a blob with an explicit nonce. For test vectors; real code uses
    /// random nonces ([`MasterKey::seal_blob`]).
    pub fn seal_blob_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        kind: BlobKind,
        id: &BlobId,
        plaintext: &[u8],
    ) -> Vec<u8> {
        seal_with(&self.cipher(), nonce, &blob_aad(kind, id), plaintext)
    }

    /// Opens an envelope; [`ErrorKind::Unauthenticated`] if its tag does not
    /// verify (wrong key, tampering, or a blob under the wrong id),
    /// [`ErrorKind::Corrupt`] if it is shorter than an empty envelope
    /// (nonce and tag).
    pub fn open(&self, aad: &[u8], envelope: &[u8], what: &str) -> Result<Vec<u8>> {
        let message = || format!("{what} failed authentication (corrupt or tampered data)");
        if envelope.len() < ENVELOPE_OVERHEAD {
            return Err(Error::corrupt(message()));
        }
        open_with(&self.cipher(), aad, envelope).ok_or_else(|| Error::unauthenticated(message()))
    }

    /// Opens a sealed blob; see [`MasterKey::open`].
    pub fn open_blob(&self, kind: BlobKind, id: &BlobId, envelope: &[u8]) -> Result<Vec<u8>> {
        self.open(
            &blob_aad(kind, id),
            envelope,
            &format!("blob {}", id.short()),
        )
    }
}

/// Associated data of a sealed blob (format-spec §11): the kind byte
/// (0 data, 1 tree) followed by the blob's 32-byte id.
pub fn blob_aad(kind: BlobKind, id: &BlobId) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = kind.to_byte();
    aad[1..].copy_from_slice(&id.0);
    aad
}

/// Seals with an explicit nonce (test vectors use this; real code uses a
/// random nonce via [`MasterKey::seal`]).
pub fn seal_with(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + ENVELOPE_OVERHEAD);
    out.extend_from_slice(nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(*nonce), aad, (&mut out[NONCE_LEN..]).into())
        .expect("plaintext within XChaCha20-Poly1305 limits");
    out.extend_from_slice(tag.as_slice());
    out
}

fn open_with(cipher: &XChaCha20Poly1305, aad: &[u8], envelope: &[u8]) -> Option<Vec<u8>> {
    if envelope.len() < ENVELOPE_OVERHEAD {
        return None;
    }
    let (nonce, rest) = envelope.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let nonce = &nonce;
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut buf = ct.to_vec();
    let tag = chacha20poly1305::Tag::try_from(tag).ok()?;
    cipher
        .decrypt_inout_detached(&XNonce::from(*nonce), aad, buf.as_mut_slice().into(), &tag)
        .ok()?;
    Some(buf)
}

/// Argon2id parameters for new key files: 64 MiB, 3 passes, 1 lane
/// (RFC 9106 second recommended option, lower memory). `SNAP_TEST_FAST_KDF=1`
/// selects 8 MiB / 1 pass for test suites only.
pub fn default_kdf_params() -> (u32, u32, u32) {
    if std::env::var_os("SNAP_TEST_FAST_KDF").is_some() {
        (8 * 1024, 1, 1)
    } else {
        (64 * 1024, 3, 1)
    }
}

fn derive_kek(password: &[u8], kdf: &Kdf) -> Result<zeroize::Zeroizing<[u8; 32]>> {
    let salt = hex::decode(&kdf.salt).map_err(|_| Error::corrupt("key file salt is not hex"))?;
    let params = argon2::Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32))
        .map_err(|e| Error::corrupt(format!("key file kdf parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    a.hash_password_into(password, &salt, out.as_mut())
        .map_err(|e| Error::corrupt(format!("key derivation failed: {e}")))?;
    Ok(out)
}

/// Wraps `master` under `password` into a new key file with the Argon2id
/// parameters of [`default_kdf_params`].
pub fn wrap_master_key(
    master: &MasterKey,
    password: &[u8],
    created: String,
    hostname: String,
    username: String,
) -> Result<KeyFile> {
    wrap_master_key_with_params(
        master,
        password,
        default_kdf_params(),
        created,
        hostname,
        username,
    )
}

/// Wraps `master` under `password` with explicit Argon2id parameters
/// `(memory KiB, passes, lanes)` (fuzz seeds and tests use tiny ones);
/// [`ErrorKind::Corrupt`] if argon2 rejects them.
pub fn wrap_master_key_with_params(
    master: &MasterKey,
    password: &[u8],
    (m, t, p): (u32, u32, u32),
    created: String,
    hostname: String,
    username: String,
) -> Result<KeyFile> {
    let mut salt = [0u8; 32];
    random_bytes(&mut salt);
    let kdf = Kdf {
        algorithm: "argon2id".into(),
        m_cost_kib: m,
        t_cost: t,
        p_cost: p,
        salt: hex::encode(salt),
    };
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce);
    wrap_master_key_with(master, password, kdf, &nonce, created, hostname, username)
}

/// Wraps `master` with explicit KDF parameters, salt and nonce. For test
/// vectors; real code uses [`wrap_master_key`] (random salt and nonce).
///
/// Errors: [`ErrorKind::Corrupt`] if `kdf` is not valid Argon2id input.
pub fn wrap_master_key_with(
    master: &MasterKey,
    password: &[u8],
    kdf: Kdf,
    nonce: &[u8; NONCE_LEN],
    created: String,
    hostname: String,
    username: String,
) -> Result<KeyFile> {
    let kek = derive_kek(password, &kdf)?;
    let cipher = XChaCha20Poly1305::new(&(*kek).into());
    let sealed = seal_with(&cipher, nonce, AAD_KEY, &master.to_bytes());
    Ok(KeyFile {
        version: 1,
        created,
        hostname,
        username,
        kdf,
        sealed_master: hex::encode(sealed),
    })
}

/// BLAKE3 `derive_key` context of the `config` key check (format-spec §4).
pub const CONFIG_KEY_CHECK_CONTEXT: &str = "snap 2026-11 config key check v1";

/// The `key_check` of a config (format-spec §4): 64 hex digits of keyed
/// BLAKE3 over `config_bytes` (the config encoded with `key_check` absent),
/// keyed with `derive_key(CONFIG_KEY_CHECK_CONTEXT, master key)`. Ties
/// `config` to exactly one master key and authenticates it.
pub fn config_key_check(master: &MasterKey, config_bytes: &[u8]) -> String {
    let mk = master.to_bytes();
    let k = zeroize::Zeroizing::new(blake3::derive_key(CONFIG_KEY_CHECK_CONTEXT, &mk));
    hex::encode(blake3::keyed_hash(&k, config_bytes).as_bytes())
}

/// Whether `master` is the master key `config.key_check` names (constant
/// time). A config without `key_check` (written before it existed) accepts
/// any master key.
pub fn config_key_matches(master: &MasterKey, config: &crate::format::config::Config) -> bool {
    let Some(want) = &config.key_check else {
        return true;
    };
    let mut bare = config.clone();
    bare.key_check = None;
    let got = config_key_check(master, &bare.encode());
    let (a, b) = (got.as_bytes(), want.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Unwraps a key file with `password`: `Ok(None)` if the password does not
/// open it, an error if the key file itself is malformed.
pub fn unwrap_master_key(kf: &KeyFile, password: &[u8]) -> Result<Option<MasterKey>> {
    let kek = derive_kek(password, &kf.kdf)?;
    let cipher = XChaCha20Poly1305::new(&(*kek).into());
    let sealed = hex::decode(&kf.sealed_master)
        .map_err(|_| Error::corrupt("key file sealed_master is not hex"))?;
    match open_with(&cipher, AAD_KEY, &sealed) {
        None => Ok(None),
        Some(mut plain) => {
            let k = MasterKey::from_bytes(&plain);
            plain.zeroize();
            k.map(Some).ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    "key file holds a master key of the wrong length",
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::{split_pack, PackHeader};
    use crate::write::pack::PackBuilder;
    use proptest::prelude::*;

    fn key() -> MasterKey {
        let b: Vec<u8> = (0..MASTER_KEY_LEN as u8).collect();
        MasterKey::from_bytes(&b).unwrap()
    }

    /// Opens every part of a whole pack as a reader would; `Err` if anything
    /// fails authentication or decoding.
    fn verify_pack(key: &MasterKey, pack: &[u8]) -> Result<usize> {
        let (data_len, sealed) = split_pack(pack)?;
        let header = key.open(AAD_PACK_HEADER, sealed, "pack header")?;
        let header = PackHeader::decode(&header, data_len as u64)?;
        for e in &header.entries {
            let s = &pack[e.offset as usize..(e.offset + e.length) as usize];
            key.open_blob(e.kind, &e.id, s)?;
        }
        Ok(header.entries.len())
    }

    proptest! {
        #[test]
        fn flipped_byte_in_sealed_blob_is_detected(
            plain in proptest::collection::vec(any::<u8>(), 0..300),
            pos in any::<usize>(),
            bit in 0u8..8,
        ) {
            let k = key();
            let id = k.blob_id(&plain);
            let mut s = k.seal_blob(BlobKind::Data, &id, &plain);
            prop_assert_eq!(k.open_blob(BlobKind::Data, &id, &s).unwrap(), plain.clone());
            // Wrong kind or id in the associated data is detected.
            prop_assert!(k.open_blob(BlobKind::Tree, &id, &s).is_err());
            prop_assert!(k.open_blob(BlobKind::Data, &BlobId([0; 32]), &s).is_err());
            let i = pos % s.len();
            s[i] ^= 1 << bit;
            prop_assert!(k.open_blob(BlobKind::Data, &id, &s).is_err());
            s[i] ^= 1 << bit;
            s.truncate(i);
            prop_assert!(k.open_blob(BlobKind::Data, &id, &s).is_err());
        }

        #[test]
        fn flipped_byte_in_pack_is_detected(
            blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..6),
            pos in any::<usize>(),
            bit in 0u8..8,
        ) {
            let k = key();
            let mut b = PackBuilder::default();
            for (i, p) in blobs.iter().enumerate() {
                let kind = if i % 2 == 0 { BlobKind::Data } else { BlobKind::Tree };
                let id = k.blob_id(p);
                b.add(kind, id, &k.seal_blob(kind, &id, p), p.len() as u32, None);
            }
            let pack = b.finish(&k);
            prop_assert_eq!(verify_pack(&k, &pack.bytes).unwrap(), blobs.len());
            prop_assert_eq!(crate::format::PackId::of_object(&pack.bytes), pack.id);
            let mut bad = pack.bytes.to_vec();
            let i = pos % bad.len();
            bad[i] ^= 1 << bit;
            prop_assert!(verify_pack(&k, &bad).is_err(), "flip at {} of {} undetected", i, bad.len());
            prop_assert_ne!(crate::format::PackId::of_object(&bad), pack.id);
        }
    }

    #[test]
    fn wrong_key_or_label_fails() {
        let k = key();
        let s = k.seal(AAD_INDEX, b"index");
        assert_eq!(k.open(AAD_INDEX, &s, "x").unwrap(), b"index");
        assert!(k.open(AAD_SNAPSHOT, &s, "x").is_err());
        let other = MasterKey::generate();
        assert!(other.open(AAD_INDEX, &s, "x").is_err());
        assert!(k.open(AAD_INDEX, &s[..ENVELOPE_OVERHEAD - 1], "x").is_err());
    }
}

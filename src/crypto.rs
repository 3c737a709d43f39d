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
use std::sync::Arc;
use zeroize::Zeroize;

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

/// Length of a put key (format-spec §5.1), bytes: id key 32 || chunker seed
/// 32 || index key 32 || data public key 32.
pub const PUT_KEY_LEN: usize = 128;

/// Associated data of the sealed put key in a put-only key file
/// (format-spec §5.1, §11).
pub const AAD_PUT_KEY: &[u8] = b"snap/put-key/v1";

/// BLAKE3 `derive_key` context of the index key of a split-key repository
/// (format-spec §5.1): `index_key = derive_key(ctx, master key[96])`.
pub const INDEX_KEY_CONTEXT: &str = "snap 2026-12 index key v1";
/// BLAKE3 `derive_key` context of the data secret key of a split-key
/// repository (format-spec §5.1): the X25519 scalar
/// `derive_key(ctx, master key[96])` (clamped by X25519, RFC 7748 §5).
pub const DATA_SECRET_CONTEXT: &str = "snap 2026-12 data secret key v1";
/// BLAKE3 `derive_key` context of a session key (format-spec §11.1):
/// `derive_key(ctx, X25519(eph_sk, data_pk) || eph_pk || data_pk)`.
pub const SESSION_KEY_CONTEXT: &str = "snap 2026-12 session key v1";

/// Length of the ephemeral public key in front of a split envelope, bytes.
pub const EPH_PK_LEN: usize = 32;
/// Bytes a split envelope (format-spec §11.1) adds to its plaintext:
/// ephemeral public key 32 + nonce 24 + tag 16.
pub const SPLIT_ENVELOPE_OVERHEAD: usize = EPH_PK_LEN + ENVELOPE_OVERHEAD;

/// The one-line error every read or delete with a put-only key reports.
pub const PUT_ONLY_MESSAGE: &str =
    "this key is put-only: it can make backups but not read or delete them; use a full key";

/// The error of a read or delete attempted with a put-only key
/// ([`ErrorKind::PutOnly`], [`PUT_ONLY_MESSAGE`]).
pub fn put_only_error() -> Error {
    Error::new(ErrorKind::PutOnly, PUT_ONLY_MESSAGE)
}

/// What a key can do (format-spec §5.1, §25.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// The master key: reads, writes and deletes everything.
    Full,
    /// A put key: writes new snapshots (with deduplication) and reads only
    /// what every writer must read (index, pack headers, leases, marks).
    PutOnly,
}

/// Which key an envelope of a given associated data is sealed under in a
/// split-key repository (format-spec §11.1): content (blobs, snapshots,
/// dictionaries) under a session key, the rest under the index key.
fn is_content_aad(aad: &[u8]) -> bool {
    aad == AAD_SNAPSHOT || aad == AAD_DICT || aad.len() == 33
}

/// The keys of a split-key repository (format-spec §5.1, §11.1).
struct Split {
    /// Seals index objects, pack headers, leases and marks.
    index_key: zeroize::Zeroizing<[u8; 32]>,
    /// The data public key (`config.data_public_key`).
    data_pk: [u8; 32],
    /// The data secret key: full keys only.
    data_sk: Option<x25519_dalek::StaticSecret>,
    /// This process's writing session: ephemeral public key and the
    /// session key's cipher, drawn on first use.
    writer: std::sync::OnceLock<([u8; 32], Arc<XChaCha20Poly1305>)>,
    /// Session keys derived so far for reading, by ephemeral public key.
    readers: std::sync::Mutex<std::collections::HashMap<[u8; 32], Arc<XChaCha20Poly1305>>>,
}

/// Session keys a reader keeps derived at once (each costs one X25519).
const MAX_READER_SESSIONS: usize = 4096;

/// The session key of ephemeral secret `eph_sk` toward data public key
/// `data_pk` (format-spec §11.1), and the ephemeral public key:
/// `derive_key(SESSION_KEY_CONTEXT, X25519(eph_sk, data_pk) || eph_pk || data_pk)`,
/// the DHKEM shape of HPKE (RFC 9180 §4.1: the shared secret bound to both
/// public keys) with BLAKE3 as KDF, as libsodium's sealed box and bupstash's
/// put keys use one ephemeral X25519 key per sender.
/// `None` if the shared secret is all zero (a low-order `data_pk`).
pub fn session_key_from_secret(
    eph_sk: &[u8; 32],
    data_pk: &[u8; 32],
) -> Option<([u8; 32], zeroize::Zeroizing<[u8; 32]>)> {
    let sk = x25519_dalek::StaticSecret::from(*eph_sk);
    let eph_pk = *x25519_dalek::PublicKey::from(&sk).as_bytes();
    let shared = sk.diffie_hellman(&x25519_dalek::PublicKey::from(*data_pk));
    if !shared.was_contributory() {
        return None;
    }
    Some((eph_pk, session_kdf(shared.as_bytes(), &eph_pk, data_pk)))
}

fn session_kdf(
    shared: &[u8; 32],
    eph_pk: &[u8; 32],
    data_pk: &[u8; 32],
) -> zeroize::Zeroizing<[u8; 32]> {
    let mut input = zeroize::Zeroizing::new([0u8; 96]);
    input[..32].copy_from_slice(shared);
    input[32..64].copy_from_slice(eph_pk);
    input[64..].copy_from_slice(data_pk);
    zeroize::Zeroizing::new(blake3::derive_key(SESSION_KEY_CONTEXT, input.as_ref()))
}

impl Split {
    fn writer(&self) -> &([u8; 32], Arc<XChaCha20Poly1305>) {
        self.writer.get_or_init(|| loop {
            let mut sk = zeroize::Zeroizing::new([0u8; 32]);
            random_bytes(sk.as_mut());
            // A contributory result is certain for a valid data_pk; a
            // low-order one was refused when the key was made.
            if let Some((pk, k)) = session_key_from_secret(&sk, &self.data_pk) {
                return (pk, Arc::new(XChaCha20Poly1305::new(&(*k).into())));
            }
        })
    }

    /// The cipher of the session that `eph_pk` names, or `None` if this key
    /// cannot derive it (put-only and not its own session) or `eph_pk` is
    /// of low order.
    fn reader(&self, eph_pk: &[u8; 32]) -> Result<Arc<XChaCha20Poly1305>> {
        if let Some((pk, c)) = self.writer.get() {
            if pk == eph_pk {
                return Ok(c.clone());
            }
        }
        let Some(sk) = &self.data_sk else {
            return Err(put_only_error());
        };
        let mut m = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.get(eph_pk) {
            return Ok(c.clone());
        }
        let shared = sk.diffie_hellman(&x25519_dalek::PublicKey::from(*eph_pk));
        if !shared.was_contributory() {
            return Err(Error::unauthenticated(
                "sealed object names an ephemeral key of low order (tampered data)",
            ));
        }
        let k = session_kdf(shared.as_bytes(), eph_pk, &self.data_pk);
        let c = Arc::new(XChaCha20Poly1305::new(&(*k).into()));
        if m.len() >= MAX_READER_SESSIONS {
            m.clear();
        }
        m.insert(*eph_pk, c.clone());
        Ok(c)
    }
}

impl Drop for Split {
    fn drop(&mut self) {
        self.data_pk.zeroize();
    }
}

/// The keys this process holds for one repository: the master key (a
/// full key), or a put key (a put-only key, format-spec §5.1). Every
/// seal and open goes through it and picks the key the format prescribes
/// for the associated data (format-spec §11, §11.1). Zeroized on drop;
/// never printed.
#[derive(Clone)]
pub struct MasterKey {
    /// The master encryption key; `None` for a put-only key.
    enc: Option<zeroize::Zeroizing<[u8; 32]>>,
    id: [u8; 32],
    chunker_seed: [u8; 32],
    /// The split-key scheme's keys; `None` in a single-key repository.
    split: Option<Arc<Split>>,
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.id.zeroize();
        self.chunker_seed.zeroize();
    }
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
        let mut enc = zeroize::Zeroizing::new([0u8; 32]);
        random_bytes(enc.as_mut());
        let mut k = MasterKey {
            enc: Some(enc),
            id: [0; 32],
            chunker_seed: [0; 32],
            split: None,
        };
        random_bytes(&mut k.id);
        random_bytes(&mut k.chunker_seed);
        k
    }

    /// What this key can do.
    pub fn role(&self) -> KeyRole {
        if self.enc.is_some() {
            KeyRole::Full
        } else {
            KeyRole::PutOnly
        }
    }

    /// Whether this key belongs to a split-key repository (format-spec §5.1).
    pub fn is_split(&self) -> bool {
        self.split.is_some()
    }

    /// [`ErrorKind::PutOnly`] unless this is a full key.
    pub fn require_full(&self) -> Result<()> {
        match self.role() {
            KeyRole::Full => Ok(()),
            KeyRole::PutOnly => Err(put_only_error()),
        }
    }

    /// A key with this key's id key and chunker seed but a fresh random
    /// encryption key (`snap init --copy-chunker-params-from`); always a
    /// single-key full key (split keys are derived from the result).
    pub fn with_fresh_encryption_key(&self) -> MasterKey {
        let mut enc = zeroize::Zeroizing::new([0u8; 32]);
        random_bytes(enc.as_mut());
        MasterKey {
            enc: Some(enc),
            id: self.id,
            chunker_seed: self.chunker_seed,
            split: None,
        }
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

    /// From the 96-byte serialisation: a full key of a single-key
    /// repository until [`MasterKey::for_config`] attaches the split keys.
    pub fn from_bytes(b: &[u8]) -> Option<MasterKey> {
        if b.len() != MASTER_KEY_LEN {
            return None;
        }
        let mut enc = zeroize::Zeroizing::new([0u8; 32]);
        enc.copy_from_slice(&b[..32]);
        let mut k = MasterKey {
            enc: Some(enc),
            id: [0; 32],
            chunker_seed: [0; 32],
            split: None,
        };
        k.id.copy_from_slice(&b[32..64]);
        k.chunker_seed.copy_from_slice(&b[64..]);
        Some(k)
    }

    /// From the 128-byte put key (format-spec §5.1): a put-only key.
    /// `None` if `b` is not 128 bytes or its data public key is of low
    /// order (no session key could be derived toward it).
    pub fn from_put_key_bytes(b: &[u8]) -> Option<MasterKey> {
        if b.len() != PUT_KEY_LEN {
            return None;
        }
        let mut index_key = zeroize::Zeroizing::new([0u8; 32]);
        index_key.copy_from_slice(&b[64..96]);
        let data_pk: [u8; 32] = b[96..].try_into().ok()?;
        session_key_from_secret(&[1; 32], &data_pk)?;
        let mut k = MasterKey {
            enc: None,
            id: [0; 32],
            chunker_seed: [0; 32],
            split: Some(Arc::new(Split {
                index_key,
                data_pk,
                data_sk: None,
                writer: Default::default(),
                readers: Default::default(),
            })),
        };
        k.id.copy_from_slice(&b[..32]);
        k.chunker_seed.copy_from_slice(&b[32..64]);
        Some(k)
    }

    /// The 96-byte serialisation (zeroized on drop).
    /// [`ErrorKind::PutOnly`] for a put-only key, which holds no master key.
    pub fn to_bytes(&self) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let enc = self.enc.as_ref().ok_or_else(put_only_error)?;
        let mut v = zeroize::Zeroizing::new(Vec::with_capacity(MASTER_KEY_LEN));
        v.extend_from_slice(enc.as_ref());
        v.extend_from_slice(&self.id);
        v.extend_from_slice(&self.chunker_seed);
        Ok(v)
    }

    /// The split-key scheme's keys derived from a full key's master key
    /// (format-spec §5.1): index key and data secret key.
    fn derive_split(&self) -> Result<(zeroize::Zeroizing<[u8; 32]>, x25519_dalek::StaticSecret)> {
        let mk = self.to_bytes()?;
        let ik = zeroize::Zeroizing::new(blake3::derive_key(INDEX_KEY_CONTEXT, &mk));
        let sk = zeroize::Zeroizing::new(blake3::derive_key(DATA_SECRET_CONTEXT, &mk));
        Ok((ik, x25519_dalek::StaticSecret::from(*sk)))
    }

    /// The data public key a split-key repository of this master key
    /// carries in `config` (format-spec §4, §5.1).
    /// [`ErrorKind::PutOnly`] for a put-only key.
    pub fn data_public_key(&self) -> Result<[u8; 32]> {
        if let (Some(s), KeyRole::PutOnly) = (&self.split, self.role()) {
            return Ok(s.data_pk);
        }
        let (_, sk) = self.derive_split()?;
        Ok(*x25519_dalek::PublicKey::from(&sk).as_bytes())
    }

    /// This key made ready for a repository whose `config` carries
    /// `data_public_key` (hex) or none (format-spec §4, §5.1). A full key
    /// derives the split keys and checks the public key against them; a
    /// put-only key checks it against its own copy.
    ///
    /// Errors: [`ErrorKind::Corrupt`] if the public key differs or is
    /// malformed; [`ErrorKind::Usage`] for a put-only key and a
    /// single-key repository.
    pub fn for_config(mut self, data_public_key: Option<&str>) -> Result<MasterKey> {
        let want = match data_public_key {
            None => {
                if self.role() == KeyRole::PutOnly {
                    return Err(Error::usage(
                        "a put-only key needs a repository made with `snap init --put-only-ready`",
                    ));
                }
                self.split = None;
                return Ok(self);
            }
            Some(h) => {
                let b = hex::decode(h)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok());
                b.ok_or_else(|| Error::corrupt("config data_public_key is not 32 bytes of hex"))?
            }
        };
        let mismatch = || {
            Error::corrupt(
                "`config` data_public_key does not match this key (`config` was modified?)",
            )
        };
        match self.role() {
            KeyRole::PutOnly => {
                let s = self.split.as_ref().ok_or_else(mismatch)?;
                if s.data_pk != want {
                    return Err(mismatch());
                }
            }
            KeyRole::Full => {
                let (index_key, sk) = self.derive_split()?;
                let pk = *x25519_dalek::PublicKey::from(&sk).as_bytes();
                if pk != want {
                    return Err(mismatch());
                }
                self.split = Some(Arc::new(Split {
                    index_key,
                    data_pk: pk,
                    data_sk: Some(sk),
                    writer: Default::default(),
                    readers: Default::default(),
                }));
            }
        }
        Ok(self)
    }

    /// The 128-byte put key of this full key's split-key repository
    /// (format-spec §5.1): id key, chunker seed, index key, data public key.
    ///
    /// A put-only key returns its own put key (so it can change its
    /// password or make another put-only key, nothing more).
    ///
    /// Errors: [`ErrorKind::Usage`] in a single-key repository.
    pub fn put_key_bytes(&self) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let s = self.split.as_ref().ok_or_else(|| {
            Error::usage(
                "this repository was made without `--put-only-ready`, so it has no data key pair and cannot have put-only keys (its `config` is never rewritten); make a new one with `snap init --put-only-ready` and `snap copy` the snapshots into it",
            )
        })?;
        let mut v = zeroize::Zeroizing::new(Vec::with_capacity(PUT_KEY_LEN));
        v.extend_from_slice(&self.id);
        v.extend_from_slice(&self.chunker_seed);
        v.extend_from_slice(s.index_key.as_ref());
        v.extend_from_slice(&s.data_pk);
        Ok(v)
    }

    /// Fixes this process's writing session to ephemeral secret `eph_sk`
    /// (format-spec §11.1). For test vectors only: real sessions draw a
    /// random ephemeral key on first use, and one MUST NOT be reused.
    ///
    /// Errors: [`ErrorKind::Usage`] in a single-key repository or once the
    /// session has sealed something.
    pub fn set_session_secret_for_vectors(&self, eph_sk: &[u8; 32]) -> Result<()> {
        let s = self
            .split
            .as_ref()
            .ok_or_else(|| Error::usage("not a split-key repository"))?;
        let (pk, k) = session_key_from_secret(eph_sk, &s.data_pk)
            .ok_or_else(|| Error::usage("data public key of low order"))?;
        s.writer
            .set((pk, Arc::new(XChaCha20Poly1305::new(&(*k).into()))))
            .map_err(|_| Error::usage("the session key is already in use"))
    }

    /// The index key of a split-key repository (format-spec §5.1); `None`
    /// in a single-key repository. For test vectors and checks of what a
    /// put-only key file holds.
    pub fn index_key(&self) -> Option<&[u8; 32]> {
        self.split.as_ref().map(|s| &*s.index_key)
    }

    /// The data secret key's 32 bytes (the X25519 scalar before clamping,
    /// format-spec §5.1) of a full key; `None` for a put-only key. For test
    /// vectors and checks of what a put-only key file holds.
    pub fn data_secret_bytes(&self) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        let mk = self.to_bytes().ok()?;
        Some(zeroize::Zeroizing::new(blake3::derive_key(
            DATA_SECRET_CONTEXT,
            &mk,
        )))
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

    /// The cipher of envelopes that are not split (format-spec §11.1):
    /// everything in a single-key repository (master encryption key), the
    /// index class in a split-key one (index key).
    fn plain_cipher(&self) -> Result<XChaCha20Poly1305> {
        if let Some(s) = &self.split {
            return Ok(XChaCha20Poly1305::new(&(*s.index_key).into()));
        }
        let enc = self.enc.as_ref().ok_or_else(put_only_error)?;
        Ok(XChaCha20Poly1305::new(&(**enc).into()))
    }

    /// Seals `plaintext` into a new envelope with a random nonce, under
    /// the key `aad` calls for (format-spec §11, §11.1).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce);
        self.seal_with_nonce(&nonce, aad, plaintext)
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
        match &self.split {
            Some(s) if is_content_aad(aad) => {
                let (pk, c) = s.writer();
                let mut out = Vec::with_capacity(plaintext.len() + SPLIT_ENVELOPE_OVERHEAD);
                out.extend_from_slice(pk);
                out.extend_from_slice(&seal_with(c, nonce, aad, plaintext));
                out
            }
            // A key without an encryption key always has split keys.
            _ => match self.plain_cipher() {
                Ok(c) => seal_with(&c, nonce, aad, plaintext),
                Err(_) => Vec::new(),
            },
        }
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
        self.seal_with_nonce(nonce, &blob_aad(kind, id), plaintext)
    }

    /// Opens an envelope (format-spec §11; §11.1 in a split-key repository
    /// for blobs, snapshots and dictionaries); [`ErrorKind::Unauthenticated`]
    /// if its tag does not verify (wrong key, tampering, or a blob under the
    /// wrong id), [`ErrorKind::Corrupt`] if it is shorter than an empty
    /// envelope, [`ErrorKind::PutOnly`] for content a put-only key cannot
    /// open (any but its own session's).
    pub fn open(&self, aad: &[u8], envelope: &[u8], what: &str) -> Result<Vec<u8>> {
        let message = || format!("{what} failed authentication (corrupt or tampered data)");
        let (cipher, envelope) = match &self.split {
            Some(s) if is_content_aad(aad) => {
                if envelope.len() < SPLIT_ENVELOPE_OVERHEAD {
                    return Err(Error::corrupt(message()));
                }
                let (pk, rest) = envelope.split_at(EPH_PK_LEN);
                let pk: [u8; 32] = pk.try_into().map_err(|_| Error::corrupt(message()))?;
                let c = s.reader(&pk).map_err(|e| {
                    if e.kind() == ErrorKind::PutOnly {
                        e
                    } else {
                        Error::unauthenticated(message())
                    }
                })?;
                (c, rest)
            }
            _ => (Arc::new(self.plain_cipher()?), envelope),
        };
        if envelope.len() < ENVELOPE_OVERHEAD {
            return Err(Error::corrupt(message()));
        }
        open_with(&cipher, aad, envelope).ok_or_else(|| Error::unauthenticated(message()))
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
/// parameters of [`default_kdf_params`]: a full key file, or with
/// `put_only` a put-only one (format-spec §5.1).
///
/// Errors: [`ErrorKind::PutOnly`] if `master` is put-only (a put-only key
/// cannot make key files), [`ErrorKind::Usage`] for `put_only` in a
/// single-key repository.
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

/// Wraps the put key of `master` (a full key of a split-key repository)
/// under `password` into a new put-only key file (format-spec §5.1).
///
/// Errors: as [`MasterKey::put_key_bytes`].
pub fn wrap_put_key(
    master: &MasterKey,
    password: &[u8],
    created: String,
    hostname: String,
    username: String,
) -> Result<KeyFile> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce);
    wrap_put_key_with(
        master,
        password,
        fresh_kdf(default_kdf_params()),
        &nonce,
        created,
        hostname,
        username,
    )
}

/// [`wrap_put_key`] with explicit KDF parameters, salt and nonce. For test
/// vectors; real code uses [`wrap_put_key`].
pub fn wrap_put_key_with(
    master: &MasterKey,
    password: &[u8],
    kdf: Kdf,
    nonce: &[u8; NONCE_LEN],
    created: String,
    hostname: String,
    username: String,
) -> Result<KeyFile> {
    let put = master.put_key_bytes()?;
    let role = Some(crate::format::keyfile::ROLE_PUT_ONLY.into());
    let owner = (created, hostname, username);
    seal_key_file(&put[..], AAD_PUT_KEY, role, password, kdf, nonce, owner)
}

/// A key file (format-spec §5, §5.1) holding `plain` (the 96-byte master
/// key or the 128-byte put key) sealed under the password's KEK with
/// `aad`; `owner` is (created, hostname, username).
/// Errors: [`ErrorKind::Corrupt`] if `kdf` is not valid Argon2id input.
fn seal_key_file(
    plain: &[u8],
    aad: &[u8],
    role: Option<String>,
    password: &[u8],
    kdf: Kdf,
    nonce: &[u8; NONCE_LEN],
    (created, hostname, username): (String, String, String),
) -> Result<KeyFile> {
    let kek = derive_kek(password, &kdf)?;
    let cipher = XChaCha20Poly1305::new(&(*kek).into());
    let sealed = seal_with(&cipher, nonce, aad, plain);
    Ok(KeyFile {
        version: 1,
        created,
        hostname,
        username,
        role,
        kdf,
        sealed_master: hex::encode(sealed),
    })
}

fn fresh_kdf((m, t, p): (u32, u32, u32)) -> Kdf {
    let mut salt = [0u8; 32];
    random_bytes(&mut salt);
    Kdf {
        algorithm: "argon2id".into(),
        m_cost_kib: m,
        t_cost: t,
        p_cost: p,
        salt: hex::encode(salt),
    }
}

/// Wraps `master` under `password` with explicit Argon2id parameters
/// `(memory KiB, passes, lanes)` (fuzz seeds and tests use tiny ones);
/// [`ErrorKind::Corrupt`] if argon2 rejects them.
pub fn wrap_master_key_with_params(
    master: &MasterKey,
    password: &[u8],
    params: (u32, u32, u32),
    created: String,
    hostname: String,
    username: String,
) -> Result<KeyFile> {
    let kdf = fresh_kdf(params);
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce);
    wrap_master_key_with(master, password, kdf, &nonce, created, hostname, username)
}

/// Wraps `master` with explicit KDF parameters, salt and nonce. For test
/// vectors; real code uses [`wrap_master_key`] (random salt and nonce).
///
/// Errors: [`ErrorKind::Corrupt`] if `kdf` is not valid Argon2id input,
/// [`ErrorKind::PutOnly`] if `master` is put-only.
pub fn wrap_master_key_with(
    master: &MasterKey,
    password: &[u8],
    kdf: Kdf,
    nonce: &[u8; NONCE_LEN],
    created: String,
    hostname: String,
    username: String,
) -> Result<KeyFile> {
    let mk = master.to_bytes()?;
    let owner = (created, hostname, username);
    seal_key_file(&mk[..], AAD_KEY, None, password, kdf, nonce, owner)
}

/// BLAKE3 `derive_key` context of the `config` key check (format-spec §4).
pub const CONFIG_KEY_CHECK_CONTEXT: &str = "snap 2026-11 config key check v1";

/// The `key_check` of a config (format-spec §4): 64 hex digits of keyed
/// BLAKE3 over `config_bytes` (the config encoded with `key_check` absent),
/// keyed with `derive_key(CONFIG_KEY_CHECK_CONTEXT, master key)`. Ties
/// `config` to exactly one master key and authenticates it.
///
/// A put-only key holds no master key and computes a value that matches
/// nothing (callers check [`MasterKey::role`] first).
pub fn config_key_check(master: &MasterKey, config_bytes: &[u8]) -> String {
    let mk = master.to_bytes().unwrap_or_default();
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
/// A put-only key file (`role` = `put-only`, format-spec §5.1) yields a
/// put-only key.
pub fn unwrap_master_key(kf: &KeyFile, password: &[u8]) -> Result<Option<MasterKey>> {
    let kek = derive_kek(password, &kf.kdf)?;
    let cipher = XChaCha20Poly1305::new(&(*kek).into());
    let sealed = hex::decode(&kf.sealed_master)
        .map_err(|_| Error::corrupt("key file sealed_master is not hex"))?;
    let put_only = kf.is_put_only();
    let aad = if put_only { AAD_PUT_KEY } else { AAD_KEY };
    match open_with(&cipher, aad, &sealed) {
        None => Ok(None),
        Some(mut plain) => {
            let k = if put_only {
                MasterKey::from_put_key_bytes(&plain)
            } else {
                MasterKey::from_bytes(&plain)
            };
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
    fn split_keys_seal_content_toward_the_data_key() {
        let mk = key();
        let pk = hex::encode(mk.data_public_key().unwrap());
        let full = mk.clone().for_config(Some(&pk)).unwrap();
        let put = MasterKey::from_put_key_bytes(&full.put_key_bytes().unwrap())
            .unwrap()
            .for_config(Some(&pk))
            .unwrap();
        assert_eq!(put.role(), KeyRole::PutOnly);
        let id = full.blob_id(b"chunk");
        assert_eq!(put.blob_id(b"chunk"), id);
        // A put-only writer's blob: the full key opens it, so does the same
        // session; another put-only session does not.
        let s = put.seal_blob(BlobKind::Data, &id, b"chunk");
        assert_eq!(s.len(), 5 + SPLIT_ENVELOPE_OVERHEAD);
        assert_eq!(full.open_blob(BlobKind::Data, &id, &s).unwrap(), b"chunk");
        assert_eq!(put.open_blob(BlobKind::Data, &id, &s).unwrap(), b"chunk");
        let other = MasterKey::from_put_key_bytes(&full.put_key_bytes().unwrap()).unwrap();
        let e = other.open_blob(BlobKind::Data, &id, &s).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PutOnly);
        // The full key's own content, and the index class under the index key.
        let snap = full.seal(AAD_SNAPSHOT, b"snapshot");
        assert_eq!(
            put.open(AAD_SNAPSHOT, &snap, "s").unwrap_err().kind(),
            ErrorKind::PutOnly
        );
        let idx = put.seal(AAD_INDEX, b"index");
        assert_eq!(full.open(AAD_INDEX, &idx, "i").unwrap(), b"index");
        assert!(mk.open(AAD_INDEX, &idx, "i").is_err(), "single-key reader");
        // A low-order ephemeral key (all zero) is rejected, not derived.
        let mut forged = s.clone();
        forged[..32].fill(0);
        let e = full.open_blob(BlobKind::Data, &id, &forged).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        // A changed data public key in `config` is refused by both.
        let wrong = hex::encode([9u8; 32]);
        assert!(mk.clone().for_config(Some(&wrong)).is_err());
        assert!(put.clone().for_config(Some(&wrong)).is_err());
        assert_eq!(
            put.clone().for_config(None).unwrap_err().kind(),
            ErrorKind::Usage
        );
        assert!(put.to_bytes().is_err());
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

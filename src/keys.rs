//! Key management: several passwords for one repository, and the printable
//! recovery code (format-spec §16).
//!
//! Every key file `keys/<id>` wraps the same master key under a different
//! password ([`crypto::wrap_master_key`]). A recovery code carries the master
//! key itself, so a repository whose passwords are all lost can be given a
//! new key file from it.

use crate::crypto::{self, MasterKey, AAD_INDEX, AAD_SNAPSHOT, MASTER_KEY_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::format::config::Config;
use crate::format::keyfile::KeyFile;
use crate::format::KeyId;
use crate::repo::{hostname, now_rfc3339, username};
use crate::store::{ObjectKind, Store};
use bytes::Bytes;
use zeroize::Zeroizing;

/// Version byte of the recovery code payload.
pub const RECOVERY_VERSION: u8 = 1;
/// Bytes of the repository id carried in a recovery code (a prefix of the
/// 32-byte id in `config`).
pub const RECOVERY_REPO_ID_LEN: usize = 8;
/// Checksum length of a recovery code, bytes.
pub const RECOVERY_CHECK_LEN: usize = 10;
/// Total decoded length of a recovery code, bytes:
/// version 1 + repository id 8 + master key 96 + checksum 10 = 115
/// (a multiple of 5, so the base32 text has no partial last character).
pub const RECOVERY_LEN: usize = 1 + RECOVERY_REPO_ID_LEN + MASTER_KEY_LEN + RECOVERY_CHECK_LEN;
/// BLAKE3 `derive_key` context of the recovery code checksum.
pub const RECOVERY_CONTEXT: &str = "snap 2026-01 recovery code v1 checksum";
/// Characters per group in the printed recovery code.
const GROUP: usize = 4;

/// One key file as listed.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// Object name under `keys/` (64 hex digits).
    pub id: String,
    /// The parsed key file, or `None` if it could not be parsed.
    pub file: Option<KeyFile>,
}

/// Lists every key file in the repository, sorted by creation time then id.
/// Unparsable key files are listed with `file: None`.
pub fn list_keys(store: &Store) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for l in store.list(ObjectKind::Key.list_prefix())? {
        // An oversized or vanished key file is listed as unparsable.
        let file = match store.get(&ObjectKind::Key.key(&l.name)) {
            Ok(raw) => KeyFile::decode(&raw).ok(),
            Err(e) if e.kind().is_damaged_data() || e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        out.push(KeyInfo { id: l.name, file });
    }
    out.sort_by(|a, b| {
        let ca = a.file.as_ref().map(|f| f.created.as_str()).unwrap_or("");
        let cb = b.file.as_ref().map(|f| f.created.as_str()).unwrap_or("");
        ca.cmp(cb).then_with(|| a.id.cmp(&b.id))
    });
    Ok(out)
}

/// Wraps `master` under `password` and stores it as a new key file; returns
/// its id. [`ErrorKind::Usage`] for an empty password.
pub fn add_key(store: &Store, master: &MasterKey, password: &[u8]) -> Result<String> {
    if password.is_empty() {
        return Err(Error::usage("empty password"));
    }
    let kf = crypto::wrap_master_key(master, password, now_rfc3339(), hostname(), username())?;
    let bytes = kf.encode();
    let id = KeyId::of_object(&bytes).to_hex();
    store.put_new(&ObjectKind::Key.key(&id), Bytes::from(bytes))?;
    Ok(id)
}

/// Resolves a full key id or a unique hex prefix among `keys`.
pub fn resolve_key<'a>(keys: &'a [KeyInfo], spec: &str) -> Result<&'a KeyInfo> {
    let spec_l = spec.to_ascii_lowercase();
    let m: Vec<&KeyInfo> = keys
        .iter()
        .filter(|k| !spec_l.is_empty() && k.id.starts_with(&spec_l))
        .collect();
    match m[..] {
        [one] => Ok(one),
        [] => Err(Error::new(
            ErrorKind::NotFound,
            format!("no key file matches {spec:?}; see `snap key list`"),
        )),
        _ => Err(Error::usage(format!(
            "{} key files match {spec:?}; give more digits",
            m.len()
        ))),
    }
}

/// Deletes key file `id` (full id). Refuses the key in use (`current`) and
/// the last key file, with [`ErrorKind::Usage`]. Outside the crate only
/// through [`crate::session::Session::remove_key`] (an exclusive lease).
pub(crate) fn remove_key(store: &Store, id: &str, current: &str) -> Result<()> {
    let keys = list_keys(store)?;
    let k = resolve_key(&keys, id)?;
    if keys.len() <= 1 {
        return Err(Error::usage(
            "refusing to remove the last key file: the repository could never be opened again",
        ));
    }
    if k.id == current {
        return Err(Error::usage(format!(
            "key {} is the one in use; open the repository with another password to remove it",
            &k.id[..k.id.len().min(8)]
        )));
    }
    store.delete(&ObjectKind::Key.key(&k.id))
}

/// The recovery code checksum of `body` (version, repository id prefix and
/// master key). The hasher state saw the master key, so it is zeroized.
fn checksum(body: &[u8]) -> [u8; RECOVERY_CHECK_LEN] {
    use zeroize::Zeroize;
    let mut h = blake3::Hasher::new_derive_key(RECOVERY_CONTEXT);
    h.update(body);
    let mut out = [0u8; RECOVERY_CHECK_LEN];
    let mut xof = h.finalize_xof();
    xof.fill(&mut out);
    xof.zeroize();
    h.zeroize();
    out
}

/// The printable recovery code of `master` for repository `config`:
/// base32 (RFC 4648, no padding) of
/// `version || repo_id[..8] || master[96] || checksum[10]`, in groups of four
/// characters joined by `-`. The result holds the master key: zeroized on drop.
pub fn recovery_code(config: &Config, master: &MasterKey) -> Result<Zeroizing<String>> {
    let rid = hex::decode(&config.id)
        .ok()
        .filter(|r| r.len() >= RECOVERY_REPO_ID_LEN)
        .ok_or_else(|| Error::corrupt("config id is not 32 bytes of hex"))?;
    let mut body = Zeroizing::new(Vec::with_capacity(RECOVERY_LEN));
    body.push(RECOVERY_VERSION);
    body.extend_from_slice(&rid[..RECOVERY_REPO_ID_LEN]);
    body.extend_from_slice(&master.to_bytes());
    let check = checksum(&body);
    body.extend_from_slice(&check);
    let b32 = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&body));
    let mut out = Zeroizing::new(String::with_capacity(b32.len() + b32.len() / GROUP));
    for (i, c) in b32.chars().enumerate() {
        if i > 0 && i % GROUP == 0 {
            out.push('-');
        }
        out.push(c);
    }
    Ok(out)
}

/// Parses a recovery code: ignores whitespace and `-`, accepts lower case,
/// verifies the checksum and that the code belongs to repository `config`
/// (its id prefix, and its master key matches `config.key_check`).
/// Errors ([`ErrorKind::Usage`]) name which check failed.
pub fn parse_recovery_code(config: &Config, code: &str) -> Result<MasterKey> {
    let mut clean = Zeroizing::new(String::with_capacity(code.len()));
    for c in code.chars() {
        if c.is_whitespace() || c == '-' {
            continue;
        }
        clean.push(c.to_ascii_uppercase());
    }
    let expect = data_encoding::BASE32_NOPAD.encode_len(RECOVERY_LEN);
    if clean.len() != expect {
        return Err(Error::usage(format!(
            "recovery code has {} characters, expected {expect}; check for missing or extra characters",
            clean.len()
        )));
    }
    let mut body = Zeroizing::new(vec![0u8; RECOVERY_LEN]);
    data_encoding::BASE32_NOPAD
        .decode_mut(clean.as_bytes(), &mut body)
        .map_err(|e| {
            Error::usage(format!(
                "recovery code is not valid base32 at character {}; check it for typos",
                e.error.position + 1
            ))
        })?;
    let (payload, check) = body.split_at(RECOVERY_LEN - RECOVERY_CHECK_LEN);
    if checksum(payload) != check {
        return Err(Error::usage(
            "recovery code checksum does not match: a character is wrong; check it for typos",
        ));
    }
    if payload[0] != RECOVERY_VERSION {
        return Err(Error::usage(format!(
            "recovery code version {} is not supported",
            payload[0]
        )));
    }
    let rid = &payload[1..1 + RECOVERY_REPO_ID_LEN];
    if !config.id.starts_with(&hex::encode(rid)) {
        return Err(Error::usage(format!(
            "recovery code belongs to repository {}, not {}",
            hex::encode(rid),
            &config.id[..config.id.len().min(16)]
        )));
    }
    let master = MasterKey::from_bytes(&payload[1 + RECOVERY_REPO_ID_LEN..])
        .ok_or_else(|| Error::corrupt("recovery code holds a master key of the wrong length"))?;
    // Its master key must be the one `config.key_check` names (format-spec §4).
    if !crypto::config_key_matches(&master, config) {
        return Err(Error::usage(
            "recovery code does not hold this repository's master key (`config` key_check differs)",
        ));
    }
    Ok(master)
}

/// Checks that `master` opens this repository's data: it must authenticate
/// one snapshot or index object. Returns `Ok(false)` if the repository holds
/// neither yet (nothing to check against).
pub fn verify_master(store: &Store, master: &MasterKey) -> Result<bool> {
    for (kind, aad) in [
        (ObjectKind::Snapshot, AAD_SNAPSHOT),
        (ObjectKind::Index, AAD_INDEX),
    ] {
        if let Some(l) = store.list(kind.list_prefix())?.into_iter().next() {
            let raw = store.get(&kind.key(&l.name))?;
            return master
                .open(aad, &raw, &kind.key(&l.name))
                .map(|_| true)
                .map_err(|_| {
                    Error::usage(
                        "the recovery code's master key does not open this repository's data",
                    )
                });
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            version: crate::format::FORMAT_VERSION,
            id: "ab".repeat(32),
            chunking: crate::format::config::Chunking {
                files: Config::FILES,
                streams: Config::STREAMS,
            },
            pack_size: 16 << 20,
            open_packs: 4,
            compression_level: 3,
            compression: None,
            object_lock: None,
            key_check: None,
        }
    }

    #[test]
    fn roundtrip_and_every_single_substitution_is_rejected() {
        let cfg = config();
        let mk = MasterKey::generate();
        let code = recovery_code(&cfg, &mk).unwrap();
        assert_eq!(code.len(), 184 + 45);
        let back = parse_recovery_code(&cfg, &code).unwrap();
        assert_eq!(*back.to_bytes(), *mk.to_bytes());
        let clean: Vec<u8> = code.bytes().filter(|&b| b != b'-').collect();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        for pos in 0..clean.len() {
            for &c in alphabet {
                if c == clean[pos] {
                    continue;
                }
                let mut bad = clean.clone();
                bad[pos] = c;
                let s = String::from_utf8(bad).unwrap();
                assert!(
                    parse_recovery_code(&cfg, &s).is_err(),
                    "substitution at {pos} accepted"
                );
            }
        }
    }

    #[test]
    fn wrong_repository_and_length_are_named() {
        let cfg = config();
        let code = recovery_code(&cfg, &MasterKey::generate()).unwrap();
        let mut other = config();
        other.id = "cd".repeat(32);
        let e = parse_recovery_code(&other, &code).unwrap_err();
        assert!(
            e.to_string().contains("belongs to repository abababab"),
            "{e}"
        );
        let e = parse_recovery_code(&cfg, &code[..code.len() - 1]).unwrap_err();
        assert!(e.to_string().contains("characters"), "{e}");
    }
}

//! Lease (`locks/<id>`) and prune-mark (`marks/<id>`) plaintexts: JSON
//! objects, sealed by the caller (format-spec §9, §10).
//! Pure: no I/O, no crypto; the protocol lives in [`crate::lease`].

use serde::{Deserialize, Serialize};

/// What a lease holder does; decides who conflicts with whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// `snap backup` (shared).
    Backup,
    /// `snap prune` / `forget --prune` (one at a time).
    Prune,
    /// `snap copy` (shared).
    Copy,
    /// `snap check` (shared).
    Check,
    /// Repair or key removal (exclusive: nobody else may run).
    Exclusive,
}

/// A lease object's plaintext (JSON, sealed with `AAD_LOCK`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Format version (1).
    pub version: u32,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// Operation held for.
    pub operation: Operation,
    /// Free-form detail ("repair index", …).
    #[serde(default)]
    pub detail: String,
    /// When the operation started (UTC, RFC 3339).
    pub start: String,
    /// Last refresh (UTC, RFC 3339).
    pub refreshed: String,
    /// Valid until (UTC, RFC 3339); dead once more than `lease::CLOCK_SKEW` past.
    pub expires: String,
}

/// A prune mark's plaintext (JSON, sealed with `AAD_MARK`), stored at
/// `marks/<random 64 hex>`.
///
/// Written in two steps by prune: first with `blockers: None` (pending),
/// then, after listing `locks/`, overwritten with the names of every lease
/// that was live at that moment. The packs may be deleted by a later prune
/// once `time + grace` has passed, none of the blockers is still live, and a
/// fresh reference check finds them unneeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Format version (1).
    pub version: u32,
    /// When the mark was written (UTC, RFC 3339).
    pub time: String,
    /// Pack ids (hex) pending deletion.
    pub packs: Vec<String>,
    /// Lease names live after the mark became visible; `None` while pending.
    pub blockers: Option<Vec<String>>,
}

/// The JSON bytes of `lease`.
pub fn encode_lease(lease: &Lease) -> Vec<u8> {
    serde_json::to_vec(lease).unwrap_or_default()
}

/// Decodes a lease's JSON; a `version` other than 1 is an error
/// (format-spec §1, §9). Errors: the parser's, for the caller to wrap.
pub fn decode_lease(bytes: &[u8]) -> Result<Lease, serde_json::Error> {
    let l: Lease = serde_json::from_slice(bytes)?;
    check_version("lease", l.version)?;
    Ok(l)
}

/// Objects of another format version are malformed (format-spec §1).
fn check_version(what: &str, v: u32) -> Result<(), serde_json::Error> {
    if v == 1 {
        Ok(())
    } else {
        Err(serde::de::Error::custom(format!(
            "unsupported {what} version {v}"
        )))
    }
}

/// The JSON bytes of `mark`.
pub fn encode_mark(mark: &Mark) -> Vec<u8> {
    serde_json::to_vec(mark).unwrap_or_default()
}

/// Decodes a mark's JSON; a `version` other than 1 is an error
/// (format-spec §1, §10). Errors: the parser's, for the caller to wrap.
pub fn decode_mark(bytes: &[u8]) -> Result<Mark, serde_json::Error> {
    let m: Mark = serde_json::from_slice(bytes)?;
    check_version("mark", m.version)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_and_mark_round_trip_and_reject_garbage() {
        let lease = Lease {
            version: 1,
            host: "h".into(),
            pid: 7,
            operation: Operation::Prune,
            detail: String::new(),
            start: "2026-12-05T00:00:00.000Z".into(),
            refreshed: "2026-12-05T00:00:00.000Z".into(),
            expires: "2026-12-05T00:05:00.000Z".into(),
        };
        let bytes = encode_lease(&lease);
        assert!(String::from_utf8_lossy(&bytes).contains("\"operation\":\"prune\""));
        assert_eq!(decode_lease(&bytes).unwrap(), lease);
        let mark = Mark {
            version: 1,
            time: lease.start.clone(),
            packs: vec!["00".repeat(32)],
            blockers: None,
        };
        assert_eq!(decode_mark(&encode_mark(&mark)).unwrap(), mark);
        assert!(decode_lease(b"{\"version\":1}").is_err());
        assert!(decode_mark(b"\xff").is_err());
    }

    #[test]
    fn leases_and_marks_of_another_version_are_rejected() {
        let lease = br#"{"version":1,"host":"h","pid":1,"operation":"backup","detail":"","start":"2026-01-01T00:00:00.000Z","refreshed":"2026-01-01T00:00:00.000Z","expires":"2026-01-01T00:05:00.000Z"}"#;
        assert_eq!(decode_lease(lease).unwrap().operation, Operation::Backup);
        let lease2 = String::from_utf8_lossy(lease).replacen("\"version\":1", "\"version\":2", 1);
        let e = decode_lease(lease2.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("lease version 2"), "{e}");

        let mark = br#"{"version":1,"time":"2026-01-01T00:00:00.000Z","packs":[],"blockers":null}"#;
        assert!(decode_mark(mark).unwrap().blockers.is_none());
        let mark2 = String::from_utf8_lossy(mark).replacen("\"version\":1", "\"version\":3", 1);
        let e = decode_mark(mark2.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("mark version 3"), "{e}");
    }
}

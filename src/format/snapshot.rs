//! Snapshot objects (format-spec §8): JSON, sealed.

use super::{BlobId, SnapshotId};
use serde::{Deserialize, Serialize};

/// Totals of one backup, stored in its snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Files with no entry in the parent snapshot.
    pub files_new: u64,
    /// Files whose metadata differed from the parent, so were read again.
    pub files_changed: u64,
    /// Files reused from the parent without reading.
    pub files_unchanged: u64,
    /// Directories stored.
    pub dirs: u64,
    /// Content bytes read from the sources.
    pub bytes_read: u64,
    /// Logical size of all file and stream content in the snapshot, bytes.
    pub total_bytes: u64,
    /// Blobs added to the repository by this backup.
    pub blobs_added: u64,
    /// Bytes of new blobs before compression.
    pub bytes_added_raw: u64,
    /// Bytes added to the repository after dedup, compression and sealing
    /// (packs and index objects).
    pub bytes_added_stored: u64,
    /// Source entries that could not be read and were skipped.
    pub errors: u64,
    /// Wall time of the backup in seconds.
    pub seconds: f64,
}

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version of this object (1).
    pub version: u32,
    /// Start of the backup, UTC, RFC 3339 with milliseconds.
    pub time: String,
    /// Host name the backup ran on.
    pub hostname: String,
    /// User name the backup ran as.
    pub username: String,
    /// Absolute source paths, sorted (empty for a pure stream).
    pub paths: Vec<String>,
    /// Stream names stored under the reserved `@streams` folder.
    #[serde(default)]
    pub streams: Vec<String>,
    /// Free-form tags, sorted.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Snapshot this one was compared against for unchanged files.
    pub parent: Option<SnapshotId>,
    /// Root tree.
    pub tree: BlobId,
    /// Optional description.
    #[serde(default)]
    pub description: Option<String>,
    /// Sources that produced streams (command lines), for the record.
    #[serde(default)]
    pub sources: Vec<SourceInfo>,
    /// True when a source failed and the snapshot was recorded anyway
    /// (`--allow-partial`); it then lacks the streams in `failed_sources`.
    /// Omitted from the JSON when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// Sources that failed, each with `details["error"]` holding the
    /// one-line error (exit code and stderr tail). Omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_sources: Vec<SourceInfo>,
    /// Totals.
    pub summary: Summary,
    /// For a snapshot made by `snap copy`: the id of the snapshot it was
    /// copied from in the source repository (or that snapshot's own
    /// `original`, so copies of copies name the first one). Absent in
    /// snapshots made by `backup`. Lets a repeated copy skip snapshots that
    /// already arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SnapshotId>,
}

/// A stream source recorded in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Stream name under `@streams`.
    pub name: String,
    /// Source kind: "stdin", "command", "pg", "mongo".
    pub kind: String,
    /// The command line run, if any.
    #[serde(default)]
    pub command: Option<String>,
    /// Extra facts (database name, server version, dump format …).
    #[serde(default)]
    pub details: std::collections::BTreeMap<String, String>,
}

impl Snapshot {
    /// Serialises to the JSON plaintext (compact, fields in declaration order).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses the JSON plaintext; a `version` other than 1 is malformed
    /// (format-spec §1, §8.1).
    pub fn decode(buf: &[u8]) -> Result<Snapshot, super::DecodeError> {
        let s: Snapshot = serde_json::from_slice(buf).map_err(|e| super::DecodeError {
            what: "snapshot",
            offset: e.column(),
            detail: e.to_string(),
        })?;
        if s.version != 1 {
            return Err(super::DecodeError {
                what: "snapshot",
                offset: 0,
                detail: format!("unsupported snapshot version {}", s.version),
            });
        }
        Ok(s)
    }

    /// Start time as Unix milliseconds (0 if unparsable).
    pub fn time_ms(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.time)
            .map(|t| t.timestamp_millis())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..12).prop_map(|v| v.into_iter().collect())
    }

    fn snapshot() -> impl Strategy<Value = Snapshot> {
        (
            (
                text(),
                text(),
                text(),
                proptest::collection::vec(text(), 0..3),
            ),
            (
                proptest::collection::vec(text(), 0..3),
                proptest::collection::vec(text(), 0..3),
            ),
            (
                proptest::option::of(any::<[u8; 32]>()),
                any::<[u8; 32]>(),
                proptest::option::of(text()),
            ),
            proptest::collection::vec(
                (
                    text(),
                    text(),
                    proptest::option::of(text()),
                    proptest::collection::btree_map(text(), text(), 0..3),
                ),
                0..3,
            ),
            (proptest::array::uniform10(any::<u64>()), 0u64..10_000_000),
        )
            .prop_map(
                |(
                    (time, hostname, username, paths),
                    (streams, tags),
                    (parent, tree, description),
                    sources,
                    (n, ms),
                )| Snapshot {
                    version: 1,
                    time,
                    hostname,
                    username,
                    paths,
                    streams,
                    tags,
                    parent: parent.map(SnapshotId),
                    tree: BlobId(tree),
                    description,
                    original: parent.map(|p| SnapshotId(p.map(|b| b ^ 0x5a))),
                    partial: n[9] % 2 == 1,
                    failed_sources: Vec::new(),
                    sources: sources
                        .into_iter()
                        .map(|(name, kind, command, details)| SourceInfo {
                            name,
                            kind,
                            command,
                            details,
                        })
                        .collect(),
                    summary: Summary {
                        files_new: n[0],
                        files_changed: n[1],
                        files_unchanged: n[2],
                        dirs: n[3],
                        bytes_read: n[4],
                        total_bytes: n[5],
                        blobs_added: n[6],
                        bytes_added_raw: n[7],
                        bytes_added_stored: n[8],
                        errors: n[9],
                        // Writers round to milliseconds.
                        seconds: ms as f64 / 1000.0,
                    },
                },
            )
    }

    #[test]
    fn unknown_version_is_rejected() {
        let s = Snapshot {
            version: 1,
            time: "2026-01-02T03:04:05.678Z".into(),
            hostname: "h".into(),
            username: "u".into(),
            paths: vec!["/srv".into()],
            streams: Vec::new(),
            tags: Vec::new(),
            parent: None,
            tree: BlobId([7; 32]),
            description: None,
            sources: Vec::new(),
            partial: false,
            failed_sources: Vec::new(),
            summary: Summary::default(),
            original: None,
        };
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        let v2 =
            String::from_utf8(s.encode())
                .unwrap()
                .replacen("\"version\":1", "\"version\":2", 1);
        let e = Snapshot::decode(v2.as_bytes()).unwrap_err();
        assert!(e.detail.contains("version 2"), "{e}");
    }

    proptest! {
        #[test]
        fn roundtrip(s in snapshot()) {
            let enc = s.encode();
            prop_assert_eq!(Snapshot::decode(&enc).unwrap(), s);
        }

        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Snapshot::decode(&buf);
        }

        #[test]
        fn decode_survives_mutation(s in snapshot(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut enc = s.encode();
            let i = pos % enc.len();
            enc[i] = byte;
            let _ = Snapshot::decode(&enc);
        }
    }
}

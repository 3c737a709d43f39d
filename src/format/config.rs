//! The repository `config` object (format-spec §4): plaintext JSON.

use serde::{Deserialize, Serialize};

/// FastCDC size bounds of one chunking profile, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSizes {
    /// Minimum chunk size, bytes (64 ..= 1 MiB, even).
    pub min: u32,
    /// Requested average chunk size, bytes (a power of two, 256 ..= 4 MiB).
    pub avg: u32,
    /// Maximum chunk size, bytes (1 KiB ..= 16 MiB, even).
    pub max: u32,
}

impl ChunkSizes {
    /// Checks the bounds FastCDC 2020 requires.
    pub fn validate(&self) -> Result<(), String> {
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        if !(64..=1 << 20).contains(&min)
            || !(256..=4 << 20).contains(&avg)
            || !(1024..=16 << 20).contains(&max)
            || !avg.is_power_of_two()
            || min % 2 != 0
            || max % 2 != 0
            || !(min < avg && avg < max)
        {
            return Err(format!(
                "invalid chunk sizes min {min} avg {avg} max {max}: need 64 <= min < avg < max <= 16 MiB, avg a power of two"
            ));
        }
        Ok(())
    }
}

/// Named chunking profiles (format-spec §15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunking {
    /// Profile for files in trees.
    pub files: ChunkSizes,
    /// Profile for streams (dumps, stdin, commands).
    pub streams: ChunkSizes,
}

/// The `config` field `compression` (format-spec §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Per blob, the writer picks raw, a fast zstd level or
    /// `compression_level` from a cheap estimate of the blob and from where
    /// its bottleneck is (CPU or uploads); see `compress::Policy`.
    Auto,
}

/// S3 Object Lock retention mode (format-spec §25.8): `governance` can be
/// lifted by a principal with `s3:BypassGovernanceRetention`, `compliance`
/// by nobody (not even the account root) until the date passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// `GOVERNANCE` on the wire.
    Governance,
    /// `COMPLIANCE` on the wire.
    Compliance,
}

impl LockMode {
    /// The value of `x-amz-object-lock-mode` / `<Mode>`.
    pub fn wire(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// Parses `GOVERNANCE` / `COMPLIANCE` (any case).
    pub fn from_wire(s: &str) -> Option<LockMode> {
        match s.to_ascii_lowercase().as_str() {
            "governance" => Some(LockMode::Governance),
            "compliance" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

/// The `config` field `object_lock` (format-spec §4, §25.8): every object
/// snap writes (except leases and marks) carries `mode` and a retain-until
/// date of the write time plus `period` seconds; prune extends it on
/// objects still referenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    /// Retention mode.
    pub mode: LockMode,
    /// Retention period, seconds (1 ..= 100 years).
    pub period: u64,
}

impl ObjectLock {
    /// Longest period accepted, seconds (100 years of 365 days; S3 allows
    /// retain-until dates up to year 9999, buckets' own defaults up to 100
    /// years).
    pub const MAX_PERIOD: u64 = 100 * 365 * 86_400;

    /// Parses `PERIOD[,governance|compliance]` (`30d`, `5s,compliance`;
    /// humantime durations, whole seconds; mode governance by default).
    /// Errors: a one-line message naming what is wrong.
    pub fn parse(s: &str) -> Result<ObjectLock, String> {
        let (period, mode) = match s.split_once(',') {
            Some((p, m)) => (p.trim(), m.trim()),
            None => (s.trim(), "governance"),
        };
        let mode = LockMode::from_wire(mode).ok_or_else(|| {
            format!("object lock mode {mode:?}: expected governance or compliance")
        })?;
        let d = humantime::parse_duration(period)
            .map_err(|e| format!("object lock period {period:?}: {e}"))?;
        let lock = ObjectLock {
            mode,
            period: d.as_secs(),
        };
        lock.validate()?;
        Ok(lock)
    }

    /// Checks `period` is 1 s ..= [`ObjectLock::MAX_PERIOD`].
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=Self::MAX_PERIOD).contains(&self.period) {
            return Err(format!(
                "object lock period {} s is outside 1 s ..= 100 years",
                self.period
            ));
        }
        Ok(())
    }
}

/// The `config` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Repository format version (1).
    pub version: u32,
    /// Random repository id, 64 hex digits; names the local catalog.
    pub id: String,
    /// Chunking profiles.
    pub chunking: Chunking,
    /// Target pack size, bytes (default 16 MiB).
    pub pack_size: u32,
    /// Number of packs filled at once (blobs are spread over them by id).
    pub open_packs: u32,
    /// zstd level for blobs (default 3); with [`Compression::Auto`] the
    /// level used when uploads are the bottleneck.
    pub compression_level: i32,
    /// How writers choose each blob's compression (format-spec §4, §12):
    /// `Some(Compression::Auto)` (the default for new repositories), or
    /// absent: every blob at `compression_level` (repositories created
    /// before `auto` existed, and `snap init --compression N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// S3 Object Lock for every object snap writes except leases and marks
    /// (format-spec §4, §25.8); absent: objects are written without a
    /// retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
    /// MAC of this config under the master key (format-spec §4), 64 hex
    /// digits; absent in repositories created before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_check: Option<String>,
}

impl Config {
    /// Default chunking for files: min 64 KiB, avg 256 KiB, max 2 MiB.
    pub const FILES: ChunkSizes = ChunkSizes {
        min: 64 << 10,
        avg: 256 << 10,
        max: 2 << 20,
    };
    /// Default chunking for streams: min 16 KiB, avg 64 KiB, max 512 KiB.
    /// Small enough that a nightly dump's unchanged stretches deduplicate,
    /// large enough to compress well; changed chunks are stored as delta
    /// blobs against the previous dump (format-spec §13). Measured on a 678 MB
    /// dump of real text: 4/16/128 KiB stored 80 MiB and the next night
    /// added 3.5 MiB; 16/64/512 KiB stored 56 MiB and added 2.6 MiB.
    pub const STREAMS: ChunkSizes = ChunkSizes {
        min: 16 << 10,
        avg: 64 << 10,
        max: 512 << 10,
    };

    /// JSON bytes (pretty, trailing newline).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Largest `pack_size` a reader accepts, bytes (1 GiB: what `init`
    /// allowed before the writer bound below existed).
    pub const MAX_CONFIG_PACK_SIZE: u32 = 1 << 30;
    /// Largest `open_packs` a reader accepts.
    pub const MAX_CONFIG_OPEN_PACKS: u32 = 64;
    /// Largest pack a writer fills, bytes (128 MiB); `init` refuses more.
    pub const MAX_PACK_SIZE: u32 = 128 << 20;
    /// Largest `open_packs × pack_size` a writer holds in memory, bytes
    /// (256 MiB).
    pub const MAX_OPEN_PACK_BYTES: u64 = 256 << 20;

    /// What a writer uses of `pack_size` and `open_packs`: (pack size in
    /// bytes, packs filled at once), clamped to [`Config::MAX_PACK_SIZE`]
    /// and to at most [`Config::MAX_OPEN_PACK_BYTES`] held open (at least
    /// one pack), so that a config within the reader's ranges — written by
    /// an older `init`, or altered in a repository without `key_check` —
    /// cannot raise a writer's memory (format-spec §4).
    pub fn writer_packs(&self) -> (usize, usize) {
        let size = self.pack_size.clamp(1 << 20, Self::MAX_PACK_SIZE) as u64;
        let open = (self.open_packs.max(1) as u64).min((Self::MAX_OPEN_PACK_BYTES / size).max(1));
        (size as usize, open as usize)
    }

    /// Parses and validates (format-spec §4); see [`Config::validate`].
    pub fn decode(buf: &[u8]) -> Result<Config, super::DecodeError> {
        let c: Config = serde_json::from_slice(buf).map_err(|e| super::DecodeError {
            what: "config",
            offset: 0,
            detail: e.to_string(),
        })?;
        c.validate().map_err(|detail| super::DecodeError {
            what: "config",
            offset: 0,
            detail,
        })?;
        Ok(c)
    }

    /// Checks every field against format-spec §4: version 1, `id` of 64
    /// lower-case hex digits, chunk sizes ([`ChunkSizes::validate`]),
    /// `pack_size` 1 MiB ..= 1 GiB, `open_packs` 1 ..= 64 (writers clamp
    /// both, [`Config::writer_packs`]), zstd level −7 ..= 22, `key_check`
    /// absent or 64 lower-case hex digits. Returns a one-line message naming
    /// the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        let c = self;
        if c.version != super::FORMAT_VERSION {
            return Err(format!("unsupported repository version {}", c.version));
        }
        let hex64 =
            |s: &str| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        // The id names a local cache directory: never let a hostile config
        // steer that path (`../..`).
        if !hex64(&c.id) {
            return Err("field id: repository id is not 64 lower-case hex digits".into());
        }
        c.chunking
            .files
            .validate()
            .map_err(|e| format!("field chunking.files: {e}"))?;
        c.chunking
            .streams
            .validate()
            .map_err(|e| format!("field chunking.streams: {e}"))?;
        if !(1 << 20..=Self::MAX_CONFIG_PACK_SIZE).contains(&c.pack_size) {
            return Err(format!(
                "field pack_size: {} bytes is outside 1 MiB ..= 1 GiB",
                c.pack_size
            ));
        }
        if !(1..=Self::MAX_CONFIG_OPEN_PACKS).contains(&c.open_packs) {
            return Err(format!(
                "field open_packs: {} is outside 1 ..= {}",
                c.open_packs,
                Self::MAX_CONFIG_OPEN_PACKS
            ));
        }
        if !(-7..=22).contains(&c.compression_level) {
            return Err(format!(
                "field compression_level: {} is outside -7 ..= 22",
                c.compression_level
            ));
        }
        if let Some(l) = &c.object_lock {
            l.validate()
                .map_err(|e| format!("field object_lock: {e}"))?;
        }
        if c.key_check.as_deref().is_some_and(|k| !hex64(k)) {
            return Err("field key_check: not 64 lower-case hex digits".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use proptest::prelude::*;

    fn config() -> Config {
        Config {
            version: 1,
            id: "ab".repeat(32),
            chunking: Chunking {
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
    fn writers_clamp_pack_size_and_open_packs() {
        let mut c = config();
        c.pack_size = 1 << 30;
        c.open_packs = 64;
        assert_eq!(c.writer_packs(), (128 << 20, 2));
        c.pack_size = 16 << 20;
        assert_eq!(c.writer_packs(), (16 << 20, 16));
        c.open_packs = 2;
        assert_eq!(c.writer_packs(), (16 << 20, 2));
        c.pack_size = 200 << 20;
        c.open_packs = 1;
        assert_eq!(c.writer_packs(), (128 << 20, 1));
    }

    #[test]
    fn compression_auto_roundtrips_and_unknown_values_are_rejected() {
        let mut c = config();
        c.compression = Some(Compression::Auto);
        let text = String::from_utf8(c.encode()).unwrap();
        assert!(
            text.contains("\"compression_level\": 3,\n  \"compression\": \"auto\"\n"),
            "{text}"
        );
        assert_eq!(Config::decode(text.as_bytes()).unwrap(), c);
        // A numeric-level config (older repositories) has no field.
        let old = config();
        assert!(!String::from_utf8(old.encode())
            .unwrap()
            .contains("\"compression\""));
        assert_eq!(Config::decode(&old.encode()).unwrap().compression, None);
        let bad = text.replace("\"auto\"", "\"fast\"");
        let e = Config::decode(bad.as_bytes()).unwrap_err();
        assert!(e.detail.contains("fast"), "{}", e.detail);
    }

    #[test]
    fn object_lock_parses_roundtrips_and_is_bounded() {
        let l = ObjectLock::parse("30d").unwrap();
        assert_eq!((l.mode, l.period), (LockMode::Governance, 30 * 86_400));
        let l = ObjectLock::parse("5s, Compliance").unwrap();
        assert_eq!((l.mode, l.period), (LockMode::Compliance, 5));
        for bad in ["0s", "30d,strict", "forever", "101years", ""] {
            assert!(ObjectLock::parse(bad).is_err(), "{bad}");
        }
        let mut c = config();
        c.object_lock = Some(l);
        assert_eq!(Config::decode(&c.encode()).unwrap(), c);
        let text = String::from_utf8(c.encode()).unwrap();
        for (from, to) in [("\"period\": 5", "\"period\": 0"), ("compliance", "legal")] {
            let bad = text.replace(from, to);
            assert!(Config::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn roundtrip_and_bounds() {
        let c = config();
        assert_eq!(Config::decode(&c.encode()).unwrap(), c);
        let mut bad = c.clone();
        bad.chunking.streams.avg = 3000;
        assert!(Config::decode(&bad.encode()).is_err());
        let mut bad = c.clone();
        bad.version = 2;
        assert!(Config::decode(&bad.encode()).is_err());
        let mut bad = c.clone();
        bad.open_packs = 0;
        assert!(Config::decode(&bad.encode()).is_err());
        for id in [
            "../../../tmp/x".to_string(),
            "AB".repeat(32),
            "ab".repeat(31),
        ] {
            let mut bad = c.clone();
            bad.id = id;
            assert!(Config::decode(&bad.encode()).is_err());
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Config::decode(&buf);
            let _ = crate::format::keyfile::KeyFile::decode(&buf);
        }

        #[test]
        fn sizes_validate_without_panic(min in any::<u32>(), avg in any::<u32>(), max in any::<u32>()) {
            let s = ChunkSizes { min, avg, max };
            if s.validate().is_ok() {
                // Anything accepted is usable by the chunker.
                let c = crate::write::chunker::Chunker::new(&[0; 32], s);
                prop_assert!(c.next_cut(&[1u8; 100]) >= 1);
            }
        }
    }
}

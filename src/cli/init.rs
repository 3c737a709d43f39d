//! `snap init`: create a repository.

use super::{cache_dir, from_password, password, repo_location, store_options, Global};
use anyhow::Result;
use clap::Args;
use snap::format::config::{ChunkSizes, Chunking, ObjectLock};
use snap::repo::InitOptions;
use snap::{Error, Repository};

#[derive(Args, Debug)]
pub struct InitArgs {
    /// File chunk sizes in bytes as MIN,AVG,MAX (AVG a power of two) [default: 65536,262144,2097152].
    #[arg(long, value_parser = parse_sizes)]
    chunk_files: Option<ChunkSizes>,
    /// Stream chunk sizes in bytes as MIN,AVG,MAX [default: 16384,65536,524288].
    #[arg(long, value_parser = parse_sizes)]
    chunk_streams: Option<ChunkSizes>,
    /// Target pack size in MiB (1..=128).
    #[arg(long, default_value_t = 16)]
    pack_size_mib: u32,
    /// Blob compression: `auto` picks per blob between raw, zstd level 2 (when CPU is the bottleneck) and level 3 (when uploads are); a number N (-7..=22) stores every blob at zstd level N.
    #[arg(long, default_value = "auto", value_name = "auto|N", value_parser = parse_compression, allow_hyphen_values = true)]
    compression: CompressionArg,
    /// Take chunking sizes, chunker seed and blob-id key from this repository (the encryption key stays new), so `snap copy` between the two deduplicates exactly.
    #[arg(long, value_name = "REPO")]
    copy_chunker_params_from: Option<String>,
    /// Password file of the --copy-chunker-params-from repository (else SNAP_FROM_PASSWORD, else a prompt).
    #[arg(long, env = "SNAP_FROM_PASSWORD_FILE")]
    from_password_file: Option<std::path::PathBuf>,
    /// S3 Object Lock: write every object (but leases and prune marks) with this retention, PERIOD a duration (`30d`, `12h`, `90s`), mode governance (default) or compliance; recorded in the repository's config. The bucket must have Object Lock enabled (docs/offsite.md).
    #[arg(long, env = "SNAP_OBJECT_LOCK", value_name = "PERIOD[,governance|compliance]", value_parser = ObjectLock::parse)]
    object_lock: Option<ObjectLock>,
}

/// `--compression`: `auto`, or one zstd level for every blob.
#[derive(Debug, Clone, Copy)]
enum CompressionArg {
    Auto,
    Level(i32),
}

fn parse_compression(s: &str) -> std::result::Result<CompressionArg, String> {
    if s == "auto" {
        return Ok(CompressionArg::Auto);
    }
    match s.parse::<i32>() {
        Ok(n) if (-7..=22).contains(&n) => Ok(CompressionArg::Level(n)),
        _ => Err(format!(
            "expected `auto` or a zstd level -7..=22, got {s:?}"
        )),
    }
}

fn parse_sizes(s: &str) -> std::result::Result<ChunkSizes, String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|x| x.trim().parse::<u32>().map_err(|e| format!("{x:?}: {e}")))
        .collect::<std::result::Result<_, _>>()?;
    let [min, avg, max] = v[..] else {
        return Err("expected MIN,AVG,MAX".into());
    };
    let c = ChunkSizes { min, avg, max };
    c.validate()?;
    Ok(c)
}

/// Top-level names of a repository's layout (format-spec §2): an init that
/// was interrupted, or lost a race, leaves only these.
const LAYOUT: [&str; 7] = [
    "config",
    "keys",
    "data",
    "index",
    "snapshots",
    "locks",
    "marks",
];

/// Refuses a local folder that holds anything but a repository's own
/// layout (a complete repository there is refused later, as "already
/// exists"): `snap init` must not mix its objects into someone else's folder.
fn refuse_nonempty_folder(loc: &str) -> Result<()> {
    if loc.contains("://") {
        return Ok(());
    }
    let entries = match std::fs::read_dir(loc) {
        Ok(rd) => rd,
        // Missing: created by init. Not a folder or unreadable: the store says why.
        Err(_) => return Ok(()),
    };
    let foreign = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        // `config#N`: the staging file of a concurrent init's local write.
        .find(|n| {
            !n.to_str()
                .and_then(|n| n.split('#').next())
                .is_some_and(|n| LAYOUT.contains(&n))
        });
    if let Some(name) = foreign {
        return Err(Error::usage(format!(
            "folder {loc} is not empty (it holds {:?}, which is not part of a snap repository); \
             give a new or empty folder for the repository",
            name
        ))
        .into());
    }
    Ok(())
}

pub fn run(g: &Global, a: &InitArgs) -> Result<u8> {
    let loc = repo_location(g)?;
    refuse_nonempty_folder(&loc)?;
    let pw = password(g, true)?;
    if pw.is_empty() {
        return Err(Error::usage("empty password").into());
    }
    if !(1..=128).contains(&a.pack_size_mib) {
        return Err(Error::usage("--pack-size-mib must be 1..=128").into());
    }
    let mut opts = InitOptions {
        store: store_options(g)?,
        ..InitOptions::default()
    };
    opts.chunking = Chunking {
        files: a.chunk_files.unwrap_or(opts.chunking.files),
        streams: a.chunk_streams.unwrap_or(opts.chunking.streams),
    };
    if let Some(from) = &a.copy_chunker_params_from {
        if a.chunk_files.is_some() || a.chunk_streams.is_some() {
            return Err(Error::usage(
                "--copy-chunker-params-from sets the chunk sizes; drop --chunk-files/--chunk-streams",
            )
            .into());
        }
        let src_pw = from_password(a.from_password_file.as_deref())?;
        let src = Repository::open_opts(from, src_pw.as_bytes(), &cache_dir(g), &opts.store)?;
        opts.chunking = src.config().chunking;
        opts.ids_from = Some(src.key().clone());
    }
    opts.pack_size = a.pack_size_mib << 20;
    opts.object_lock = a.object_lock;
    match a.compression {
        CompressionArg::Auto => {
            opts.compression = Some(snap::format::config::Compression::Auto);
        }
        CompressionArg::Level(n) => {
            opts.compression_level = n;
            opts.compression = None;
        }
    }
    let id = Repository::init(&loc, pw.as_bytes(), &opts)?;
    if g.json {
        outln!(
            "{}",
            serde_json::json!({"type": "init", "repository": loc, "id": id.to_hex()})
        )?;
    } else {
        eprintln!("created snap repository {} at {loc}", id.short());
        eprintln!("keep the password safe: without it the data cannot be read");
    }
    Ok(0)
}

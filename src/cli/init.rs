//! `snap init`: create a repository.

use super::{password, repo_location, Global};
use anyhow::Result;
use clap::Args;
use snap::format::config::{ChunkSizes, Chunking};
use snap::repo::InitOptions;
use snap::{Error, Repository};

#[derive(Args, Debug)]
pub struct InitArgs {
    /// File chunk sizes in bytes as MIN,AVG,MAX (AVG a power of two) [default: 65536,262144,2097152].
    #[arg(long, value_parser = parse_sizes)]
    chunk_files: Option<ChunkSizes>,
    /// Stream chunk sizes in bytes as MIN,AVG,MAX [default: 4096,16384,131072].
    #[arg(long, value_parser = parse_sizes)]
    chunk_streams: Option<ChunkSizes>,
    /// Target pack size in MiB (1..=1024).
    #[arg(long, default_value_t = 16)]
    pack_size_mib: u32,
    /// zstd compression level for blobs (1..=19).
    #[arg(long, default_value_t = 3)]
    compression: i32,
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

pub fn run(g: &Global, a: &InitArgs) -> Result<u8> {
    let loc = repo_location(g)?;
    let pw = password(g, true)?;
    if pw.is_empty() {
        return Err(Error::usage("empty password").into());
    }
    if !(1..=1024).contains(&a.pack_size_mib) {
        return Err(Error::usage("--pack-size-mib must be 1..=1024").into());
    }
    let mut opts = InitOptions::default();
    opts.chunking = Chunking {
        files: a.chunk_files.unwrap_or(opts.chunking.files),
        streams: a.chunk_streams.unwrap_or(opts.chunking.streams),
    };
    opts.pack_size = a.pack_size_mib << 20;
    opts.compression_level = a.compression;
    let id = Repository::init(&loc, pw.as_bytes(), &opts)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({"type": "init", "repository": loc, "id": id.to_hex()})
        );
    } else {
        eprintln!("created snap repository {} at {loc}", id.short());
        eprintln!("keep the password safe: without it the data cannot be read");
    }
    Ok(0)
}

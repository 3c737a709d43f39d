//! `snap cache`: the local catalog cache.

use super::{open, Global};
use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    cmd: CacheCmd,
}

#[derive(Subcommand, Debug)]
enum CacheCmd {
    /// Wipe the catalog and reload it from the repository's index and snapshot objects.
    Rebuild,
}

pub fn run(g: &Global, a: &CacheArgs) -> Result<u8> {
    match a.cmd {
        CacheCmd::Rebuild => {
            let repo = open(g)?;
            repo.catalog().reset()?;
            let loaded = repo.sync_catalog()?;
            let blobs = repo.catalog().blob_count()?;
            let snaps = repo.snapshots()?.len();
            if g.json {
                outln!(
                    "{}",
                    serde_json::json!({"type": "cache_rebuild", "index_objects": loaded, "blobs": blobs, "snapshots": snaps})
                )?;
            } else {
                outln!(
                    "catalog rebuilt: {loaded} index objects, {blobs} blobs, {snaps} snapshots"
                )?;
            }
            Ok(0)
        }
    }
}

//! `snap cache rebuild`: wipe the catalog and resync it from the repository.

use super::{open, Global};
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Wipe the local catalog and reload it from the repository.
    Rebuild,
}

pub fn run(g: &Global, c: &CacheCommand) -> Result<u8> {
    match c {
        CacheCommand::Rebuild => {
            let repo = open(g)?;
            repo.catalog().reset()?;
            let n = repo.sync_catalog()?;
            let blobs = repo.catalog().blob_count()?;
            println!("catalog rebuilt: {n} index objects, {blobs} blobs");
            Ok(0)
        }
    }
}

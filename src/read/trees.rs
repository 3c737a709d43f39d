//! Reading many trees at once: one level of a breadth-first walk.
//!
//! The tree ids of a level are looked up in the catalog, sorted by pack and
//! offset, and split into at most [`READERS`] runs of at least [`MIN_RUN`]
//! trees; each run is read by its own thread through the synchronous
//! [`crate::read::fetch::fetch`] (neighbouring blobs coalesced into one
//! ranged read). A walk of a snapshot therefore costs about one round trip
//! per level instead of one per folder.

use crate::catalog::BlobLocation;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::Tree;
use crate::format::BlobId;
use crate::repo::{decode_tree, Repository};
use std::collections::HashMap;

/// Threads reading one level's trees at once.
pub const READERS: usize = 8;
/// Fewest trees a thread is given: small levels go in one coalesced batch,
/// since a request costs more than reading the few KiB between two trees.
pub const MIN_RUN: usize = 32;

/// Reads and decodes the trees `ids` (duplicates allowed, each read once).
/// Returns one result per distinct id: [`ErrorKind::NotFound`] for a tree
/// no index names, [`ErrorKind::Corrupt`] for one that does not
/// authenticate or decode, store errors for transport failures. When a
/// run's coalesced read fails (a missing or short pack), its trees are read
/// one by one, so each tree gets its own error.
pub fn read_trees(repo: &Repository, ids: &[BlobId]) -> HashMap<BlobId, Result<Tree>> {
    let mut uniq = ids.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let mut out: HashMap<BlobId, Result<Tree>> = HashMap::with_capacity(uniq.len());
    let mut located: Vec<(BlobId, BlobLocation)> = Vec::with_capacity(uniq.len());
    {
        let cat = repo.catalog();
        for id in uniq {
            match cat.lookup(&id) {
                Ok(Some(l)) => located.push((id, l)),
                Ok(None) => {
                    out.insert(
                        id,
                        Err(Error::new(
                            ErrorKind::NotFound,
                            format!("tree {} is not in any index; run `snap check`", id.short()),
                        )),
                    );
                }
                Err(e) => {
                    out.insert(id, Err(e));
                }
            }
        }
    }
    if located.is_empty() {
        return out;
    }
    located.sort_unstable_by_key(|(_, l)| (l.pack, l.offset));
    if located.len() <= MIN_RUN {
        out.extend(read_run(repo, &located));
        return out;
    }
    let per = located.len().div_ceil(READERS).max(MIN_RUN);
    let runs: Vec<Vec<(BlobId, Result<Tree>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = located
            .chunks(per)
            .map(|run| s.spawn(move || read_run(repo, run)))
            .collect();
        handles
            .into_iter()
            .zip(located.chunks(per))
            .map(|(h, run)| {
                h.join().unwrap_or_else(|_| {
                    run.iter()
                        .map(|(id, _)| {
                            (
                                *id,
                                Err(Error::new(
                                    ErrorKind::Backend,
                                    format!("the thread reading tree {} failed", id.short()),
                                )),
                            )
                        })
                        .collect()
                })
            })
            .collect()
    });
    for r in runs {
        out.extend(r);
    }
    out
}

/// Reads one run of trees (sorted by pack and offset) with coalesced reads.
fn read_run(repo: &Repository, run: &[(BlobId, BlobLocation)]) -> Vec<(BlobId, Result<Tree>)> {
    let locs: Vec<BlobLocation> = run.iter().map(|(_, l)| *l).collect();
    match crate::read::fetch::fetch(repo.store(), &locs) {
        Ok(f) => run
            .iter()
            .map(|(id, l)| {
                let t = f
                    .sealed(l)
                    .and_then(|sealed| repo.decode_blob(id, l, sealed))
                    .and_then(|plain| decode_tree(id, &plain));
                (*id, t)
            })
            .collect(),
        Err(_) => run
            .iter()
            .map(|(id, _)| (*id, repo.read_tree(id)))
            .collect(),
    }
}

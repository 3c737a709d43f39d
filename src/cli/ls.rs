//! `snap ls`: list a snapshot's entries.

use super::{open, Global};
use anyhow::Result;
use clap::Args;
use snap::{Error, ErrorKind};

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot: an id, a unique prefix, "latest" or "latest~N".
    snapshot: String,
    /// Folder inside the snapshot to list [default: all].
    path: Option<String>,
}

pub fn run(g: &Global, a: &LsArgs) -> Result<u8> {
    let repo = open(g)?;
    let (_, snap) = repo.resolve_snapshot(&a.snapshot)?;
    let mut start = snap.tree;
    let mut prefix = String::new();
    if let Some(p) = &a.path {
        let e = snap::restore::find_entry(&repo, &snap.tree, p)?;
        start = e
            .subtree
            .ok_or_else(|| Error::new(ErrorKind::Usage, format!("{p} is not a folder")))?;
        prefix = format!("/{}", p.trim_matches('/'));
    }
    let mut stack = vec![(start, prefix)];
    let mut out = Vec::new();
    while let Some((tid, pre)) = stack.pop() {
        let t = repo.read_tree(&tid)?;
        for e in t.entries.iter().rev() {
            let path = format!("{pre}/{}", String::from_utf8_lossy(&e.name));
            if let Some(s) = e.subtree {
                stack.push((s, path.clone()));
            }
            out.push((path, e.kind, e.size, e.mode));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    for (p, k, size, mode) in out {
        if g.json {
            println!(
                "{}",
                serde_json::json!({"path": p, "type": k, "size": size, "mode": mode})
            );
        } else {
            println!("{:?}\t{:o}\t{}\t{}", k, mode, size, p);
        }
    }
    Ok(0)
}

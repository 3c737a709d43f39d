//! `snap ls`: list a snapshot's entries.

use super::{mtime_str, open, Global};
use anyhow::Result;
use clap::Args;
use snap::format::tree::TreeEntry;
use snap::{Error, ErrorKind};

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot: an id, a unique prefix, "latest" or "latest~N".
    snapshot: String,
    /// Folder inside the snapshot to list [default: all].
    path: Option<String>,
    /// Long listing: mode, owner, size, modification time.
    #[arg(long, short = 'l')]
    long: bool,
}

fn mode_string(e: &TreeEntry) -> String {
    use snap::format::tree::EntryKind::*;
    let t = match e.kind {
        File => '-',
        Dir => 'd',
        Symlink => 'l',
        Fifo => 'p',
        CharDevice => 'c',
        BlockDevice => 'b',
        Socket => 's',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    for shift in [6, 3, 0] {
        let bits = (e.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

pub fn run(g: &Global, a: &LsArgs) -> Result<u8> {
    let repo = open(g)?;
    let (_, snap) = repo.resolve_snapshot(&a.snapshot)?;
    let mut start = snap.tree;
    let mut prefix = String::new();
    if let Some(p) = &a.path {
        let e = snap::read::restore::find_entry(&repo, &snap.tree, p)?;
        start = e
            .subtree
            .ok_or_else(|| Error::new(ErrorKind::Usage, format!("{p} is not a folder")))?;
        prefix = format!("/{}", p.trim_matches('/'));
    }
    let start_depth = prefix.matches('/').count() + 1;
    // Breadth-first, each level's trees read at once.
    let mut level = vec![(start, prefix, start_depth)];
    let mut out: Vec<(String, TreeEntry)> = Vec::new();
    while !level.is_empty() {
        for (_, pre, depth) in &level {
            snap::read::restore::check_depth(*depth, || pre.clone())?;
        }
        let ids: Vec<_> = level.iter().map(|l| l.0).collect();
        let trees = snap::read::trees::read_trees(&repo, &ids);
        let mut next = Vec::new();
        for (tid, pre, depth) in level {
            let t = match trees.get(&tid) {
                Some(Ok(t)) => t,
                Some(Err(e)) => return Err(Error::new(e.kind(), format!("{e:#}")).into()),
                None => {
                    return Err(Error::corrupt(format!("tree {} was not read", tid.short())).into())
                }
            };
            for e in &t.entries {
                let path = format!("{pre}/{}", String::from_utf8_lossy(&e.name));
                if let Some(s) = e.subtree {
                    next.push((s, path.clone(), depth + 1));
                }
                let mut e = e.clone();
                e.content = Vec::new();
                out.push((path, e));
            }
        }
        level = next;
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if g.json {
        let v: Vec<_> = out
            .iter()
            .map(|(p, e)| {
                let mut j =
                    serde_json::json!({"path": p, "type": e.kind, "size": e.size, "mode": e.mode});
                if a.long {
                    if let Some(o) = j.as_object_mut() {
                        o.insert("uid".into(), e.uid.into());
                        o.insert("gid".into(), e.gid.into());
                        o.insert("mtime".into(), mtime_str(e.mtime_ns).into());
                        o.insert("mtime_ns".into(), e.mtime_ns.into());
                        if !e.link_target.is_empty() {
                            o.insert(
                                "link_target".into(),
                                String::from_utf8_lossy(&e.link_target).into(),
                            );
                        }
                    }
                }
                j
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(0);
    }
    for (p, e) in &out {
        if a.long {
            let link = if e.link_target.is_empty() {
                String::new()
            } else {
                format!(
                    " -> {}",
                    super::output::escape(&String::from_utf8_lossy(&e.link_target))
                )
            };
            outln!(
                "{} {:>6} {:>6} {:>12}  {}  {}{link}",
                mode_string(e),
                e.uid,
                e.gid,
                e.size,
                mtime_str(e.mtime_ns),
                super::output::escape(p)
            )?;
        } else {
            outln!("{}", super::output::escape(p))?;
        }
    }
    Ok(0)
}

//! Stream sources: running a command or program in its own process group
//! with a scrubbed environment, reading its output, and the previous
//! version of each stream (delta bases).

use super::{StreamInput, StreamSource};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{ChunkProfile, STREAMS_DIR};
use crate::format::BlobId;
use crate::repo::Repository;
use crate::write::ingest::{DeltaRef, Reader};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

/// Runs one `sh -c` command or program in its own process group, without
/// snap's secrets in its environment ([`crate::write::sources::scrub_env`]);
/// returns its child process, registered to be stopped on SIGINT/SIGTERM.
fn spawn_source(
    input: &StreamInput,
) -> Result<Option<(std::process::Child, crate::interrupt::ChildGuard)>> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let mut cmd = match input {
        StreamInput::Stdin => return Ok(None),
        StreamInput::Command(c) => {
            let mut cmd = crate::write::sources::command("sh");
            cmd.arg("-c").arg(c);
            cmd
        }
        StreamInput::Program(argv) => {
            let (p, args) = argv
                .split_first()
                .ok_or_else(|| Error::usage("empty command"))?;
            let mut cmd = crate::write::sources::command(p);
            cmd.args(args);
            cmd
        }
    };
    // Its own process group: an interrupt stops the command and everything
    // it started (a shell's children), not only the shell.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().map_err(|e| {
        Error::with_source(
            ErrorKind::Source,
            format!("cannot run {}", describe(input)),
            e,
        )
    })?;
    let guard = crate::interrupt::watch_child(child.id(), true);
    Ok(Some((child, guard)))
}

fn describe(input: &StreamInput) -> String {
    match input {
        StreamInput::Stdin => "standard input".into(),
        StreamInput::Command(c) => format!("command `{c}`"),
        StreamInput::Program(a) => format!("`{}`", a.join(" ")),
    }
}

/// The previous version of each stream about to be read: the content of the
/// stream of the same name in the newest snapshot of this host that holds
/// one (for delta blobs, format-spec §13). Best effort: a stream whose
/// previous version cannot be read simply gets no delta bases.
pub(super) fn previous_streams(
    repo: &Repository,
    hostname: &str,
    streams: &[StreamSource],
) -> HashMap<String, Arc<DeltaRef>> {
    let mut out = HashMap::new();
    if streams.is_empty() {
        return out;
    }
    let Ok(snaps) = repo.snapshots() else {
        return out;
    };
    let content = |tree: &BlobId, name: &str| -> Option<Vec<BlobId>> {
        let root = repo.read_tree_cached(tree).ok()?;
        let sub = repo
            .read_tree_cached(&root.get(STREAMS_DIR.as_bytes())?.subtree?)
            .ok()?;
        let e = sub.get(name.as_bytes())?;
        (e.profile == ChunkProfile::Streams).then(|| e.content.clone())
    };
    for s in streams {
        let prev = snaps
            .iter()
            .rev()
            .find(|(_, snap)| snap.hostname == hostname && snap.streams.contains(&s.name));
        if let Some(c) = prev.and_then(|(_, snap)| content(&snap.tree, &s.name)) {
            // Chunk lengths from the catalog place each chunk by offset; a
            // chunk no index names ends the usable part of the list.
            let cat = repo.catalog();
            let mut sized = Vec::with_capacity(c.len());
            for id in c {
                match cat.lookup(&id) {
                    Ok(Some(l)) => sized.push((id, l.raw_len)),
                    _ => break,
                }
            }
            if !sized.is_empty() {
                out.insert(s.name.clone(), Arc::new(DeltaRef::new(sized)));
            }
        }
    }
    out
}

/// The command line recorded for a source, if it ran one.
pub(super) fn command_line(input: &StreamInput) -> Option<String> {
    match input {
        StreamInput::Stdin => None,
        StreamInput::Command(c) => Some(c.clone()),
        StreamInput::Program(a) => Some(a.join(" ")),
    }
}

/// Reads one stream source into `slot`; returns its length in bytes.
///
/// Errors: [`ErrorKind::Source`] naming the source, the program, its exit
/// code and the last lines of its stderr when it cannot be run, exits
/// unsuccessfully (even after writing output) or its output cannot be read.
pub(super) fn read_source(reader: &mut Reader<'_>, slot: usize, s: &StreamSource) -> Result<u64> {
    let child = spawn_source(&s.input).map_err(|e| e.context(format!("source {:?}", s.name)))?;
    let Some((mut child, guard)) = child else {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        let n = reader.read_stream(slot, &mut lock, ChunkProfile::Streams)?;
        // Ctrl-C also ends the program writing into the pipe: its output
        // ended early and must not be recorded as the whole stream.
        crate::interrupt::check()?;
        return Ok(n);
    };
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::new(ErrorKind::Source, "no stdout"))?;
    let mut stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let r = reader.read_stream(slot, &mut stdout, ChunkProfile::Streams);
    drop(stdout);
    if r.as_ref().is_err_and(|e| e.kind() != ErrorKind::Io) {
        // The pipeline failed, not the source: stop the source and whatever
        // it started (they would hold its stderr open).
        guard.kill();
    }
    let status = child
        .wait()
        .map_err(|e| Error::io("waiting for source command", e))?;
    let err_out = err_thread.join().unwrap_or_default();
    drop(guard);
    // Stopped by our own SIGTERM: interrupted, not a failed source.
    crate::interrupt::check()?;
    if !status.success() {
        if let Err(e) = &r {
            if e.kind() != ErrorKind::Io {
                return r;
            }
        }
        let text = String::from_utf8_lossy(&err_out);
        let tail: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let tail = &tail[tail.len().saturating_sub(5)..];
        let code = status
            .code()
            .map(|c| format!("exit code {c}"))
            .unwrap_or_else(|| "a signal".into());
        let mut msg = format!(
            "source {:?}: {} failed with {code}",
            s.name,
            describe(&s.input)
        );
        if !tail.is_empty() {
            msg.push_str(&format!(": {}", tail.join(" / ")));
        }
        return Err(Error::new(ErrorKind::Source, msg));
    }
    r.map_err(|e| match e.kind() {
        ErrorKind::Io => Error::new(
            ErrorKind::Source,
            format!("source {:?}: reading its output: {e:#}", s.name),
        ),
        _ => e,
    })
}

//! Reading the content of the files to back up and of the stream sources
//! through the ingest pipeline, one slot each.

use super::parent::FileJob;
use super::streams::{command_line, read_source};
use super::BackupOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Events, WarningKind};
use crate::format::snapshot::SourceInfo;
use crate::write::ingest::{DeltaRef, Reader};
use std::collections::HashMap;
use std::sync::Arc;

/// Bytes read, per-job slots (`None`: unreadable, skipped), per-stream
/// (slot, bytes) of the streams that were read, their sources, and the
/// sources that failed (with `allow_partial`).
pub(super) type ContentResult = (
    u64,
    Vec<Option<usize>>,
    Vec<(usize, u64)>,
    Vec<SourceInfo>,
    Vec<SourceInfo>,
);

pub(super) fn read_content(
    reader: &mut Reader<'_>,
    jobs: &[FileJob],
    opts: &BackupOptions,
    previous: &HashMap<String, Arc<DeltaRef>>,
    events: &dyn Events,
    warnings: &mut Vec<String>,
    changed: &mut Vec<String>,
) -> Result<ContentResult> {
    let mut bytes_read = 0u64;
    let mut slots = Vec::with_capacity(jobs.len());
    for job in jobs {
        crate::interrupt::check()?;
        let slot = reader.new_slot();
        match reader.read_file(slot, &job.path) {
            Ok(r) => {
                bytes_read += r.bytes;
                if r.changed {
                    let path = job.path.to_string_lossy().into_owned();
                    events.event(&Event::warning(
                        WarningKind::Changed,
                        Some(path.clone()),
                        "changed while reading; stored the bytes read",
                    ));
                    changed.push(path);
                }
                slots.push(Some(slot));
            }
            Err(err) => {
                // A failure of the pipeline itself (not of this file) aborts.
                if let Some(inner) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
                    return Err(Error::new(inner.kind(), format!("{inner:#}")));
                }
                if err.raw_os_error() == Some(libc::ENOSPC) {
                    return Err(Error::io(format!("reading {}", job.path.display()), err));
                }
                super::skipped(events, warnings, &job.path, err.to_string());
                slots.push(None);
            }
        }
        events.event(&Event::FileDone);
    }
    let mut stream_slots = Vec::new();
    let mut sources = Vec::new();
    let mut failed_sources = opts.failed_sources.clone();
    for s in &opts.streams {
        if s.name.is_empty()
            || s.name.contains(['/', '\0'])
            || s.name.len() > crate::format::tree::MAX_NAME_LEN
            || s.name == "."
            || s.name == ".."
        {
            return Err(Error::usage(format!("invalid stream name {:?}", s.name)));
        }
        let slot = reader.new_slot();
        if let Some(prev) = previous.get(&s.name) {
            reader.set_delta_ref(slot, prev.clone());
        }
        let n = match read_source(reader, slot, s) {
            Ok(n) => n,
            Err(e) if opts.allow_partial && e.kind() == ErrorKind::Source => {
                let mut details = s.details.clone();
                details.insert("error".into(), format!("{e:#}"));
                events.event(&Event::warning(
                    WarningKind::SourceFailed,
                    None,
                    format!("{e:#}"),
                ));
                failed_sources.push(SourceInfo {
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                    command: command_line(&s.input),
                    details,
                });
                events.event(&Event::FileDone);
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Source => {
                return Err(Error::new(
                    ErrorKind::Source,
                    format!(
                        "{e:#}; no snapshot was recorded (--allow-partial records one without it)"
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        bytes_read += n;
        stream_slots.push((slot, n));
        sources.push(SourceInfo {
            name: s.name.clone(),
            kind: s.kind.clone(),
            command: command_line(&s.input),
            details: s.details.clone(),
        });
        events.event(&Event::FileDone);
    }
    Ok((bytes_read, slots, stream_slots, sources, failed_sources))
}

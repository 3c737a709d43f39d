//! The console's routes: the page, the JSON API (docs/api.md) and the
//! authentication/CSRF layer in front of it.

use super::auth::{self, COOKIE};
use super::State;
use crate::cli::profile::{profile_tag, Config};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State as St};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use snap::format::snapshot::Snapshot;
use snap::format::tree::EntryKind;
use snap::{ErrorKind, SnapshotId};
use std::io::Write;
use std::process::Command;
use std::sync::Arc;

type S = Arc<State>;

/// An API error: a status and `{"error": message}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let kind = e
            .chain()
            .find_map(|c| c.downcast_ref::<snap::Error>())
            .map(|e| e.kind());
        let status = match kind {
            Some(ErrorKind::NotFound) => StatusCode::NOT_FOUND,
            Some(ErrorKind::Usage) => StatusCode::BAD_REQUEST,
            Some(ErrorKind::Locked) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, crate::cli::error_line(&e))
    }
}

impl From<snap::Error> for ApiError {
    fn from(e: snap::Error) -> Self {
        anyhow::Error::from(e).into()
    }
}

type R<T> = Result<T, ApiError>;

/// Runs blocking repository work off the async workers.
async fn blocking<T: Send + 'static>(
    s: &S,
    f: impl FnOnce(&State) -> R<T> + Send + 'static,
) -> R<T> {
    let s = s.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("worker: {e}")))?
}

/// The routes of the console.
pub fn router(state: S) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/style.css", get(style))
        .route("/api/session", get(session))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/profiles", get(profiles))
        .route("/api/snapshots", get(snapshots))
        .route("/api/snapshots/{id}", get(snapshot))
        .route("/api/snapshots/{id}/tree", get(tree))
        .route("/api/snapshots/{id}/file", get(file))
        .route("/api/snapshots/{id}/tar", get(tar))
        .route("/api/snapshots/{id}/zip", get(zip))
        .route("/api/snapshots/{id}/meta", post(set_meta))
        .route("/api/diff", get(diff))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/jobs/{id}/events", get(job_events))
        .route("/api/jobs/{id}/stop", post(stop_job))
        .route("/api/jobs/restore-db", post(start_restore_db))
        .route("/api/status", get(status))
        .route("/api/jobs/backup", post(start_backup))
        .route("/api/jobs/restore", post(start_restore))
        .route("/api/jobs/import", post(start_import))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Login and CSRF: `/api/*` needs a session when a login is configured
/// (except `/api/session` and `/api/login`); every state-changing method
/// needs the session's `X-CSRF-Token` (except `/api/login`).
async fn guard(St(s): St<S>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let open = matches!(path.as_str(), "/api/session" | "/api/login");
    if path.starts_with("/api/") && !open && s.auth.csrf_for(req.headers()).is_none() {
        return ApiError(StatusCode::UNAUTHORIZED, "log in first".into()).into_response();
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes && path != "/api/login" && !s.auth.csrf_ok(req.headers()) {
        return ApiError(
            StatusCode::FORBIDDEN,
            "missing or wrong X-CSRF-Token header".into(),
        )
        .into_response();
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    res
}

async fn page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("assets/index.html"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/app.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/style.css"),
    )
}

async fn session(St(s): St<S>, headers: HeaderMap) -> Json<Value> {
    let csrf = s.auth.csrf_for(&headers);
    // The repository's path or S3 URL only for a session (or without a
    // login): before it, the page tells nothing about the server.
    let repository = csrf
        .is_some()
        .then(|| crate::cli::repo_location(&s.g).unwrap_or_default());
    Json(json!({
        "login_required": s.auth.login_required(),
        "logged_in": csrf.is_some(),
        "csrf": csrf,
        "repository": repository,
    }))
}

#[derive(Deserialize)]
struct LoginBody {
    password: String,
}

async fn login(St(s): St<S>, Json(b): Json<LoginBody>) -> R<Response> {
    if !s.auth.login_required() {
        return Err(bad("this console has no login"));
    }
    let st = s.clone();
    let r = tokio::task::spawn_blocking(move || st.auth.login(&b.password))
        .await
        .ok()
        .flatten();
    let Some((sid, csrf)) = r else {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "wrong password".into()));
    };
    let secure = if s.tls { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/{secure}");
    let mut res = Json(json!({"csrf": csrf})).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| bad(e.to_string()))?,
    );
    Ok(res)
}

async fn logout(St(s): St<S>, headers: HeaderMap) -> Json<Value> {
    s.auth.logout(&headers);
    Json(json!({"ok": true}))
}

/// The profiles of the profile file, each with its last snapshots
/// (tag `profile:NAME`); an empty list when there is no profile file.
async fn profiles(St(s): St<S>) -> R<Json<Value>> {
    blocking(&s, |s| {
        let cfg = match Config::find(s.g.config.as_deref()) {
            Ok(c) => c,
            Err(_) if s.g.config.is_none() => return Ok(Json(json!([]))),
            Err(e) => return Err(anyhow::Error::from(e).into()),
        };
        s.repo.sync_catalog()?;
        let snaps = s.repo.snapshots()?;
        let v: Vec<Value> = cfg
            .profile
            .iter()
            .map(|(name, p)| {
                let tag = profile_tag(name);
                let mut runs: Vec<Value> = snaps
                    .iter()
                    .filter(|(_, sn)| sn.tags.contains(&tag))
                    .map(|(id, sn)| snap_row(id, sn))
                    .collect();
                runs.reverse();
                runs.truncate(10);
                json!({
                    "name": name,
                    "repository": p.repository,
                    "paths": p.paths,
                    "pg": p.pg.len(),
                    "tags": p.tags,
                    "keep_last": p.keep_last, "keep_daily": p.keep_daily,
                    "keep_weekly": p.keep_weekly, "keep_monthly": p.keep_monthly,
                    "check": p.check,
                    "last_runs": runs,
                })
            })
            .collect();
        Ok(Json(Value::Array(v)))
    })
    .await
}

fn snap_row(id: &SnapshotId, s: &Snapshot) -> Value {
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": s.time,
        "host": s.hostname,
        "tags": s.tags,
        "description": s.description,
        "paths": s.paths,
        "streams": s.streams,
        "size": s.summary.total_bytes,
        "bytes_added": s.summary.bytes_added_stored,
        "partial": s.partial,
    })
}

#[derive(Deserialize)]
struct SnapFilter {
    host: Option<String>,
    tag: Option<String>,
    path: Option<String>,
}

/// Snapshots, oldest first, filtered by host, tag and path (exact matches;
/// empty values ignored).
async fn snapshots(St(s): St<S>, Query(f): Query<SnapFilter>) -> R<Json<Value>> {
    blocking(&s, move |s| {
        s.repo.sync_catalog()?;
        let keep = |v: &Option<String>| v.clone().filter(|x| !x.is_empty());
        let (host, tag, path) = (keep(&f.host), keep(&f.tag), keep(&f.path));
        let v: Vec<Value> = s
            .repo
            .snapshots()?
            .iter()
            .filter(|(_, sn)| host.as_ref().is_none_or(|h| &sn.hostname == h))
            .filter(|(_, sn)| tag.as_ref().is_none_or(|t| sn.tags.contains(t)))
            .filter(|(_, sn)| path.as_ref().is_none_or(|p| sn.paths.contains(p)))
            .map(|(id, sn)| snap_row(id, sn))
            .collect();
        Ok(Json(Value::Array(v)))
    })
    .await
}

/// Checks a snapshot id from a URL (hex prefix of 4..=64 digits, or
/// `latest`) and resolves it. Errors: 400 for a malformed id, 404 for none.
fn resolve(s: &State, id: &str) -> R<(SnapshotId, Snapshot)> {
    let ok = id == "latest"
        || ((4..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return Err(bad(format!("bad snapshot id {id:?}")));
    }
    s.repo.sync_catalog()?;
    s.repo.resolve_snapshot(id).map_err(|e| {
        let msg = format!("{e:#}");
        if e.kind() == ErrorKind::Usage || e.kind() == ErrorKind::NotFound {
            ApiError(StatusCode::NOT_FOUND, msg)
        } else {
            e.into()
        }
    })
}

/// A path inside a snapshot from a query: '/'-separated, no `.`/`..`
/// component, no NUL. Returns it without leading or trailing '/'.
fn inside(path: Option<&str>) -> R<String> {
    let p = path.unwrap_or("");
    if p.contains('\0') || p.split('/').any(|c| c == ".." || c == ".") {
        return Err(bad(format!("{p:?} is outside the snapshot")));
    }
    Ok(p.trim_matches('/').to_string())
}

async fn snapshot(St(s): St<S>, Path(id): Path<String>) -> R<Json<Value>> {
    blocking(&s, move |s| {
        let (id, sn) = resolve(s, &id)?;
        let mut v = serde_json::to_value(&sn).map_err(|e| bad(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("id".into(), id.to_hex().into());
        }
        Ok(Json(v))
    })
    .await
}

#[derive(Deserialize)]
struct PathQuery {
    path: Option<String>,
}

/// The entries of one folder of a snapshot (`path` empty: the root).
async fn tree(St(s): St<S>, Path(id): Path<String>, Query(q): Query<PathQuery>) -> R<Json<Value>> {
    blocking(&s, move |s| {
        let p = inside(q.path.as_deref())?;
        let (_, sn) = resolve(s, &id)?;
        let tid = if p.is_empty() {
            sn.tree
        } else {
            let e = snap::read::restore::find_entry(&s.repo, &sn.tree, &p)?;
            e.subtree
                .ok_or_else(|| bad(format!("{p} is not a folder")))?
        };
        let t = s.repo.read_tree(&tid)?;
        let entries: Vec<Value> = t
            .entries
            .iter()
            .map(|e| {
                let name = String::from_utf8_lossy(&e.name).into_owned();
                json!({
                    "name": name,
                    "path": if p.is_empty() { name.clone() } else { format!("{p}/{name}") },
                    "type": e.kind,
                    "size": e.size,
                    "mode": e.mode,
                    "mtime": crate::cli::mtime_str(e.mtime_ns),
                })
            })
            .collect();
        Ok(Json(json!({"path": p, "entries": entries})))
    })
    .await
}

/// A writer that sends its bytes to a response body (back-pressured: at
/// most 8 chunks of 256 KiB in flight).
struct BodyWriter(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>);

impl Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A streamed response whose body `f` writes from a blocking thread; `f`
/// runs after `check`, whose error is returned as the response instead.
async fn streamed<C: Send + 'static>(
    s: &S,
    check: impl FnOnce(&State) -> R<C> + Send + 'static,
    f: impl FnOnce(&State, C, &mut dyn Write) -> anyhow::Result<()> + Send + 'static,
    content_type: &'static str,
    filename: String,
) -> R<Response> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let (ok_tx, ok_rx) = tokio::sync::oneshot::channel::<R<()>>();
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        let c = match check(&st) {
            Ok(c) => c,
            Err(e) => {
                let _ = ok_tx.send(Err(e));
                return;
            }
        };
        let _ = ok_tx.send(Ok(()));
        let mut w = std::io::BufWriter::with_capacity(256 << 10, BodyWriter(tx.clone()));
        let r = f(&st, c, &mut w).and_then(|_| Ok(w.flush()?));
        if let Err(e) = r {
            // The status is already sent: end the body with an error so the
            // client sees a broken transfer, not a short file.
            let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
        }
    });
    ok_rx
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker ended".into()))??;
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let disp = format!(
        "attachment; filename=\"{}\"",
        filename.replace(|c: char| c == '"' || c == '\\' || c.is_control(), "_")
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disp),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn base_name(p: &str, default: &str) -> String {
    p.rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(default)
        .to_string()
}

/// One file (or a stored stream) of a snapshot, streamed.
async fn file(St(s): St<S>, Path(id): Path<String>, Query(q): Query<PathQuery>) -> R<Response> {
    let p = inside(q.path.as_deref())?;
    if p.is_empty() {
        return Err(bad("give the path of a file"));
    }
    let name = base_name(&p, "file");
    streamed(
        &s,
        move |s| {
            let (_, sn) = resolve(s, &id)?;
            let e = snap::read::restore::find_entry(&s.repo, &sn.tree, &p)?;
            if e.kind != EntryKind::File {
                return Err(bad(format!("{p} is not a file")));
            }
            Ok(e)
        },
        |s, e, w| {
            snap::read::restore::write_content(&s.repo, &e, w)?;
            Ok(())
        },
        "application/octet-stream",
        name,
    )
    .await
}

/// A folder of a snapshot (the root when `path` is empty) as a tar archive.
async fn tar(St(s): St<S>, Path(id): Path<String>, Query(q): Query<PathQuery>) -> R<Response> {
    archive(s, id, q, snap::ops::archive::ArchiveFormat::Tar).await
}

/// A folder of a snapshot (the root when `path` is empty) as a zip archive
/// (built in a temporary file first, see `ops::archive::export`).
async fn zip(St(s): St<S>, Path(id): Path<String>, Query(q): Query<PathQuery>) -> R<Response> {
    archive(s, id, q, snap::ops::archive::ArchiveFormat::Zip).await
}

async fn archive(
    s: S,
    id: String,
    q: PathQuery,
    format: snap::ops::archive::ArchiveFormat,
) -> R<Response> {
    let p = inside(q.path.as_deref())?;
    let (ext, ctype) = match format {
        snap::ops::archive::ArchiveFormat::Tar => ("tar", "application/x-tar"),
        snap::ops::archive::ArchiveFormat::Zip => ("zip", "application/zip"),
    };
    let name = format!("{}.{ext}", base_name(&p, "snapshot"));
    streamed(
        &s,
        move |s| {
            let (_, sn) = resolve(s, &id)?;
            if p.is_empty() {
                return Ok(sn.tree);
            }
            let e = snap::read::restore::find_entry(&s.repo, &sn.tree, &p)?;
            e.subtree.ok_or_else(|| bad(format!("{p} is not a folder")))
        },
        move |s, tree, w| {
            snap::ops::archive::export(&s.repo, &tree, format, w)?;
            Ok(())
        },
        ctype,
        name,
    )
    .await
}

#[derive(Deserialize)]
struct DiffQuery {
    from: String,
    to: String,
}

/// What changed from snapshot `from` to snapshot `to`.
async fn diff(St(s): St<S>, Query(q): Query<DiffQuery>) -> R<Json<Value>> {
    blocking(&s, move |s| {
        let (ia, sa) = resolve(s, &q.from)?;
        let (ib, sb) = resolve(s, &q.to)?;
        let items = snap::read::find::diff(&s.repo, &sa.tree, &sb.tree)?;
        Ok(Json(
            json!({"from": ia.to_hex(), "to": ib.to_hex(), "changes": items}),
        ))
    })
    .await
}

#[derive(Deserialize)]
struct MetaBody {
    description: Option<String>,
    tags: Option<Vec<String>>,
}

/// Sets a snapshot's description and/or tags (a new snapshot object
/// replaces the old one, as `snap tag` does); returns the new id.
async fn set_meta(St(s): St<S>, Path(id): Path<String>, Json(b): Json<MetaBody>) -> R<Json<Value>> {
    blocking(&s, move |s| {
        let (old, _) = resolve(s, &id)?;
        let sess = crate::cli::open_session(&s.g, snap::session::Operation::Tag)?;
        let (_, sn) = sess.resolve_snapshot(&old.to_hex())?;
        let mut new = sn.clone();
        if let Some(d) = b.description {
            new.description = Some(d).filter(|d| !d.is_empty());
        }
        if let Some(mut t) = b.tags {
            t.retain(|t| !t.is_empty());
            t.sort();
            t.dedup();
            new.tags = t;
        }
        if new.description == sn.description && new.tags == sn.tags {
            return Ok(Json(json!({"id": old.to_hex(), "unchanged": true})));
        }
        let nid = sess.save_snapshot(&new)?;
        sess.remove_snapshot(&old)?;
        drop(sess);
        Ok(Json(json!({"id": nid.to_hex(), "old": old.to_hex()})))
    })
    .await
}

async fn jobs(St(s): St<S>) -> Json<Value> {
    Json(json!(s.jobs.list()))
}

fn job_id(id: &str) -> R<u64> {
    id.parse().map_err(|_| bad(format!("bad job id {id:?}")))
}

async fn job(St(s): St<S>, Path(id): Path<String>) -> R<Json<Value>> {
    let id = job_id(&id)?;
    s.jobs
        .get(id)
        .map(|j| Json(json!(j)))
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id}")))
}

/// The job's state as server-sent events (`event: job`, data: the job's
/// JSON) on every change, ending after the job ended.
async fn job_events(St(s): St<S>, Path(id): Path<String>) -> R<impl IntoResponse> {
    let id = job_id(&id)?;
    if s.jobs.get(id).is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no job {id}")));
    }
    let rx = s.jobs.subscribe();
    let stream = futures::stream::unfold((s, rx, false), move |(s, mut rx, done)| async move {
        if done {
            return None;
        }
        let j = s.jobs.get(id)?;
        let ended = j.state != "running";
        let ev = Event::default().event("job").json_data(&j).ok()?;
        if !ended {
            // Wait for the next change (or a second, whichever is first).
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx.changed()).await;
        }
        Some((Ok::<_, std::convert::Infallible>(ev), (s, rx, ended)))
    });
    Ok(Sse::new(stream.boxed()).keep_alive(KeepAlive::default()))
}

/// A `snap` child with the server's global options (the password reaches it
/// the way it reached the server: `SNAP_PASSWORD_FILE`/`--password-file` or
/// the inherited `SNAP_PASSWORD`; never on its command line).
fn child(s: &State) -> R<Command> {
    let exe = std::env::current_exe().map_err(|e| bad(e.to_string()))?;
    let mut c = Command::new(exe);
    let g = &s.g;
    c.arg("--json");
    c.arg("--repo").arg(crate::cli::repo_location(g)?);
    if let Some(f) = &g.password_file {
        c.arg("--password-file").arg(f);
    }
    if let Some(d) = &g.cache_dir {
        c.arg("--cache-dir").arg(d);
    }
    if let Some(e) = &g.s3_endpoint {
        c.arg("--s3-endpoint").arg(e);
    }
    if g.s3_allow_http {
        c.arg("--s3-allow-http");
    }
    if let Some(f) = &g.config {
        c.arg("--config").arg(f);
    }
    Ok(c)
}

fn accepted(s: &State, r: Result<u64, String>) -> R<(StatusCode, Json<Value>)> {
    match r {
        Ok(id) => Ok((StatusCode::ACCEPTED, Json(json!(s.jobs.get(id))))),
        Err(reason) => Err(ApiError(StatusCode::CONFLICT, reason)),
    }
}

#[derive(Deserialize)]
struct BackupBody {
    profile: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Key of jobs that write to the repository: one at a time per console.
const REPO_WRITE: &str = "the repository";

/// Starts a backup: a profile (`snap run PROFILE`) or absolute `paths`.
async fn start_backup(St(s): St<S>, Json(b): Json<BackupBody>) -> R<(StatusCode, Json<Value>)> {
    let mut c = child(&s)?;
    let title = match (&b.profile, b.paths.is_empty()) {
        (Some(p), true) => {
            let cfg = Config::find(s.g.config.as_deref()).map_err(|e| bad(format!("{e:#}")))?;
            if !cfg.profile.contains_key(p) {
                return Err(ApiError(StatusCode::NOT_FOUND, format!("no profile {p:?}")));
            }
            c.arg("run").arg(p);
            format!("profile {p}")
        }
        (None, false) => {
            if let Some(p) = b.paths.iter().find(|p| !p.starts_with('/')) {
                return Err(bad(format!("{p:?} is not an absolute path")));
            }
            c.arg("backup");
            for t in &b.tags {
                c.arg("--tag").arg(t);
            }
            c.arg("--").args(&b.paths);
            format!("backup of {}", b.paths.join(" "))
        }
        _ => return Err(bad("give either a profile or paths")),
    };
    accepted(
        &s,
        s.jobs.start("backup", title, REPO_WRITE.into(), c, None),
    )
}

#[derive(Deserialize)]
struct RestoreBody {
    snapshot: String,
    target: String,
    /// Only this path of the snapshot (a file or folder).
    path: Option<String>,
}

/// Restores a snapshot (or one path of it) into an absolute target folder.
async fn start_restore(St(s): St<S>, Json(b): Json<RestoreBody>) -> R<(StatusCode, Json<Value>)> {
    let p = inside(b.path.as_deref())?;
    if !b.target.starts_with('/') || b.target.split('/').any(|c| c == "..") {
        return Err(bad(format!(
            "target {:?} must be an absolute path without ..",
            b.target
        )));
    }
    let st = s.clone();
    let snap_id = b.snapshot.clone();
    let (id, _) = blocking(&st, move |s| resolve(s, &snap_id)).await?;
    let mut c = child(&s)?;
    c.arg("restore")
        .arg(id.to_hex())
        .arg("--target")
        .arg(&b.target);
    if !p.is_empty() {
        c.arg("--include").arg(format!("/{p}"));
        c.arg("--include").arg(format!("/{p}/**"));
    }
    let title = format!("restore {} into {}", id.short(), b.target);
    accepted(
        &s,
        s.jobs
            .start("restore", title, format!("target {}", b.target), c, None),
    )
}

#[derive(Deserialize)]
struct ImportQuery {
    /// Tags, comma-separated.
    tag: Option<String>,
    description: Option<String>,
    name: Option<String>,
}

/// Imports the request body (an uncompressed tar archive) as a new snapshot.
async fn start_import(
    St(s): St<S>,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> R<(StatusCode, Json<Value>)> {
    // Made on the first upload (a server that imports nothing leaves no folder).
    tokio::fs::create_dir_all(&s.upload_dir)
        .await
        .map_err(|e| bad(format!("creating {}: {e}", s.upload_dir.display())))?;
    let file = s
        .upload_dir
        .join(format!("upload-{}.tar", auth::random_token()));
    let mut f = tokio::fs::File::create(&file)
        .await
        .map_err(|e| bad(format!("creating {}: {e}", file.display())))?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad(format!("reading the upload: {e}")))?;
        tokio::io::AsyncWriteExt::write_all(&mut f, &chunk)
            .await
            .map_err(|e| bad(format!("writing the upload: {e}")))?;
    }
    drop(f);
    let name = q.name.unwrap_or_else(|| "upload.tar".into());
    let mut c = child(&s)?;
    c.arg("import-tar").arg(&file);
    for t in q
        .tag
        .iter()
        .flat_map(|t| t.split(','))
        .filter(|t| !t.is_empty())
    {
        c.arg("--tag").arg(t);
    }
    c.arg("--description")
        .arg(q.description.unwrap_or_else(|| format!("uploaded {name}")));
    let r = s.jobs.start(
        "import",
        format!("import {name}"),
        REPO_WRITE.into(),
        c,
        Some(file.clone()),
    );
    if r.is_err() {
        let _ = std::fs::remove_file(&file);
    }
    accepted(&s, r)
}

/// Asks running job `id` to stop (SIGINT to its `snap` child, as Ctrl-C).
/// 404 for no such job, 409 when it already ended.
async fn stop_job(St(s): St<S>, Path(id): Path<String>) -> R<(StatusCode, Json<Value>)> {
    let id = job_id(&id)?;
    match s.jobs.stop(id) {
        Ok(j) => Ok((StatusCode::ACCEPTED, Json(json!(j)))),
        Err(super::jobs::StopError::NoSuchJob) => {
            Err(ApiError(StatusCode::NOT_FOUND, format!("no job {id}")))
        }
        Err(super::jobs::StopError::Ended(state)) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("job {id} already ended ({state})"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreDbBody {
    snapshot: String,
    /// `pg`, `mysql` or `sqlite`.
    kind: String,
    /// A libpq conninfo/URI or a MariaDB CONNINFO (no password), or the
    /// absolute path of the SQLite file.
    target: String,
    /// The stream, when the snapshot holds several of that kind.
    stream: Option<String>,
    #[serde(default)]
    create: bool,
    #[serde(default)]
    clean: bool,
    /// SQLite: replace an existing file.
    #[serde(default)]
    force: bool,
    /// Must be true: the restore writes into a live database or file.
    #[serde(default)]
    confirm: bool,
}

/// Checks an absolute file path for a SQLite restore: no `..`, an existing
/// parent folder, not a folder, and not an existing file unless `force`.
fn sqlite_target(t: &str, force: bool) -> R<()> {
    if !t.starts_with('/') || t.split('/').any(|c| c == ".." || c == ".") || t.ends_with('/') {
        return Err(bad(format!(
            "target {t:?} must be an absolute file path without . or .."
        )));
    }
    let p = std::path::Path::new(t);
    let parent = p.parent().unwrap_or(std::path::Path::new("/"));
    if !parent.is_dir() {
        return Err(bad(format!("folder {} does not exist", parent.display())));
    }
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Err(bad(format!("target {t} is a folder, not a file"))),
        Ok(_) if !force => Err(bad(format!("target {t} exists: set force to replace it"))),
        _ => Ok(()),
    }
}

/// Restores a database stream of a snapshot into a PostgreSQL or MariaDB
/// server or a SQLite file, as a job (`snap restore ID --pg/--mysql/--sqlite`).
async fn start_restore_db(
    St(s): St<S>,
    Json(b): Json<RestoreDbBody>,
) -> R<(StatusCode, Json<Value>)> {
    if !b.confirm {
        return Err(bad(
            "not confirmed: a database restore overwrites data in its target; send confirm: true",
        ));
    }
    let t = b.target.trim().to_string();
    if t.is_empty() {
        return Err(bad("give a target"));
    }
    if t.starts_with('-') {
        return Err(bad(format!("target {t:?} must not start with -")));
    }
    if let Some(n) = &b.stream {
        if n.is_empty() || n.starts_with('-') || n.contains('\0') {
            return Err(bad(format!("bad stream name {n:?}")));
        }
    }
    let (flag, conflict) = match b.kind.as_str() {
        "pg" => {
            if snap::write::sources::pg_has_password(&t) {
                return Err(bad(
                    "the connection string holds a password; remove it (the server's PGPASSWORD or ~/.pgpass is used)",
                ));
            }
            ("--pg", format!("database {t}"))
        }
        "mysql" => {
            snap::write::mysql::MyConn::parse(&t).map_err(|e| bad(format!("{e:#}")))?;
            ("--mysql", format!("database {t}"))
        }
        "sqlite" => {
            if b.create || b.clean {
                return Err(bad("create and clean go with pg or mysql"));
            }
            sqlite_target(&t, b.force)?;
            ("--sqlite", format!("target {t}"))
        }
        k => return Err(bad(format!("kind {k:?} is not pg, mysql or sqlite"))),
    };
    if b.force && b.kind != "sqlite" {
        return Err(bad("force goes with sqlite"));
    }
    let st = s.clone();
    let snap_id = b.snapshot.clone();
    let (id, sn) = blocking(&st, move |s| resolve(s, &snap_id)).await?;
    if sn.streams.is_empty() {
        return Err(bad(format!(
            "snapshot {} holds no database dump (no streams)",
            id.short()
        )));
    }
    let mut c = child(&s)?;
    c.arg("restore").arg(id.to_hex()).arg(format!("{flag}={t}"));
    if let Some(n) = &b.stream {
        c.arg(format!("--stream={n}"));
    }
    if b.create {
        c.arg("--create");
    }
    if b.clean {
        c.arg("--clean");
    }
    if b.force {
        c.arg("--force");
    }
    let title = format!("restore {} of {} into {} {t}", b.kind, id.short(), b.kind);
    accepted(&s, s.jobs.start("restore-db", title, conflict, c, None))
}

/// Per profile: its installed schedule (`snap schedule --list`), its
/// rotations from the profile file, and its last backup, copy, check and
/// restore-test with age and result (`snap status`); `[]` without a
/// profile file.
async fn status(St(s): St<S>) -> R<Json<Value>> {
    blocking(&s, |s| {
        let cfg = match Config::find(s.g.config.as_deref()) {
            Ok(c) => c,
            Err(_) if s.g.config.is_none() => return Ok(Json(json!([]))),
            Err(e) => return Err(anyhow::Error::from(e).into()),
        };
        let timers = crate::cli::schedule::installed(s.unit_dir.as_deref());
        let mut v = Vec::new();
        for (name, p) in &cfg.profile {
            let (mut doc, _) = crate::cli::status::profile_status(name, p)?;
            let sched: Vec<Value> = timers
                .iter()
                .filter(|t| t["profile"] == name.as_str())
                .cloned()
                .collect();
            if let Some(o) = doc.as_object_mut() {
                o.insert("schedule".into(), Value::Array(sched));
                o.insert("check_every".into(), json!(p.check_every));
                o.insert("restore_test_every".into(), json!(p.restore_test.every));
            }
            v.push(doc);
        }
        Ok(Json(Value::Array(v)))
    })
    .await
}

//! Flaky storage (issue "Reliability and security"): a fault-injecting
//! HTTP/1.1 proxy on 127.0.0.1 sits between snap and the S3 test server. At
//! a set rate it answers 500 or 503, resets the connection (before or after
//! forwarding the request), or stalls before answering. Backups and restores
//! must complete through object_store's retries (and snap's) or fail
//! cleanly, and nothing already stored may be lost.

mod common;
use common::cli::Snap;
use common::gen::{Rng, Tree};
use common::services;
use common::verify::{backup_id, tree_hash, verify_repository, Model};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counters of the proxy.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    status_500: AtomicU64,
    status_503: AtomicU64,
    reset_before: AtomicU64,
    reset_after: AtomicU64,
    stalls: AtomicU64,
    /// Requests that repeated (same method and path) a request that had
    /// failed by an injected fault.
    retried: AtomicU64,
}

impl Counts {
    fn faults(&self) -> u64 {
        self.status_500.load(Ordering::Relaxed)
            + self.status_503.load(Ordering::Relaxed)
            + self.reset_before.load(Ordering::Relaxed)
            + self.reset_after.load(Ordering::Relaxed)
    }
}

struct Proxy {
    port: u16,
    counts: Arc<Counts>,
    /// Fault rate in percent of requests (0 = pass everything).
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// One HTTP message head: its lines and the body framing it declares.
struct Head {
    raw: Vec<u8>,
    first: String,
    content_length: Option<u64>,
    chunked: bool,
    close: bool,
}

fn read_head(r: &mut BufReader<TcpStream>) -> Option<Head> {
    let mut raw = Vec::new();
    let mut first = String::new();
    let (mut content_length, mut chunked, mut close) = (None, false, false);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        raw.extend_from_slice(line.as_bytes());
        if first.is_empty() {
            first = line.trim_end().to_string();
            continue;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let l = line.to_ascii_lowercase();
        if let Some(v) = l.strip_prefix("content-length:") {
            content_length = v.trim().parse().ok();
        } else if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        } else if l.starts_with("connection:") && l.contains("close") {
            close = true;
        }
    }
    Some(Head {
        raw,
        first,
        content_length,
        chunked,
        close,
    })
}

/// Copies one message body framed as `head` says from `r` to `w`.
fn relay_body(
    r: &mut BufReader<TcpStream>,
    w: &mut dyn Write,
    head: &Head,
    no_body: bool,
) -> std::io::Result<()> {
    if no_body {
        return Ok(());
    }
    if head.chunked {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            w.write_all(line.as_bytes())?;
            let n = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if n == 0 {
                // Trailers until an empty line.
                loop {
                    let mut t = String::new();
                    r.read_line(&mut t)?;
                    w.write_all(t.as_bytes())?;
                    if t == "\r\n" || t.is_empty() {
                        return Ok(());
                    }
                }
            }
            std::io::copy(&mut r.by_ref().take(n + 2), w)?;
        }
    } else if let Some(n) = head.content_length {
        std::io::copy(&mut r.by_ref().take(n), w)?;
    } else if head.first.starts_with("HTTP/") && head.close {
        std::io::copy(r, w)?;
    }
    Ok(())
}

fn reset(s: &TcpStream) {
    // SO_LINGER 0: close sends RST instead of FIN.
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Both);
}

fn serve(
    client: TcpStream,
    upstream: String,
    p: Arc<Mutex<(Rng, HashSet<String>)>>,
    c: Arc<Counts>,
    rate: Arc<AtomicU64>,
) {
    let Ok(up) = TcpStream::connect(&upstream) else {
        return;
    };
    let mut cr = BufReader::new(client.try_clone().unwrap());
    let mut cw = client.try_clone().unwrap();
    let mut ur = BufReader::new(up.try_clone().unwrap());
    let mut uw = up;
    loop {
        let Some(req) = read_head(&mut cr) else {
            return;
        };
        c.requests.fetch_add(1, Ordering::Relaxed);
        let key = req.first.clone();
        let (roll, kind) = {
            let mut g = p.lock().unwrap();
            let retried = g.1.remove(&key);
            if retried {
                c.retried.fetch_add(1, Ordering::Relaxed);
            }
            (g.0.range(0, 100), g.0.range(0, 5))
        };
        let fault = roll < rate.load(Ordering::Relaxed);
        let mark = |p: &Arc<Mutex<(Rng, HashSet<String>)>>| {
            p.lock().unwrap().1.insert(key.clone());
        };
        // Read the request body first (needed for every outcome).
        let mut body = Vec::new();
        if relay_body(&mut cr, &mut body, &req, false).is_err() {
            return;
        }
        if fault && kind <= 1 {
            let (code, text) = if kind == 0 {
                (500, "Internal Server Error")
            } else {
                (503, "Slow Down")
            };
            if kind == 0 {
                c.status_500.fetch_add(1, Ordering::Relaxed);
            } else {
                c.status_503.fetch_add(1, Ordering::Relaxed);
            }
            mark(&p);
            let _ = write!(
                cw,
                "HTTP/1.1 {code} {text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = cw.flush();
            return;
        }
        if fault && kind == 2 {
            c.reset_before.fetch_add(1, Ordering::Relaxed);
            mark(&p);
            reset(&cw);
            return;
        }
        if fault && kind == 4 {
            c.stalls.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1500));
        }
        if uw.write_all(&req.raw).is_err() || uw.write_all(&body).is_err() {
            return;
        }
        let Some(resp) = read_head(&mut ur) else {
            return;
        };
        let status: u16 = resp
            .first
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let no_body = req.first.starts_with("HEAD ")
            || status == 204
            || status == 304
            || (100..200).contains(&status);
        if fault && kind == 3 {
            // The server did the work; the client never hears of it.
            let mut sink = Vec::new();
            let _ = relay_body(&mut ur, &mut sink, &resp, no_body);
            c.reset_after.fetch_add(1, Ordering::Relaxed);
            mark(&p);
            reset(&cw);
            return;
        }
        if cw.write_all(&resp.raw).is_err() || relay_body(&mut ur, &mut cw, &resp, no_body).is_err()
        {
            return;
        }
        let _ = cw.flush();
        if resp.close || req.close {
            return;
        }
    }
}

fn start_proxy(upstream: &str, seed: u64) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let counts = Arc::new(Counts::default());
    let rate = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let upstream = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let state = Arc::new(Mutex::new((Rng::new(seed), HashSet::new())));
    let (c, r, st) = (counts.clone(), rate.clone(), stop.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            if st.load(Ordering::Relaxed) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let (u, p, c, r) = (upstream.clone(), state.clone(), c.clone(), r.clone());
            std::thread::spawn(move || serve(conn, u, p, c, r));
        }
    });
    Proxy {
        port,
        counts,
        rate,
        stop,
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[test]
fn backups_and_restores_through_a_faulty_proxy() {
    let Some(s3) = services::s3() else { return };
    let proxy = start_proxy(&s3.endpoint, 0xfa17);
    let mut s = Snap::new();
    s.repo = s3.repo_url(&services::unique_name("flaky_"));
    s.env = s3.env();
    for (k, v) in s.env.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = format!("http://127.0.0.1:{}", proxy.port);
        }
    }
    // A clean start, then faults on every later request at 12%.
    s.ok(["init", "--pack-size-mib", "1"]);
    let src = s.path("src");
    let mut tree = Tree::new(&src, 5, 20, 2 << 20, 2);
    let mut model = Model::default();
    let h = tree_hash(&src);
    model.add(&backup_id(&s.backup_json([&src])), &src, h);
    proxy.rate.store(12, Ordering::Relaxed);

    let (mut ok, mut failed) = (0, 0);
    for round in 0..6 {
        tree.mutate();
        let h = tree_hash(&src);
        let out = s.run([
            std::ffi::OsStr::new("--json"),
            "backup".as_ref(),
            src.as_os_str(),
        ]);
        if out.status.success() {
            ok += 1;
            let line = String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap()
                .to_string();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            model.add(&backup_id(&v), &src, h);
        } else {
            // A clean failure: one line, names the storage problem.
            failed += 1;
            let err = String::from_utf8_lossy(&out.stderr);
            eprintln!("round {round}: backup failed cleanly: {}", err.trim());
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    // Restores of everything through the faulty proxy: complete, or fail
    // cleanly; with faults off, everything must be there.
    let scratch = tempfile::tempdir().unwrap();
    let (mut r_ok, mut r_failed) = (0, 0);
    for (id, exp) in &model.snapshots {
        match common::verify::restore_hash(&s, id, &exp.src, scratch.path()) {
            Ok(h) => {
                assert_eq!(
                    &h, &exp.hash,
                    "snapshot {id} restored wrong data through the proxy"
                );
                r_ok += 1;
            }
            Err(e) => {
                r_failed += 1;
                eprintln!("restore through the proxy failed cleanly: {e}");
            }
        }
    }
    let c = &proxy.counts;
    eprintln!(
        "proxy: {} requests, {} faults injected (500: {}, 503: {}, reset before: {}, reset after: {}), {} stalls, {} faulted requests retried; backups {ok} ok / {failed} failed; restores {r_ok} ok / {r_failed} failed",
        c.requests.load(Ordering::Relaxed),
        c.faults(),
        c.status_500.load(Ordering::Relaxed),
        c.status_503.load(Ordering::Relaxed),
        c.reset_before.load(Ordering::Relaxed),
        c.reset_after.load(Ordering::Relaxed),
        c.stalls.load(Ordering::Relaxed),
        c.retried.load(Ordering::Relaxed),
    );
    assert!(c.faults() >= 20, "too few faults injected to mean anything");
    assert!(
        c.retried.load(Ordering::Relaxed) >= c.faults() / 2,
        "faults were not retried"
    );
    assert!(ok >= 4, "only {ok} of 6 backups got through 12% faults");
    proxy.rate.store(0, Ordering::Relaxed);
    verify_repository(&s, &model);
}

//! Secrets and signals (issue #12): SIGINT/SIGTERM stop a backup cleanly
//! (children stopped, stored packs indexed, lease released, exit 130/143),
//! an index checkpoint timer bounds what a SIGKILL loses, no child sees
//! snap's secrets, and terminal control characters are escaped in human
//! output. Everything through the built binary and real processes.

mod common;
use common::cli::Snap;
use common::gen::Rng;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if !name.starts_with('.') && !name.contains("tmp") {
                out.push(p);
            }
        }
    }
    out
}

fn packs(s: &Snap) -> usize {
    files_under(&Path::new(&s.repo).join("data")).len()
}

fn indexes(s: &Snap) -> usize {
    files_under(&Path::new(&s.repo).join("index")).len()
}

/// Whether `pid` runs (a zombie waiting to be reaped counts as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(st) => {
            let state = st.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn kill(sig: &str, target: &str) {
    let _ = Command::new("kill")
        .args([sig, "--", target])
        .stderr(Stdio::null())
        .status();
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A repository with 1 MiB packs and a `MIB`-sized random file to back up.
fn setup(mib: u64) -> (Snap, PathBuf) {
    let s = Snap::new();
    s.ok(["init", "--pack-size-mib", "1"]);
    let data = s.path("data.bin");
    std::fs::write(&data, Rng::new(7).bytes((mib * MIB) as usize)).unwrap();
    (s, data)
}

/// Starts `snap backup --command 'echo $$ > PIDFILE; cat DATA; sleep 60'`
/// and waits until the data was read and `min_packs` packs are stored;
/// returns the snap child, the shell's pid and the sleeping grandchild's.
fn start_slow_backup(
    s: &Snap,
    data: &Path,
    min_packs: usize,
    env: &[(&str, &str)],
) -> (Child, u32, u32) {
    let pidfile = s.path("source.pid");
    let cmd = format!(
        "big.bin=echo $$ > {}; cat {}; sleep 60",
        pidfile.display(),
        data.display()
    );
    let mut c = s.cmd(["--no-progress", "backup", "--command", &cmd]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("starting snap backup");
    wait_until("the source shell", Duration::from_secs(60), || {
        std::fs::read_to_string(&pidfile).is_ok_and(|p| p.trim().parse::<u32>().is_ok())
    });
    let sh: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut sleeper = 0;
    wait_until("the source's sleep", Duration::from_secs(120), || {
        if let Some(p) = children(sh).into_iter().find(|&p| comm(p) == "sleep") {
            sleeper = p;
        }
        sleeper != 0
    });
    wait_until(
        &format!("{min_packs} stored packs"),
        Duration::from_secs(120),
        || packs(s) >= min_packs,
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "backup ended before the signal"
    );
    (child, sh, sleeper)
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("snap did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// After a stopped backup: a second backup of the same data on a fresh
/// cache (so it learns what is stored only from the repository's index
/// objects) must add less than half of the data.
fn second_backup_reuses(s: &mut Snap, data: &Path, size: u64) -> u64 {
    s.cache = s.path("fresh-cache");
    let cmd = format!("big.bin=cat {}", data.display());
    let sum = s.backup_json(["--command", &cmd]);
    let added = sum["summary"]["bytes_added_stored"].as_u64().unwrap();
    assert!(
        added < size / 2,
        "the next backup stored {added} bytes of {size}: the packs stored before the stop were not indexed"
    );
    added
}

fn interrupted_backup(sig: &str, code: i32) {
    let size = 24 * MIB;
    let (mut s, data) = setup(24);
    let (mut child, sh, sleeper) = start_slow_backup(&s, &data, 12, &[]);
    kill(sig, &child.id().to_string());
    let st = wait_exit(&mut child, Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(st.code(), Some(code), "{sig}: {st:?}\n{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // The source shell and its sleeping child were stopped, not orphaned.
    wait_until("the source to stop", Duration::from_secs(10), || {
        !alive(sh) && !alive(sleeper)
    });
    // No lease is left behind, and no snapshot was written.
    let locks: serde_json::Value = serde_json::from_str(&s.ok(["--json", "locks"])).unwrap();
    assert_eq!(locks.as_array().map(Vec::len), Some(0), "{locks}");
    assert!(s.snapshot_ids().is_empty());
    assert!(indexes(&s) > 0, "no index object was written");
    second_backup_reuses(&mut s, &data, size);
    // The repository is consistent.
    s.ok(["check"]);
}

#[test]
fn sigint_stops_children_indexes_packs_releases_lease() {
    interrupted_backup("-INT", 130);
}

#[test]
fn sigterm_stops_children_indexes_packs_releases_lease() {
    interrupted_backup("-TERM", 143);
}

/// With a 1 s index interval, packs stored before a SIGKILL are named by an
/// index object (well before the 64-pack threshold).
#[test]
fn index_checkpoint_timer_survives_sigkill() {
    let size = 16 * MIB;
    let (mut s, data) = setup(16);
    let (mut child, sh, sleeper) =
        start_slow_backup(&s, &data, 10, &[("SNAP_INDEX_INTERVAL", "1")]);
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap();
    child.wait().unwrap();
    kill("-KILL", &sleeper.to_string());
    kill("-KILL", &sh.to_string());
    assert!(
        indexes(&s) > 0,
        "no index object after 3 s of a 1 s interval"
    );
    second_backup_reuses(&mut s, &data, size);
}

const PASSWORD: &str = "Zq7-distinctive-PASSWORD-9xK";
const FROM_PASSWORD: &str = "from-Zq7-secret-2";
const NEW_PASSWORD: &str = "new-Zq7-secret-3";
const AWS_SECRET: &str = "aws-Zq7-secret-4";
const AWS_TOKEN: &str = "aws-Zq7-token-5";

fn secret_env(s: &mut Snap) {
    s.password = PASSWORD.into();
    let pw = s.path("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    for (k, v) in [
        ("SNAP_PASSWORD_FILE", pw.to_string_lossy().as_ref()),
        ("SNAP_FROM_PASSWORD", FROM_PASSWORD),
        ("SNAP_NEW_PASSWORD", NEW_PASSWORD),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
        ("AWS_SESSION_TOKEN", AWS_TOKEN),
        ("SNAP_TEST_MARKER", "visible"),
    ] {
        s.env.push((k.into(), v.into()));
    }
}

fn assert_no_secrets(what: &str, env: &str) {
    assert!(
        env.contains("SNAP_TEST_MARKER=visible"),
        "{what}: not the environment: {env}"
    );
    for secret in [
        PASSWORD,
        FROM_PASSWORD,
        NEW_PASSWORD,
        AWS_SECRET,
        AWS_TOKEN,
        "SNAP_PASSWORD_FILE=",
    ] {
        assert!(!env.contains(secret), "{what} holds {secret:?}:\n{env}");
    }
}

/// `snap backup --command env` with every secret set: the stored stream
/// holds none of them (before the fix it held the repository password).
#[test]
fn command_children_get_no_secrets() {
    let mut s = Snap::new();
    secret_env(&mut s);
    s.init();
    s.ok(["backup", "--command", "env.txt=env"]);
    let env = s.ok(["dump", "latest", "@streams/env.txt"]);
    assert_no_secrets("the --command stream", &env);
}

/// `snap run` of a profile: neither its hook nor the `command` source run
/// by the child `snap backup` (which gets the password by design) sees a
/// secret.
#[test]
fn profile_hook_and_source_get_no_secrets() {
    let mut s = Snap::new();
    secret_env(&mut s);
    s.init();
    let app = s.path("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("f"), b"x").unwrap();
    let config = s.path("snap.toml");
    std::fs::write(
        &config,
        format!(
            "[repository.main]\npath = {:?}\n\n[profile.app]\nrepository = \"main\"\npaths = [{:?}]\ncommand = [\"env.txt=env\"]\nbefore = \"env > {}\"\n",
            s.repo,
            app.to_string_lossy(),
            s.path("hook.env").display()
        ),
    )
    .unwrap();
    s.ok(["--config", config.to_str().unwrap(), "run", "app"]);
    let hook = std::fs::read_to_string(s.path("hook.env")).unwrap();
    assert_no_secrets("the before hook", &hook);
    let env = s.ok(["dump", "latest", "@streams/env.txt"]);
    assert_no_secrets("the profile's command stream", &env);
}

/// Host names, tags and paths holding terminal escapes are printed escaped
/// by `snapshots`, `ls` and `find`; `--json` keeps them exact.
#[test]
fn control_characters_are_escaped_in_human_output() {
    let s = Snap::new();
    s.init();
    let dir = s.path("src");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("f\x1b[31mred"), b"x").unwrap();
    s.ok([
        "backup",
        "--host",
        "evil\x1b[31mhost",
        "--tag",
        "t\x1b]0;title\x07",
        dir.to_str().unwrap(),
    ]);
    let out = s.ok(["snapshots"]);
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    assert!(out.contains("evil\\x1b[31mhost"), "{out}");
    assert!(out.contains("t\\x1b]0;title\\x07"), "{out}");
    let out = s.ok(["ls", "latest"]);
    assert!(!out.contains('\x1b'), "{out:?}");
    assert!(out.contains("f\\x1b[31mred"), "{out}");
    let out = s.ok(["find", "f*red"]);
    assert!(!out.contains('\x1b'), "{out:?}");
    assert!(out.contains("f\\x1b[31mred"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&s.ok(["--json", "snapshots"])).unwrap();
    assert_eq!(v[0]["hostname"], "evil\x1b[31mhost");
}

/// A command that does not stop by itself (here `repair index --read-data`,
/// holding an exclusive lease) ends at once on SIGTERM, as killed by the
/// signal, and still removes its lease.
#[test]
fn sigterm_outside_a_backup_removes_the_lease() {
    use std::os::unix::process::ExitStatusExt;
    let (s, data) = setup(8);
    s.ok(["backup", data.to_str().unwrap()]);
    let mut child = s
        .cmd([
            "--no-progress",
            "--limit-download",
            "500",
            "repair",
            "index",
            "--read-data",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let live = || {
        let v: serde_json::Value = serde_json::from_str(&s.ok(["--json", "locks"])).unwrap();
        v.as_array().map(Vec::len).unwrap_or(0)
    };
    wait_until("the repair's lease", Duration::from_secs(30), || {
        live() == 1
    });
    kill("-TERM", &child.id().to_string());
    let st = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(st.signal(), Some(15), "{st:?}");
    assert_eq!(live(), 0, "the lease outlived the process");
}

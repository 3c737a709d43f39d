//! Bounded memory at scale (issue #15): every command the issue names
//! (`check`, a `backup` into the big repository, a `restore` and a
//! `copy --latest` of that backup, `repair snapshots`, `repair index`,
//! `prune`) on a repository of 1 million indexed blobs
//! (examples/scale_repo.rs: real index objects and pack headers, sparse
//! packs, a real snapshot referencing half of them) stays under a fixed peak
//! RSS, and its peak RSS barely grows from 500 thousand (one index object of
//! the generator's 499,712 blobs) to 1 million blobs. Peak RSS is the
//! child's own `ru_maxrss` from `wait4`.

mod common;
#[path = "../examples/scale_repo.rs"]
#[allow(dead_code)]
mod scale_repo;

use common::cli::Snap;
use std::process::Stdio;

const MIB: u64 = 1024;

/// Runs `snap ARGS` on `s`; returns (exit success, stdout + stderr, peak RSS
/// in KiB of that process alone).
// The child is reaped by wait4 (for its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run_measured(s: &Snap, args: &[&str]) -> (bool, String, u64) {
    let name: Vec<&str> = args.iter().copied().filter(|a| !a.contains('/')).collect();
    let out = s.path(&format!("out-{}", name.join("-")));
    let f = std::fs::File::create(&out).expect("output file");
    let child = s
        .cmd(args)
        .stdout(f.try_clone().expect("dup"))
        .stderr(f)
        .stdin(Stdio::null())
        .spawn()
        .expect("running snap");
    let mut status = 0;
    // SAFETY: rusage is plain old data that wait4 fills in; the pid is our
    // own child, reaped exactly once here (`Child` is dropped unwaited).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(r, child.id() as i32, "wait4 failed");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    (ok, text, ru.ru_maxrss.max(0) as u64)
}

/// Set in the environment of the child that [`generate_in_child`] starts:
/// "REPO\nCACHE\nN".
const GENERATE: &str = "SNAP_SCALE_GENERATE";

/// Fills `s`'s repository with `n` synthetic blobs in a child process (this
/// test binary run again, which does only that).
///
/// Not in this process: on Linux a child's `ru_maxrss` starts from the
/// peak RSS of the process that spawned it (exec accounts the old address
/// space's high-water mark), so a test process that grew to 113 MiB while
/// generating would hide every command below that.
fn generate_in_child(s: &Snap, n: u64) {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "every_command_peak_rss_is_bounded_and_flat_in_the_number_of_blobs",
            "--nocapture",
        ])
        .env(GENERATE, format!("{}\n{}\n{n}", s.repo, s.cache.display()))
        .env("SNAP_PASSWORD", &s.password)
        .stdin(Stdio::null())
        .output()
        .expect("running the generator");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("synthetic blobs"),
        "generating {n} blobs failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// In the child [`generate_in_child`] starts: generates and returns true.
fn generate_if_child() -> bool {
    let Ok(spec) = std::env::var(GENERATE) else {
        return false;
    };
    let parts: Vec<&str> = spec.lines().collect();
    let [repo, cache, n] = parts[..] else {
        panic!("{GENERATE}: expected REPO, CACHE and N lines, got {spec:?}");
    };
    let pw = std::env::var("SNAP_PASSWORD").expect("SNAP_PASSWORD");
    let n: u64 = n.parse().expect("N");
    let summary =
        scale_repo::generate(repo, std::path::Path::new(cache), &pw, n, 50).expect("generate");
    println!("{summary}");
    true
}

/// The commands measured, in the order they run on one repository.
const STEPS: [&str; 7] = [
    "check",
    "backup",
    "restore",
    "copy --latest",
    "repair snapshots",
    "repair index",
    "prune",
];

/// Builds a repository of `n` synthetic blobs and runs every command of
/// [`STEPS`] on it (a backup of a small folder into it, a restore and a copy
/// of that backup, the repairs, which find nothing to repair, and the
/// prune); returns the peak RSS (KiB) of each, in [`STEPS`] order.
fn measure(n: u64) -> Vec<u64> {
    let s = Snap::new();
    s.init();
    generate_in_child(&s, n);
    let src = s.path("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"bounded memory\n".repeat(1000)).expect("write");
    std::fs::write(
        src.join("sub/b.bin"),
        (0..200_000u32)
            .map(|i| ((i * 7919) >> 3) as u8)
            .collect::<Vec<u8>>(),
    )
    .expect("write");
    let mut rss = Vec::new();
    let (ok, out, kib) = run_measured(&s, &["check"]);
    assert!(ok && out.contains("no errors"), "check failed:\n{out}");
    rss.push(kib);
    let (ok, out, kib) = run_measured(&s, &["backup", src.to_str().expect("utf-8 path")]);
    assert!(ok, "backup failed:\n{out}");
    rss.push(kib);
    let target = s.path("restored");
    let (ok, out, kib) = run_measured(
        &s,
        &[
            "restore",
            "latest",
            "--target",
            target.to_str().expect("utf-8 path"),
        ],
    );
    assert!(ok, "restore failed:\n{out}");
    let restored = common::cli::restored_path(&target, &src);
    assert_eq!(
        std::fs::read(restored.join("sub/b.bin")).expect("restored file"),
        std::fs::read(src.join("sub/b.bin")).expect("source file"),
        "restore wrote other bytes"
    );
    rss.push(kib);
    let mut d = Snap::new();
    d.cache = s.cache.clone();
    d.env
        .push(("SNAP_FROM_PASSWORD".into(), s.password.clone()));
    d.init();
    let (ok, out, kib) = run_measured(&d, &["copy", "--from", &s.repo, "--latest"]);
    assert!(ok, "copy failed:\n{out}");
    assert_eq!(d.snapshot_ids().len(), 1, "copy output:\n{out}");
    rss.push(kib);
    let (ok, out, kib) = run_measured(&s, &["repair", "snapshots"]);
    assert!(ok, "repair snapshots failed:\n{out}");
    rss.push(kib);
    let (ok, out, kib) = run_measured(&s, &["--json", "repair", "index"]);
    assert!(ok, "repair index failed:\n{out}");
    let r: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or("")).expect("repair index --json output");
    // Every synthetic pack and tree pack has a real header: all indexed.
    assert!(
        r["packs"].as_u64() >= Some(n / 4096),
        "repair index:\n{out}"
    );
    assert_eq!(r["packs_indexed"], r["packs"], "repair index:\n{out}");
    assert_eq!(r["blobs_lost"], 0, "repair index:\n{out}");
    rss.push(kib);
    let (ok, out, kib) = run_measured(&s, &["prune"]);
    assert!(ok, "prune failed:\n{out}");
    assert!(out.contains("blobs referenced"), "prune output:\n{out}");
    rss.push(kib);
    let line: Vec<String> = STEPS
        .iter()
        .zip(&rss)
        .map(|(s, k)| format!("{s} {} MiB", k / MIB))
        .collect();
    eprintln!("{n} blobs peak RSS: {}", line.join(", "));
    rss
}

#[test]
fn every_command_peak_rss_is_bounded_and_flat_in_the_number_of_blobs() {
    if generate_if_child() {
        return;
    }
    let small = measure(500_000);
    let big = measure(1_000_000);
    for (i, step) in STEPS.iter().enumerate() {
        // The target of issue #15 is 300 MiB at 50 million blobs; main's code
        // needed 656 MiB for prune at 1 million.
        assert!(big[i] < 300 * MIB, "{step}: {} MiB", big[i] / MIB);
        // Twice the blobs: at most 32 MiB more (SQLite page caches fill up;
        // nothing per blob stays in memory). Before the bounded rewrites,
        // check grew by about 100 bytes per blob, prune by 650 and
        // repair index by about 250 (131 → 250 MiB from 500k to 1M on main
        // at 3fd0b47: this assertion failed there).
        let grow = big[i].saturating_sub(small[i]) / MIB;
        assert!(grow < 32, "{step} grew by {grow} MiB from 500k to 1M blobs");
    }
}

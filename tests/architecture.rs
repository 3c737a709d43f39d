//! Architecture invariants (ARCHITECTURE.md) that no other test holds:
//! checks over the source tree (which module may use what) and one end-to-end
//! check that nothing readable reaches the repository.
//!
//! The source checks read `src/` as text, skipping comment lines. Their
//! allow-lists are the invariants: widening one is an architecture change
//! and belongs in ARCHITECTURE.md too.

mod common;
use common::cli::Snap;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, as paths relative to the crate root.
fn rust_files(dir: &str) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    walk(&root.join(dir), &mut out);
    out.sort();
    out.into_iter()
        .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
        .collect()
}

/// The code lines of `file` (comment lines and doc comments left out) that
/// contain `needle`, as "path:line: text".
fn code_hits(file: &Path, needle: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, l)| format!("{}:{}: {}", file.display(), i + 1, l.trim()))
        .collect()
}

/// Lines using any of `needles` in the files under `dir` that `allowed`
/// (path prefixes) does not cover.
fn offenders(dir: &str, needles: &[&str], allowed: &[&str]) -> Vec<String> {
    rust_files(dir)
        .iter()
        .filter(|f| !allowed.iter().any(|a| f.starts_with(a)))
        .flat_map(|f| needles.iter().flat_map(move |n| code_hits(f, n)))
        .collect()
}

#[test]
fn the_scanner_sees_what_it_looks_for() {
    // Guards the checks below against passing vacuously: the scan finds the
    // uses that are allowed.
    assert!(!offenders("src", &["rusqlite"], &[]).is_empty());
    assert!(!offenders("src", &["rayon::"], &[]).is_empty());
    assert!(!offenders("src", &["println!"], &[]).is_empty());
    assert!(!offenders("src", &["std::fs"], &[]).is_empty());
}

#[test]
fn format_does_no_io_and_holds_no_keys() {
    let bad = offenders(
        "src/format",
        &[
            "std::fs",
            "std::io",
            "std::net",
            "std::process",
            "std::thread",
            "crate::store",
            "crate::catalog",
            "crate::crypto",
            "crate::repo",
            "chacha20poly1305",
            "argon2::",
            "object_store",
            "rusqlite",
            "tokio",
            "rayon",
        ],
        &[],
    );
    assert!(
        bad.is_empty(),
        "format/ must stay pure:\n{}",
        bad.join("\n")
    );
}

#[test]
fn sqlite_only_in_the_catalog() {
    let bad = offenders(
        "src",
        &["rusqlite"],
        &[
            "src/catalog.rs",
            "src/index_view.rs",
            "src/error.rs",
            "src/write/sqlite.rs",
        ],
    );
    assert!(
        bad.is_empty(),
        "SQLite is the catalog's business:\n{}",
        bad.join("\n")
    );
}

#[test]
fn only_ingest_and_restore_spawn_rayon_work() {
    let bad = offenders(
        "src",
        &["rayon"],
        &["src/write/ingest.rs", "src/read/restore/"],
    );
    assert!(
        bad.is_empty(),
        "rayon outside write::ingest and read::restore:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_library_never_prints() {
    let bad = offenders(
        "src",
        &[
            "println!",
            "print!(",
            "eprintln!",
            "eprint!(",
            "dbg!",
            "anyhow",
            "indicatif",
        ],
        &["src/cli/", "src/main.rs"],
    );
    assert!(
        bad.is_empty(),
        "output and anyhow belong to the binary:\n{}",
        bad.join("\n")
    );
}

#[test]
fn only_the_binary_and_the_signal_handler_exit() {
    // interrupt::die ends the process as the signal's default action would,
    // after the cleanups ran (a signal outside a graceful operation).
    let bad = offenders(
        "src",
        &["process::exit", "process::abort"],
        &["src/cli/", "src/main.rs", "src/interrupt.rs"],
    );
    assert!(
        bad.is_empty(),
        "the library returns errors:\n{}",
        bad.join("\n")
    );
}

/// Every repository object but `config` and key files is sealed: a backup
/// of a file with a distinctive name and raw-stored content leaves neither
/// the name, the content nor the source path readable in any object.
#[test]
fn nothing_reaches_the_backend_unsealed() {
    let s = Snap::new();
    s.init();
    let name = "Distinctive-Name-q7Zk.bin";
    let src = s.path("src-Folder-x9Wp");
    std::fs::create_dir_all(&src).unwrap();
    // Incompressible bytes are stored raw (format-spec §12), so an unsealed
    // payload would hold the marker verbatim.
    let marker = b"CONTENT-MARKER-r4Tn-CONTENT-MARKER";
    let mut data = common::gen::Rng::new(7).bytes(256 << 10);
    for at in [0, 100_000, 200_000] {
        data[at..at + marker.len()].copy_from_slice(marker);
    }
    std::fs::write(src.join(name), &data).unwrap();
    s.backup_json([&src]);
    // The marker is really in the source, so the search below can succeed.
    assert!(std::fs::read(src.join(name))
        .unwrap()
        .windows(marker.len())
        .any(|w| w == marker));

    let needles: [&[u8]; 3] = [
        name.as_bytes(),
        marker,
        b"src-Folder-x9Wp", // a component of the source path
    ];
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::from(&s.repo)];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let kinds: std::collections::BTreeSet<String> = files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&s.repo).unwrap();
            rel.components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for k in ["config", "keys", "data", "index", "snapshots"] {
        assert!(kinds.contains(k), "no {k} object in {kinds:?}");
    }
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n),
                "{} holds {:?} in the clear",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
}

/// Every `§N` cited in the code, the tests and the docs (and inside
/// format-spec.md itself) names a section heading of format-spec.md, so a
/// renumbering cannot leave stale citations behind. Lines citing another
/// document's sections (an RFC, the PostgreSQL manual) are left out.
#[test]
fn every_format_spec_citation_names_a_section() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = std::fs::read_to_string(root.join("format-spec.md")).unwrap();
    let mut sections = std::collections::BTreeSet::new();
    for line in spec.lines() {
        let Some(rest) = line.strip_prefix("## ").or(line.strip_prefix("### ")) else {
            continue;
        };
        let num: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let num = num.trim_end_matches('.');
        if !num.is_empty() {
            sections.insert(num.to_string());
        }
    }
    assert!(
        sections.len() > 20,
        "no numbered sections in format-spec.md"
    );

    let mut files: Vec<PathBuf> = ["src", "tests", "benches"]
        .iter()
        .flat_map(|d| rust_files(d))
        .collect();
    for doc in ["README.md", "ARCHITECTURE.md", "format-spec.md"] {
        files.push(PathBuf::from(doc));
    }
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p.strip_prefix(root).unwrap().to_path_buf());
        }
    }
    files.push(PathBuf::from("tests/data/vectors.json"));
    let mut stale = Vec::new();
    let mut cited = 0;
    for f in &files {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.contains("RFC") || line.contains("PostgreSQL 17 docs") {
                continue;
            }
            for (at, _) in line.match_indices('§') {
                let num: String = line[at + '§'.len_utf8()..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let num = num.trim_end_matches('.');
                if num.is_empty() {
                    continue;
                }
                cited += 1;
                if !sections.contains(num) {
                    stale.push(format!("{}:{}: §{num}", f.display(), i + 1));
                }
            }
        }
    }
    assert!(cited > 100, "only {cited} citations found");
    assert!(
        stale.is_empty(),
        "citations of sections format-spec.md does not have:\n{}",
        stale.join("\n")
    );
}

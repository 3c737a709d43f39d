//! Secrets (issue "Reliability and security"): the password is never taken
//! on the command line and never printed or stored in the clear; the catalog
//! cache is private (files 0600 including SQLite's WAL/SHM, directories 0700).

mod common;
use common::cli::Snap;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const PASSWORD: &str = "Zq7-distinctive-PASSWORD-9xK";

fn walk(p: &Path, out: &mut Vec<std::path::PathBuf>) {
    out.push(p.to_path_buf());
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap() {
            walk(&e.unwrap().path(), out);
        }
    }
}

#[test]
fn no_password_flag_on_the_command_line() {
    let s = Snap::new();
    for sub in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["backup", "--help"],
        vec!["restore", "--help"],
        vec!["snapshots", "--help"],
        vec!["ls", "--help"],
    ] {
        let out = s.ok(&sub);
        for line in out.lines() {
            let l = line.trim_start();
            assert!(
                !(l.starts_with("--password ")
                    || l.starts_with("--password=")
                    || l == "--password"),
                "`snap {sub:?}` offers a password flag: {line}"
            );
        }
        assert!(out.contains("--password-file"), "{sub:?}: {out}");
    }
    // Passing one is a usage error (clap: exit 2), not silently accepted.
    let out = s.run(["--password", PASSWORD, "snapshots"]);
    assert_eq!(out.status.code(), Some(2));
    let out = s.run(["init", "--password", PASSWORD]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn password_never_printed_or_stored_and_cache_is_private() {
    let mut s = Snap::new();
    s.password = PASSWORD.into();
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("file"), b"some content").unwrap();
    let pwfile = s.path("pw");
    std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
    let target = s.path("out");
    let mut outputs = Vec::new();
    let runs: Vec<Vec<&OsStr>> = vec![
        vec!["init".as_ref()],
        vec!["backup".as_ref(), src.as_os_str()],
        vec!["--json".as_ref(), "backup".as_ref(), src.as_os_str()],
        vec!["snapshots".as_ref()],
        vec!["--json".as_ref(), "snapshots".as_ref()],
        vec!["ls".as_ref(), "latest".as_ref()],
        vec![
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
        vec![
            "restore".as_ref(),
            "nope".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
        vec!["backup".as_ref(), "/does/not/exist".as_ref()],
        vec!["init".as_ref()],
    ];
    for args in &runs {
        outputs.push((format!("{args:?}"), s.run(args)));
    }
    // With the password file instead of the environment.
    let mut c = s.cmd([
        "--password-file".as_ref(),
        pwfile.as_os_str(),
        "snapshots".as_ref(),
    ]);
    c.env_remove("SNAP_PASSWORD");
    outputs.push(("--password-file snapshots".into(), c.output().unwrap()));
    // A wrong password is not echoed either.
    let mut wrong = Snap::new();
    wrong.repo = s.repo.clone();
    wrong.password = format!("{PASSWORD}-wrong");
    outputs.push(("wrong password".into(), wrong.run(["snapshots"])));
    assert_eq!(outputs.last().unwrap().1.status.code(), Some(12));
    for (what, out) in &outputs {
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains(PASSWORD) && !text.contains("distinctive"),
                "{what} printed the password on {stream}: {text}"
            );
        }
    }
    // Not in any repository object or cache file (everything secret is
    // sealed or derived).
    let mut files = Vec::new();
    walk(Path::new(&s.repo), &mut files);
    walk(&s.cache, &mut files);
    for f in files.iter().filter(|f| f.is_file()) {
        let data = std::fs::read(f).unwrap();
        assert!(
            !data
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "{} holds the password",
            f.display()
        );
    }
    // The cache: every directory 0700, every file (catalog, WAL, SHM) 0600.
    let mut cache = Vec::new();
    walk(&s.cache, &mut cache);
    let mut sqlite_files = 0;
    for p in &cache {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        if p.is_dir() {
            assert_eq!(mode, 0o700, "{} is {mode:o}", p.display());
        } else {
            assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
            sqlite_files += 1;
        }
    }
    assert!(sqlite_files >= 1, "no catalog file in {:?}", cache);
    // WAL and SHM exist while a connection is open: check them under a
    // running process too (a restore to stdout of a long stream would be
    // racy; open the catalog in-process instead).
    let repo = snap::Repository::open(&s.repo, PASSWORD.as_bytes(), &s.cache).unwrap();
    let mut during = Vec::new();
    walk(&s.cache, &mut during);
    let names: Vec<String> = during
        .iter()
        .filter(|p| p.is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("-wal")) && names.iter().any(|n| n.ends_with("-shm")),
        "no WAL/SHM files while open: {names:?}"
    );
    for p in during.iter().filter(|p| p.is_file()) {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
    }
    drop(repo);
}

//! `snap key`: several passwords, removal rules, recovery code export/import.

mod common;
use common::cli::{restored_path, tree_diff, Snap};
use std::ffi::OsStr;

fn keys_json(s: &Snap) -> Vec<serde_json::Value> {
    let out = s.ok(["--json", "key", "list"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("key list --json is one document");
    v.as_array().expect("array").clone()
}

fn current_key(keys: &[serde_json::Value]) -> String {
    let cur: Vec<_> = keys.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(cur.len(), 1, "exactly one key in use: {keys:?}");
    cur[0]["id"].as_str().unwrap().to_string()
}

/// Replaces one base32 character in the middle of a recovery code.
fn corrupt_one_char(code: &str) -> String {
    let mut chars: Vec<char> = code.trim().chars().collect();
    let pos = chars.len() / 2;
    let pos = if chars[pos] == '-' { pos + 1 } else { pos };
    chars[pos] = if chars[pos] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[test]
fn passwords_removal_and_recovery_code() {
    let mut s = Snap::new();
    s.password = "password-A".into();
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(
        src.join("d/file.bin"),
        (0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(src.join("note.txt"), b"keep me").unwrap();
    s.ok([OsStr::new("backup"), src.as_os_str()]);

    let keys = keys_json(&s);
    assert_eq!(keys.len(), 1);
    let key_a = current_key(&keys);

    // Add password B and open with it.
    s.env = vec![("SNAP_NEW_PASSWORD".into(), "password-B".into())];
    s.ok(["key", "add"]);
    s.env.clear();
    s.password = "password-B".into();
    assert_eq!(s.snapshot_ids().len(), 1, "B opens the repository");
    let keys = keys_json(&s);
    assert_eq!(keys.len(), 2);
    let key_b = current_key(&keys);
    assert_ne!(key_a, key_b);
    for k in &keys {
        assert!(k["created"].is_string() && k["hostname"].is_string() && k["username"].is_string());
    }

    // The key in use cannot be removed; A can (we are using B).
    let (code, err) = s.fail(["key", "remove", &key_b[..10]]);
    // Refusals of a request are usage errors: exit 2.
    assert_eq!(code, 2);
    assert!(err.contains("in use"), "{err}");
    s.ok(["key", "remove", &key_a[..10]]);
    assert_eq!(keys_json(&s).len(), 1);

    // A no longer opens the repository.
    s.password = "password-A".into();
    let (code, err) = s.fail(["snapshots"]);
    assert_eq!(code, 12, "{err}");
    assert!(err.contains("wrong password"), "{err}");
    s.password = "password-B".into();

    // The last key cannot be removed.
    let (code, err) = s.fail(["key", "remove", &key_b]);
    // A usage error: exit 2.
    assert_eq!(code, 2);
    assert!(err.contains("last key"), "{err}");
    assert_eq!(keys_json(&s).len(), 1);

    // Export the recovery code with B: stdout only, warning on stderr.
    let out = s.run(["key", "export"]);
    assert!(out.status.success());
    let code_text = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("secret"), "{stderr}");
    assert!(
        !stderr.contains(code_text.trim()),
        "code must not be on stderr"
    );
    let code_text = code_text.trim().to_string();
    assert_eq!(code_text.replace('-', "").len(), 184, "{code_text}");

    // Export requires the password.
    s.password = "nope".into();
    let (code, _) = s.fail(["key", "export"]);
    assert_eq!(code, 12);
    s.password = "password-B".into();

    // Lose every password: delete all key files.
    let keys_dir = std::path::Path::new(&s.repo).join("keys");
    for e in std::fs::read_dir(&keys_dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let (code, _) = s.fail(["snapshots"]);
    assert_ne!(code, 0);

    // A recovery code with one changed character is rejected by its checksum.
    s.env = vec![("SNAP_NEW_PASSWORD".into(), "password-C".into())];
    let bad = corrupt_one_char(&code_text);
    assert_ne!(bad, code_text);
    let out = s.run_stdin(["key", "import"], bad.as_bytes());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checksum"), "{err}");
    assert_eq!(
        std::fs::read_dir(&keys_dir).unwrap().count(),
        0,
        "no key written"
    );

    // The intact code (lower case, with a newline) imports with password C.
    let out = s.run_stdin(
        ["key", "import"],
        format!("{}\n", code_text.to_lowercase()).as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.env.clear();
    s.password = "password-C".into();
    let ids = s.snapshot_ids();
    assert_eq!(ids.len(), 1);
    let target = s.path("out");
    s.ok([
        OsStr::new("restore"),
        OsStr::new("latest"),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    let d = tree_diff(&src, &restored_path(&target, &src));
    assert!(d.is_empty(), "{d:?}");

    // key passwd: C -> D; C stops working, D works.
    s.env = vec![("SNAP_NEW_PASSWORD".into(), "password-D".into())];
    s.ok(["key", "passwd"]);
    s.env.clear();
    let (code, _) = s.fail(["snapshots"]);
    assert_eq!(code, 12);
    s.password = "password-D".into();
    assert_eq!(s.snapshot_ids().len(), 1);
    assert_eq!(keys_json(&s).len(), 1);
}

#[test]
fn recovery_code_of_another_repository_is_refused() {
    let a = Snap::new();
    a.init();
    let code = a.ok(["key", "export"]);
    let b = Snap::new();
    b.init();
    let mut cmd_env = b.env.clone();
    cmd_env.push(("SNAP_NEW_PASSWORD".into(), "x".into()));
    let b = Snap { env: cmd_env, ..b };
    let out = b.run_stdin(["key", "import"], code.as_bytes());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to repository"), "{err}");
    assert_eq!(keys_json(&b).len(), 1);

    // The same code imports into its own repository from --code-file, and
    // the JSON export carries the same code.
    let v: serde_json::Value = serde_json::from_str(&a.ok(["--json", "key", "export"])).unwrap();
    assert_eq!(v["code"].as_str().unwrap(), code.trim());
    let f = a.path("code.txt");
    std::fs::write(&f, &code).unwrap();
    let mut a = a;
    a.env.push(("SNAP_NEW_PASSWORD".into(), "second".into()));
    a.ok([
        OsStr::new("key"),
        OsStr::new("import"),
        OsStr::new("--code-file"),
        f.as_os_str(),
    ]);
    assert_eq!(keys_json(&a).len(), 2);
    a.password = "second".into();
    assert_eq!(
        a.snapshot_ids().len(),
        0,
        "the imported key opens the repository"
    );
}

#[test]
fn new_password_is_never_taken_from_arguments() {
    let s = Snap::new();
    s.init();
    // No SNAP_NEW_PASSWORD, no file, no terminal: refuse.
    let (code, err) = s.fail(["key", "add"]);
    // A usage error: exit 2.
    assert_eq!(code, 2);
    assert!(err.contains("no new password"), "{err}");
    // A password file works.
    let f = s.path("pw");
    std::fs::write(&f, "from-file\n").unwrap();
    s.ok([
        OsStr::new("key"),
        OsStr::new("add"),
        OsStr::new("--new-password-file"),
        f.as_os_str(),
    ]);
    assert_eq!(keys_json(&s).len(), 2);
}

/// Key add/remove and recovery-code import against the S3 test server.
#[test]
fn keys_on_s3() {
    let Some(s3) = common::services::s3() else {
        return;
    };
    let mut s = Snap::new();
    s.repo = s3.repo_url(&common::services::unique_name("keys_"));
    s.env = s3.env();
    s.password = "s3-A".into();
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f.txt"), b"on s3").unwrap();
    s.ok([OsStr::new("backup"), src.as_os_str()]);
    let key_a = current_key(&keys_json(&s));
    let code = s.ok(["key", "export"]);

    s.env.push(("SNAP_NEW_PASSWORD".into(), "s3-B".into()));
    s.ok(["key", "add"]);
    s.password = "s3-B".into();
    s.ok(["key", "remove", &key_a]);
    assert_eq!(keys_json(&s).len(), 1);
    s.password = "s3-A".into();
    let (c, _) = s.fail(["snapshots"]);
    assert_eq!(c, 12);

    // Recover with the code: password C, then dump the file.
    s.env.pop();
    s.env.push(("SNAP_NEW_PASSWORD".into(), "s3-C".into()));
    let out = s.run_stdin(["key", "import"], code.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.password = "s3-C".into();
    let f = format!("{}/f.txt", src.display());
    assert_eq!(s.run(["dump", "latest", &f]).stdout, b"on s3");
    assert_eq!(keys_json(&s).len(), 2);
}

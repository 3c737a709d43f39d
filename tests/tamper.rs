//! Tamper evidence (issue "Reliability and security"): an attacker with write
//! access to the storage rewrites objects under their existing names. Every
//! case must be detected when the data is read (restore fails with a clear
//! error and a non-zero exit), never restored as wrong data. After the
//! original bytes are put back, everything restores again, which shows that
//! the failure came from the tampering.
//!
//! After the lifecycle branch is merged, `snap check --read-data` must detect
//! the same cases: see CHECK_READ_DATA in tests/common/verify.rs.

mod common;
use common::cli::{restored_path, Snap};
use common::gen::Rng;
use common::verify::{backup_id, tree_hash, verify_repository, Model};
use snap::format::BlobKind;
use snap::store::ObjectKind;
use snap::{IndexId, PackId};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// One blob as listed in the repository's index objects.
#[derive(Debug, Clone)]
struct Blob {
    kind: BlobKind,
    pack: PackId,
    offset: u32,
    length: u32,
}

/// Every blob of every index object, read through the library.
fn blobs(s: &Snap) -> Vec<Blob> {
    let repo = snap::Repository::open(&s.repo, s.password.as_bytes(), &s.cache).unwrap();
    let mut out = Vec::new();
    for l in repo.store().list("index/").unwrap() {
        let idx = repo
            .read_index(&IndexId::from_hex(&l.name).unwrap())
            .unwrap();
        for p in idx.packs {
            for b in p.blobs {
                out.push(Blob {
                    kind: b.kind,
                    pack: p.id,
                    offset: b.offset,
                    length: b.length,
                });
            }
        }
    }
    out
}

fn pack_path(s: &Snap, id: &PackId) -> PathBuf {
    Path::new(&s.repo).join(ObjectKind::Pack.key(&id.to_hex()))
}

/// A repository with two snapshots of a tree of many equal-sized,
/// incompressible files (so that equal-length sealed blobs share packs).
fn setup() -> (Snap, Model, BTreeMap<Vec<u8>, String>) {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    let mut rng = Rng::new(77);
    for i in 0..16 {
        std::fs::write(src.join(format!("eq-{i:02}")), rng.bytes(20_000)).unwrap();
    }
    std::fs::write(src.join("dir/text"), rng.text(300_000)).unwrap();
    let mut model = Model::default();
    let h = tree_hash(&src);
    model.add(&backup_id(&s.backup_json([&src])), &src, h);
    std::fs::write(src.join("dir/later"), rng.text(5000)).unwrap();
    let h = tree_hash(&src);
    model.add(&backup_id(&s.backup_json([&src])), &src, h);
    // Content → file name, to spot content restored under a wrong name.
    let mut contents = BTreeMap::new();
    for e in walk(&src) {
        if e.is_file() {
            contents.insert(std::fs::read(&e).unwrap(), e.display().to_string());
        }
    }
    (s, model, contents)
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap() {
            out.extend(walk(&e.unwrap().path()));
        }
    }
    out
}

/// Restores `latest` and asserts that it fails with one-line errors, one
/// containing one of `needles`, and that no file was restored with another
/// file's content. Returns the error line.
fn expect_detected(
    s: &Snap,
    spec: &str,
    needles: &[&str],
    contents: &BTreeMap<Vec<u8>, String>,
) -> String {
    let target = s.path(&format!("restore-{}", common::services::unique_name("t")));
    let (code, err) = s.fail([
        OsStr::new("restore"),
        OsStr::new(spec),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    assert_ne!(code, 0);
    assert!(
        needles.iter().any(|n| err.contains(n)),
        "tampering not reported as expected ({needles:?}): {err}"
    );
    // One line per problem: a fatal error, or (since damaged files are
    // reported per file and the rest restored) the summary, one line per
    // damaged file and a closing line.
    assert!(
        err.trim().lines().all(|l| l.starts_with("snap: error: ")
            || l.starts_with("error: ")
            || l.starts_with("restored snapshot ")),
        "unexpected output: {err}"
    );
    let src = s.path("src");
    let root = restored_path(&target, &src);
    if root.exists() {
        for f in walk(&root) {
            if !f.is_file() {
                continue;
            }
            let data = std::fs::read(&f).unwrap();
            let rel = f.strip_prefix(&root).unwrap();
            if let Some(orig) = contents.get(&data) {
                assert_eq!(
                    Path::new(orig),
                    src.join(rel),
                    "{} was restored with the content of {orig}",
                    f.display()
                );
            }
        }
    }
    err.trim().to_string()
}

/// A planted index or snapshot object (`fake`) is skipped (issue #12): the
/// restore of `spec` succeeds with the original contents and a warning that
/// names the object and contains `needle`; `check` fails naming it.
fn expect_skipped(
    s: &Snap,
    spec: &str,
    fake: &Path,
    needle: &str,
    contents: &BTreeMap<Vec<u8>, String>,
) -> String {
    let target = s.path(&format!("restore-{}", common::services::unique_name("t")));
    let out = s.run([
        OsStr::new("restore"),
        OsStr::new(spec),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "restore failed: {err}");
    let short = &fake.file_name().unwrap().to_string_lossy()[..8];
    assert!(
        err.contains("warning") && err.contains(short) && err.contains(needle),
        "planted object not named in a warning ({needle}): {err}"
    );
    let src = s.path("src");
    let root = restored_path(&target, &src);
    let mut files = 0;
    for f in walk(&root) {
        if f.is_file() {
            let data = std::fs::read(&f).unwrap();
            let rel = f.strip_prefix(&root).unwrap();
            if let Some(orig) = contents.get(&data) {
                assert_eq!(
                    Path::new(orig),
                    src.join(rel),
                    "{} restored with wrong content",
                    f.display()
                );
            }
            files += 1;
        }
    }
    assert!(files > 0, "nothing restored");
    let (_, check) = s.fail(["check"]);
    let check_out = String::from_utf8_lossy(&s.run(["check"]).stdout).into_owned();
    let full = fake.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        check.contains(&full) || check_out.contains(&full),
        "check does not name {full}: {check} {check_out}"
    );
    err.trim().to_string()
}

#[test]
fn tampering_is_detected_at_restore() {
    let (s, model, contents) = setup();
    verify_repository(&s, &model);
    let all = blobs(&s);
    let mut detected = 0;

    // 1. Two equal-length sealed data blobs swapped inside one pack, written
    //    back under the same object name.
    let mut by_pack: BTreeMap<(PackId, u32), Vec<&Blob>> = BTreeMap::new();
    for b in all.iter().filter(|b| b.kind == BlobKind::Data) {
        by_pack.entry((b.pack, b.length)).or_default().push(b);
    }
    let pair = by_pack
        .values()
        .find(|v| v.len() >= 2)
        .expect("two equal-length blobs in one pack");
    let (a, b) = (pair[0], pair[1]);
    let path = pack_path(&s, &a.pack);
    let orig = std::fs::read(&path).unwrap();
    let mut t = orig.clone();
    let (ao, bo, n) = (a.offset as usize, b.offset as usize, a.length as usize);
    let blob_a = orig[ao..ao + n].to_vec();
    t[ao..ao + n].copy_from_slice(&orig[bo..bo + n]);
    t[bo..bo + n].copy_from_slice(&blob_a);
    std::fs::write(&path, &t).unwrap();
    let e = expect_detected(&s, "latest", &["failed authentication"], &contents);
    eprintln!("swapped blobs: {e}");
    detected += 1;
    std::fs::write(&path, &orig).unwrap();
    verify_repository(&s, &model);

    // 2. A pack truncated (last third cut off), same name.
    let big = all
        .iter()
        .filter(|b| b.kind == BlobKind::Data)
        .max_by_key(|b| b.offset)
        .unwrap();
    let path = pack_path(&s, &big.pack);
    let orig = std::fs::read(&path).unwrap();
    std::fs::write(&path, &orig[..big.offset as usize + 10]).unwrap();
    let e = expect_detected(
        &s,
        "latest",
        &["truncated", "failed authentication"],
        &contents,
    );
    eprintln!("truncated pack: {e}");
    detected += 1;
    std::fs::write(&path, &orig).unwrap();
    verify_repository(&s, &model);

    // 3. Tree blobs edited in place (one byte of ciphertext flipped). Every
    //    tree blob is edited, pack by pack, so the trees `latest` needs are
    //    hit whichever packs they went to.
    let mut tree_packs: BTreeMap<PackId, Vec<&Blob>> = BTreeMap::new();
    for b in all.iter().filter(|b| b.kind == BlobKind::Tree) {
        tree_packs.entry(b.pack).or_default().push(b);
    }
    assert!(!tree_packs.is_empty());
    let mut originals = Vec::new();
    for (pack, trees) in &tree_packs {
        let path = pack_path(&s, pack);
        let orig = std::fs::read(&path).unwrap();
        let mut t = orig.clone();
        for tb in trees {
            t[tb.offset as usize + tb.length as usize / 2] ^= 0x01;
        }
        std::fs::write(&path, &t).unwrap();
        originals.push((path, orig));
    }
    // The catalog of the machine that made the backup caches its trees, each
    // used only when its keyed id checks, so that machine restores the right
    // data without reading the edited blobs. A new machine (no cache) reads
    // the trees from the packs and must detect the edit.
    std::fs::remove_dir_all(&s.cache).unwrap();
    let e = expect_detected(&s, "latest", &["failed authentication"], &contents);
    eprintln!("edited tree blobs: {e}");
    detected += 1;
    for (path, orig) in originals {
        std::fs::write(&path, &orig).unwrap();
    }
    verify_repository(&s, &model);

    // 5. An older index object replayed under a new name.
    let repo_dir = Path::new(&s.repo);
    let idx = std::fs::read_dir(repo_dir.join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let fake = repo_dir.join("index").join("ab".repeat(32));
    std::fs::copy(&idx, &fake).unwrap();
    let e = expect_skipped(&s, "latest", &fake, "does not match its name", &contents);
    eprintln!("replayed index: {e}");
    detected += 1;
    std::fs::remove_file(&fake).unwrap();
    verify_repository(&s, &model);

    // 6. An older snapshot object replayed under a new name.
    let first = model.snapshots.keys().next().unwrap().clone();
    let snap_obj = repo_dir.join("snapshots").join(&first);
    let fake = repo_dir.join("snapshots").join("cd".repeat(32));
    std::fs::copy(&snap_obj, &fake).unwrap();
    let e = expect_skipped(&s, &first, &fake, "does not match its name", &contents);
    eprintln!("replayed snapshot: {e}");
    detected += 1;
    std::fs::remove_file(&fake).unwrap();
    verify_repository(&s, &model);

    // 7. An index object stored as a snapshot under its own correct name
    //    (valid name, valid envelope, wrong role): the role-bound associated
    //    data makes it fail.
    let idx_name = idx.file_name().unwrap().to_owned();
    let fake = repo_dir.join("snapshots").join(&idx_name);
    std::fs::copy(&idx, &fake).unwrap();
    let e = expect_skipped(&s, "latest", &fake, "failed authentication", &contents);
    eprintln!("index as snapshot: {e}");
    detected += 1;
    std::fs::remove_file(&fake).unwrap();
    verify_repository(&s, &model);

    // 8. A snapshot deleted: it is gone from the list and asking for it by
    //    id fails (no other snapshot is restored instead).
    let orig = std::fs::read(&snap_obj).unwrap();
    std::fs::remove_file(&snap_obj).unwrap();
    assert!(!s.snapshot_ids().contains(&first));
    let e = expect_detected(&s, &first, &["no snapshot matches"], &contents);
    eprintln!("deleted snapshot: {e}");
    detected += 1;
    std::fs::write(&snap_obj, orig).unwrap();
    verify_repository(&s, &model);

    eprintln!("tampering cases detected: {detected}");
    assert_eq!(detected, 7);
}

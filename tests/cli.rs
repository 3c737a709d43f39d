//! End-to-end tests of the built `snap` binary on local repositories.

mod common;
use common::cli::{restored_path, tree_diff, Snap};

#[test]
fn small_tree_roundtrip() {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/file.txt"), b"hello").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("a/b/file.txt", src.join("link")).unwrap();
    s.ok([std::ffi::OsStr::new("backup"), src.as_os_str()]);
    let target = s.path("out");
    s.ok([
        std::ffi::OsStr::new("restore"),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    let d = tree_diff(&src, &restored_path(&target, &src));
    assert!(d.is_empty(), "{d:?}");
}

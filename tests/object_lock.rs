//! S3 Object Lock (issue #16, format-spec §25.8), what holds today: snap cannot yet write
//! into a bucket whose default Object Lock retention wants `Content-MD5` on every upload
//! (object_store does not send it), and says so in one line instead of an S3 error
//! document. Runs the built binary against the moto of scripts/services.sh that enforces
//! IAM authorization, bucket `<bucket>-lockdefault` (Object Lock with a default retention of
//! 1 day); under CI=true a missing server fails the test.

mod common;
use common::cli::Snap;
use common::services::{self, unique_name};

#[test]
fn init_into_a_bucket_with_default_retention_fails_in_one_line() {
    let Some(auth) = services::s3auth() else {
        return;
    };
    let mut s = Snap::new();
    s.repo = format!(
        "s3://{}-lockdefault/{}",
        auth.bucket,
        unique_name("lockdefault_")
    );
    s.env = auth.env(&auth.full);
    let (code, err) = s.fail(["init"]);
    assert_ne!(code, 0);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line: {err}");
    assert!(
        lines[0].starts_with("snap: error: ")
            && lines[0].contains("the bucket locks every new object (Object Lock default retention) and wants a Content-MD5 header on uploads, which snap cannot send yet"),
        "unclear error: {err}"
    );
    // Nothing half-made is left: the location is still not a repository.
    let (code, err) = s.fail(["snapshots"]);
    assert_eq!(code, 10, "{err}");
}

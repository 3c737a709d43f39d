//! The S3 requests object_store 0.14 cannot make (format-spec §25.8): an
//! upload with `Content-MD5` and the Object Lock headers
//! (`x-amz-object-lock-mode`, `x-amz-object-lock-retain-until-date`),
//! `GetObjectLockConfiguration`, `GetObjectRetention`, `PutObjectRetention`,
//! `ListObjectVersions` and `DeleteObject` of one version.
//!
//! Each request is signed here with AWS Signature Version 4 in the
//! `Authorization` header (the algorithm of the AWS "Signature Version 4
//! signing process" documentation: canonical request → string to sign →
//! HMAC-SHA256 chain of date, region, service, `aws4_request`), with
//! HMAC-SHA256, SHA-256 and MD5 from the crates object_store already links
//! (aws-lc-rs, md-5), and sent with the reqwest client object_store already
//! builds. Presigned URLs (what `rusty-s3` makes) are not enough: servers
//! that enforce IAM policies, moto among them, want the `Authorization`
//! header, and `aws-sigv4` brings the AWS SDK's runtime crates with it.
//!
//! Credentials, region, endpoint and path- or virtual-hosted-style requests
//! come from the same `AmazonS3Builder` as the object_store S3 client
//! (`AWS_*` variables, `--s3-endpoint`); only static keys (with an optional
//! session token) are supported here: credentials from instance metadata or
//! web identity make the Object Lock requests fail with one line saying so.

use super::{ObjectVersion, Retention};
use crate::error::{Error, ErrorKind, Result};
use crate::format::config::LockMode;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use std::time::Duration;
use zeroize::Zeroizing;

/// A signed-request S3 client for one bucket and key prefix.
pub struct S3Direct {
    client: reqwest::Client,
    /// `scheme://host[:port][/bucket]` (no trailing slash).
    bucket_endpoint: String,
    /// The `Host` header value.
    host: String,
    /// Path prefix of `bucket_endpoint` (`/bucket` path style, else empty).
    base_path: String,
    /// Repository key prefix inside the bucket, without slashes at its ends.
    prefix: String,
    region: String,
    key_id: String,
    secret: Zeroizing<String>,
    token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for S3Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Direct")
            .field("bucket_endpoint", &self.bucket_endpoint)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters (and
/// `/` when `keep_slash`), as SigV4's canonical URI and query want.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&k, data).as_ref().to_vec()
}

/// Base64 of the MD5 of `data`: the `Content-MD5` header.
pub fn content_md5(data: &[u8]) -> String {
    use md5::Digest;
    data_encoding::BASE64.encode(&md5::Md5::digest(data))
}

/// The wire form of a retain-until date: RFC 3339 UTC, whole seconds.
pub fn wire_date(d: &DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The text of each `<tag>…</tag>` element in `xml`, in order, with the
/// five XML entities decoded (S3 responses are machine-written and hold no
/// CDATA or attributes on the elements read here).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn element(xml: &str, tag: &str) -> Option<String> {
    elements(xml, tag).first().map(|s| unescape(s.trim()))
}

/// `Code: Message` of an S3 error document, or the HTTP status.
fn s3_error(status: reqwest::StatusCode, body: &str) -> String {
    match (element(body, "Code"), element(body, "Message")) {
        (Some(c), Some(m)) if !m.is_empty() => format!("{c}: {m}"),
        (Some(c), _) => c,
        _ => format!("HTTP {status}"),
    }
}

/// A response: status and body text.
struct Reply {
    status: reqwest::StatusCode,
    body: String,
    /// `x-amz-object-lock-mode` and `x-amz-object-lock-retain-until-date`.
    lock: (Option<String>, Option<String>),
}

impl S3Direct {
    /// Builds the client from the builder object_store's S3 client is built
    /// from, so both use the same credentials, region and endpoint.
    ///
    /// Errors: [`ErrorKind::Usage`] when the builder holds no static access
    /// key and secret.
    pub fn new(
        b: &object_store::aws::AmazonS3Builder,
        bucket: &str,
        prefix: &str,
    ) -> Result<S3Direct> {
        use object_store::aws::AmazonS3ConfigKey as K;
        let get = |k: K| b.get_config_value(&k).filter(|v| !v.trim().is_empty());
        let region = get(K::Region).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted = get(K::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
        let bucket_endpoint = match (get(K::Endpoint), virtual_hosted) {
            (Some(ep), true) => ep.trim_end_matches('/').to_string(),
            (Some(ep), false) => format!("{}/{bucket}", ep.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let url = reqwest::Url::parse(&bucket_endpoint).map_err(|e| {
            Error::usage(format!("s3 endpoint {bucket_endpoint:?} is not a URL: {e}"))
        })?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => {
                return Err(Error::usage(format!(
                    "s3 endpoint {bucket_endpoint:?} names no host"
                )))
            }
        };
        let base_path = url.path().trim_end_matches('/').to_string();
        let (Some(key_id), Some(secret)) = (get(K::AccessKeyId), get(K::SecretAccessKey)) else {
            return Err(Error::usage(
                "S3 Object Lock needs static credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): snap signs its Object Lock requests itself",
            ));
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            // A stalled server fails the request (and its retries) rather
            // than hanging the command.
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::with_source(ErrorKind::Backend, "starting the HTTP client", e))?;
        Ok(S3Direct {
            client,
            bucket_endpoint: bucket_endpoint.trim_end_matches('/').to_string(),
            host,
            base_path,
            prefix: prefix.trim_matches('/').to_string(),
            region,
            key_id,
            secret: Zeroizing::new(secret),
            token: get(K::Token).map(Zeroizing::new),
        })
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Sends one signed request: `key` None addresses the bucket, `query`
    /// pairs are sent and signed sorted, `headers` (lower-case names) are
    /// signed. Retries transport errors and 5xx answers up to 3 times.
    async fn send(
        &self,
        method: reqwest::Method,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Reply> {
        let path = match key {
            Some(k) => format!("{}/{}", self.base_path, uri_encode(&self.full_key(k), true)),
            None => format!("{}/", self.base_path),
        };
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        q.sort();
        let canonical_query = q
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let origin = self
            .bucket_endpoint
            .strip_suffix(&self.base_path)
            .unwrap_or(&self.bucket_endpoint);
        let url = if canonical_query.is_empty() {
            format!("{origin}{path}")
        } else {
            format!("{origin}{path}?{canonical_query}")
        };
        let payload_hash = sha256_hex(&body);
        let what = || {
            format!(
                "{method} {}",
                key.map(|k| self.full_key(k)).unwrap_or_default()
            )
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = Utc::now();
            let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
            let day = now.format("%Y%m%d").to_string();
            let mut hs: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            hs.push(("host".into(), self.host.clone()));
            hs.push(("x-amz-content-sha256".into(), payload_hash.clone()));
            hs.push(("x-amz-date".into(), amz_date.clone()));
            if let Some(t) = &self.token {
                hs.push(("x-amz-security-token".into(), t.to_string()));
            }
            hs.sort();
            let signed: Vec<&str> = hs.iter().map(|(k, _)| k.as_str()).collect();
            let signed = signed.join(";");
            let canonical_headers: String = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
            let canonical = format!(
                "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed}\n{payload_hash}"
            );
            let scope = format!("{day}/{}/s3/aws4_request", self.region);
            let to_sign = format!(
                "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
                sha256_hex(canonical.as_bytes())
            );
            let k_secret = Zeroizing::new(format!("AWS4{}", self.secret.as_str()));
            let k = hmac(k_secret.as_bytes(), day.as_bytes());
            let k = hmac(&k, self.region.as_bytes());
            let k = hmac(&k, b"s3");
            let k = hmac(&k, b"aws4_request");
            let sig = hex::encode(hmac(&k, to_sign.as_bytes()));
            let auth = format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={sig}",
                self.key_id
            );
            let mut req = self
                .client
                .request(method.clone(), &url)
                .header("authorization", auth);
            for (k, v) in &hs {
                if k != "host" {
                    req = req.header(k.as_str(), v.as_str());
                }
            }
            let res = req.body(body.clone()).send().await;
            match res {
                Ok(r) => {
                    let status = r.status();
                    let header = |n: &str| {
                        r.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let lock = (
                        header("x-amz-object-lock-mode"),
                        header("x-amz-object-lock-retain-until-date"),
                    );
                    let text = r.text().await.unwrap_or_default();
                    if !status.is_server_error() || attempt >= 4 {
                        return Ok(Reply {
                            status,
                            body: text,
                            lock,
                        });
                    }
                }
                Err(e) if attempt >= 4 => {
                    return Err(Error::with_source(
                        ErrorKind::Backend,
                        format!("{} failed", what()),
                        e,
                    ))
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
    }

    fn fail(&self, what: String, r: &Reply) -> Error {
        Error::new(
            ErrorKind::Backend,
            format!("{what}: {}", s3_error(r.status, &r.body)),
        )
    }

    /// Uploads `data` to `key` with `Content-MD5` (which buckets with a
    /// default retention require), with `If-None-Match: *` when `create`,
    /// and with the Object Lock headers when `lock` is given. Returns
    /// `false` if `create` and the key exists (HTTP 412).
    ///
    /// Errors: [`ErrorKind::Backend`] with the S3 error code and message.
    pub async fn put(
        &self,
        key: &str,
        data: Bytes,
        create: bool,
        lock: Option<Retention>,
    ) -> Result<bool> {
        let mut h = vec![("content-md5", content_md5(&data))];
        if create {
            h.push(("if-none-match", "*".into()));
        }
        if let Some(l) = lock {
            h.push(("x-amz-object-lock-mode", l.mode.wire().into()));
            h.push(("x-amz-object-lock-retain-until-date", wire_date(&l.until)));
        }
        let r = self
            .send(reqwest::Method::PUT, Some(key), &[], &h, data)
            .await?;
        match r.status.as_u16() {
            200..=299 => Ok(true),
            412 if create => Ok(false),
            _ => Err(self.fail(format!("writing {key}"), &r)),
        }
    }

    /// `GetObjectLockConfiguration`: `Ok(true)` if the bucket has Object
    /// Lock enabled, `Ok(false)` if it answers that it has none.
    ///
    /// Errors: [`ErrorKind::Backend`] for any other answer (a server without
    /// Object Lock: `NotImplemented`), naming the S3 error.
    pub async fn lock_enabled(&self) -> Result<bool> {
        let r = self
            .send(
                reqwest::Method::GET,
                None,
                &[("object-lock", "")],
                &[],
                Bytes::new(),
            )
            .await?;
        if r.status.is_success() {
            return Ok(element(&r.body, "ObjectLockEnabled").as_deref() == Some("Enabled"));
        }
        if element(&r.body, "Code").as_deref() == Some("ObjectLockConfigurationNotFoundError") {
            return Ok(false);
        }
        Err(self.fail("reading the bucket's Object Lock configuration".into(), &r))
    }

    /// The retention of `key` (its current version, or `version`) from
    /// the Object Lock headers of a `HEAD` (S3 sends them to callers allowed
    /// `s3:GetObjectRetention`; moto implements no `GetObjectRetention`).
    /// `Ok(None)` if the version has no retention.
    ///
    /// Errors: [`ErrorKind::NotFound`] if the key or version does not exist;
    /// [`ErrorKind::Backend`] otherwise.
    pub async fn retention(&self, key: &str, version: Option<&str>) -> Result<Option<Retention>> {
        let q: Vec<(&str, &str)> = version.map(|v| ("versionId", v)).into_iter().collect();
        let r = self
            .send(reqwest::Method::HEAD, Some(key), &q, &[], Bytes::new())
            .await?;
        if r.status.is_success() {
            let mode = r.lock.0.as_deref().and_then(LockMode::from_wire);
            let until = r
                .lock
                .1
                .as_deref()
                .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
                .map(|d| d.with_timezone(&Utc));
            return Ok(match (mode, until) {
                (Some(mode), Some(until)) => Some(Retention { mode, until }),
                _ => None,
            });
        }
        if r.status.as_u16() == 404 {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("reading the retention of {key}: no such object"),
            ));
        }
        Err(self.fail(format!("reading the retention of {key}"), &r))
    }

    /// `PutObjectRetention` on the current version of `key`.
    ///
    /// Errors: [`ErrorKind::Backend`] naming the S3 error (shortening a
    /// retention is refused).
    pub async fn put_retention(&self, key: &str, ret: Retention) -> Result<()> {
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            ret.mode.wire(),
            wire_date(&ret.until)
        );
        let body = Bytes::from(body);
        let h = [("content-md5", content_md5(&body))];
        let r = self
            .send(
                reqwest::Method::PUT,
                Some(key),
                &[("retention", "")],
                &h,
                body,
            )
            .await?;
        if r.status.is_success() {
            Ok(())
        } else {
            Err(self.fail(format!("extending the retention of {key}"), &r))
        }
    }

    /// `ListObjectVersions` under `prefix` (relative to the repository):
    /// every version and delete marker, all pages.
    ///
    /// Errors: [`ErrorKind::Backend`] naming the S3 error.
    pub async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>> {
        let full = self.full_key(prefix);
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out = Vec::new();
        let (mut key_marker, mut vid_marker) = (String::new(), String::new());
        loop {
            let mut q = vec![("versions", ""), ("prefix", full.as_str())];
            if !key_marker.is_empty() {
                q.push(("key-marker", key_marker.as_str()));
                q.push(("version-id-marker", vid_marker.as_str()));
            }
            let r = self
                .send(reqwest::Method::GET, None, &q, &[], Bytes::new())
                .await?;
            if !r.status.is_success() {
                return Err(self.fail(format!("listing the versions under {full}"), &r));
            }
            for (tag, marker) in [("Version", false), ("DeleteMarker", true)] {
                for v in elements(&r.body, tag) {
                    let Some(key) = element(v, "Key") else {
                        continue;
                    };
                    let key = key.strip_prefix(&strip).unwrap_or(&key).to_string();
                    out.push(ObjectVersion {
                        key,
                        version_id: element(v, "VersionId").unwrap_or_else(|| "null".into()),
                        is_latest: element(v, "IsLatest").as_deref() == Some("true"),
                        delete_marker: marker,
                        last_modified: element(v, "LastModified")
                            .and_then(|d| DateTime::parse_from_rfc3339(&d).ok())
                            .map(|d| d.with_timezone(&Utc)),
                        size: element(v, "Size").and_then(|s| s.parse().ok()).unwrap_or(0),
                    });
                }
            }
            if element(&r.body, "IsTruncated").as_deref() != Some("true") {
                break;
            }
            let nk = element(&r.body, "NextKeyMarker").unwrap_or_default();
            let nv = element(&r.body, "NextVersionIdMarker").unwrap_or_default();
            if nk.is_empty() || (nk == key_marker && nv == vid_marker) {
                break;
            }
            key_marker = nk;
            vid_marker = nv;
        }
        Ok(out)
    }

    /// `DeleteObject` of one version: removes its bytes for good (or the
    /// delete marker). Refused while the version's retention holds.
    ///
    /// Errors: [`ErrorKind::Backend`] naming the S3 error.
    pub async fn delete_version(&self, key: &str, version_id: &str) -> Result<()> {
        let r = self
            .send(
                reqwest::Method::DELETE,
                Some(key),
                &[("versionId", version_id)],
                &[],
                Bytes::new(),
            )
            .await?;
        if r.status.is_success() || r.status.as_u16() == 404 {
            Ok(())
        } else {
            Err(self.fail(format!("deleting version {version_id} of {key}"), &r))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encoding_keeps_unreserved_and_slashes() {
        assert_eq!(uri_encode("data/ab/x y+z", true), "data/ab/x%20y%2Bz");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }

    #[test]
    fn content_md5_of_known_input() {
        // RFC 1864's header for "hello": base64 of md5 5d41402a…
        assert_eq!(content_md5(b"hello"), "XUFAKrxLKna5cZ2REBfFkg==");
    }

    #[test]
    fn sigv4_signing_key_matches_the_aws_example() {
        // AWS documentation's example: secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
        // 20120215, us-east-1, iam → f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d
        let k = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215");
        let k = hmac(&k, b"us-east-1");
        let k = hmac(&k, b"iam");
        let k = hmac(&k, b"aws4_request");
        assert_eq!(
            hex::encode(k),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn list_versions_xml_is_read() {
        let xml = "<ListVersionsResult><Version><Key>p/data/a&amp;b</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest><LastModified>2026-12-06T05:00:00.000Z</LastModified><Size>5</Size></Version><DeleteMarker><Key>p/data/a&amp;b</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest></DeleteMarker></ListVersionsResult>";
        let v = elements(xml, "Version");
        assert_eq!(v.len(), 1);
        assert_eq!(element(v[0], "Key").unwrap(), "p/data/a&b");
        assert_eq!(element(xml, "IsTruncated"), None);
        assert_eq!(
            s3_error(
                reqwest::StatusCode::FORBIDDEN,
                "<Error><Code>AccessDenied</Code><Message>no</Message></Error>"
            ),
            "AccessDenied: no"
        );
    }
}

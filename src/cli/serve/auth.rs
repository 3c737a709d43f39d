//! Console login and CSRF: an Argon2id password hash (PHC string) in a file,
//! random session ids in an HttpOnly, SameSite=Strict cookie, and a CSRF
//! token that every POST/PUT/DELETE must send in the `X-CSRF-Token` header.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::sync::Mutex;

/// Name of the session cookie.
pub const COOKIE: &str = "snap_session";

/// 32 random bytes as 64 hex digits.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    // getrandom fails only without an OS random source; then no token is safe.
    getrandom::fill(&mut b).expect("the OS random source failed");
    hex::encode(b)
}

/// The PHC string (Argon2id, random salt) of `password`.
/// Errors: the hasher's error (not expected for in-range parameters).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string())
}

/// Login state of the server.
pub struct Auth {
    /// PHC hash of the console password; `None`: no login (loopback only).
    pub hash: Option<String>,
    /// The CSRF token when there is no login (one per server process).
    pub open_csrf: String,
    /// Session id → its CSRF token.
    sessions: Mutex<HashMap<String, String>>,
}

impl Auth {
    /// `hash`: the PHC string from the password file, or none for no login.
    pub fn new(hash: Option<String>) -> Self {
        Auth {
            hash,
            open_csrf: random_token(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a login is required.
    pub fn login_required(&self) -> bool {
        self.hash.is_some()
    }

    /// Checks `password`; on success a new session id and its CSRF token.
    pub fn login(&self, password: &str) -> Option<(String, String)> {
        let hash = self.hash.as_deref()?;
        let parsed = PasswordHash::new(hash).ok()?;
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .ok()?;
        let (sid, csrf) = (random_token(), random_token());
        self.sessions.lock().ok()?.insert(sid.clone(), csrf.clone());
        Some((sid, csrf))
    }

    /// Ends the session of `headers`' cookie.
    pub fn logout(&self, headers: &HeaderMap) {
        if let (Some(sid), Ok(mut s)) = (session_id(headers), self.sessions.lock()) {
            s.remove(&sid);
        }
    }

    /// The CSRF token of the request's session; with no login, the open
    /// token. `None`: not logged in.
    pub fn csrf_for(&self, headers: &HeaderMap) -> Option<String> {
        if !self.login_required() {
            return Some(self.open_csrf.clone());
        }
        let sid = session_id(headers)?;
        self.sessions.lock().ok()?.get(&sid).cloned()
    }

    /// Whether the request's `X-CSRF-Token` matches its session's token
    /// (compared in constant time).
    pub fn csrf_ok(&self, headers: &HeaderMap) -> bool {
        let (Some(want), Some(got)) = (
            self.csrf_for(headers),
            headers.get("x-csrf-token").and_then(|v| v.to_str().ok()),
        ) else {
            return false;
        };
        want.len() == got.len()
            && want
                .bytes()
                .zip(got.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The session id in the request's cookie.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

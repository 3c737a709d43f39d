//! `snap::Error`: one error type for the library, with a small [`ErrorKind`]
//! that callers branch on and [`ErrorKind::exit_code`] maps to the CLI's
//! exit codes.
//!
//! An error is a kind, a one-line message for its own level and an optional
//! cause (the underlying `std::io::Error`, `object_store::Error`,
//! [`crate::format::DecodeError`], …) returned by
//! [`std::error::Error::source`]. `{}` prints only the message, so a
//! reporter walking `source()` (anyhow's `{:#}`, `main`) prints each cause
//! once; `{:#}` prints the message followed by its causes.

use std::fmt;

/// What went wrong, coarsely; [`ErrorKind::exit_code`] maps each kind to one
/// exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The repository at the given location has no `config` object (exit 10).
    NoRepository,
    /// No key file could be opened with the given password (exit 12).
    WrongPassword,
    /// An object, snapshot or path that was asked for does not exist.
    NotFound,
    /// Data read from the repository is malformed: it authenticated (or is
    /// not sealed) but does not decode, is truncated or too large.
    Corrupt,
    /// A sealed object failed authentication (its AEAD tag does not verify):
    /// it was tampered with, damaged, stored under another name, or sealed
    /// with another key.
    Unauthenticated,
    /// A local I/O error (source files, restore target, cache).
    Io,
    /// The storage backend failed; `transient` errors may succeed on retry.
    Backend,
    /// Another process holds an exclusive lease on the repository (exit 11).
    Locked,
    /// A bad argument, configuration or request from the user (exit 2).
    Usage,
    /// A source command (`--command`, `pg_dump`, …) failed.
    Source,
    /// The operation was interrupted (exit 130).
    Interrupted,
    /// A local filesystem ran out of space.
    NoSpace,
    /// The catalog (SQLite cache) failed.
    Catalog,
    /// The key is put-only (format-spec §5.1): it cannot read or delete
    /// what is stored (exit 1).
    PutOnly,
}

/// Exit status of a usage error (bad arguments), as clap exits.
pub const EXIT_USAGE: u8 = 2;

impl ErrorKind {
    /// The documented exit code of a command that failed with this kind
    /// (`snap --help`): 2 usage, 10 no repository, 11 locked, 12 wrong
    /// password, 130 interrupted, 1 any other error. The one mapping from
    /// kinds to exit codes; [`ErrorKind::from_exit_code`] is its inverse.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage => EXIT_USAGE,
            ErrorKind::NoRepository => 10,
            ErrorKind::Locked => 11,
            ErrorKind::WrongPassword => 12,
            ErrorKind::Interrupted => 130,
            _ => 1,
        }
    }

    /// The kind a child `snap` process failed with, from its exit `code`
    /// (see [`ErrorKind::exit_code`]): usage, no repository, locked or wrong
    /// password; `None` for any other code (0, 1, 3, 141, …, and 130/143:
    /// a signal that stopped the child is seen by its parent itself).
    pub fn from_exit_code(code: i32) -> Option<ErrorKind> {
        [
            ErrorKind::Usage,
            ErrorKind::NoRepository,
            ErrorKind::Locked,
            ErrorKind::WrongPassword,
        ]
        .into_iter()
        .find(|k| i32::from(k.exit_code()) == code)
    }

    /// Whether data read from the repository is unusable: [`Corrupt`] or
    /// [`Unauthenticated`]. Readers that skip or report damaged objects
    /// branch on this.
    ///
    /// [`Corrupt`]: ErrorKind::Corrupt
    /// [`Unauthenticated`]: ErrorKind::Unauthenticated
    pub fn is_damaged_data(self) -> bool {
        matches!(self, ErrorKind::Corrupt | ErrorKind::Unauthenticated)
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The library's error: a kind, a one-line lower-case message naming the
/// object and what to do next, and an optional cause ([`std::error::Error::source`]).
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Cause>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a one-line `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A new error with a cause: `message` says what was being done, the
    /// cause (returned by `source()`) why it failed.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Data read from the repository is malformed ([`ErrorKind::Corrupt`]).
    pub fn corrupt(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, message)
    }

    /// A sealed object failed authentication ([`ErrorKind::Unauthenticated`]).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unauthenticated, message)
    }

    /// The user asked for something invalid.
    pub fn usage(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, message)
    }

    /// A local I/O error with the path or action it concerns; ENOSPC becomes
    /// [`ErrorKind::NoSpace`].
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        let kind = if err.raw_os_error() == Some(libc::ENOSPC) {
            ErrorKind::NoSpace
        } else {
            ErrorKind::Io
        };
        Error::with_source(kind, context, err)
    }

    /// Whether this is a write to a closed pipe (`snap … --stdout | head`):
    /// callers that write to standard output exit quietly on it.
    pub fn is_broken_pipe(&self) -> bool {
        self.source
            .as_ref()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// The underlying cause given to [`Error::with_source`], if any (what
    /// `source()` returns, with its `Send + Sync` bounds).
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }

    /// The kind, for branching and exit codes.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The documented exit code for this error: [`ErrorKind::exit_code`].
    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }

    /// Prefixes the message with more context ("restoring snapshot 3fa2…: …").
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = if self.message.is_empty() {
            context.to_string()
        } else {
            format!("{context}: {}", self.message)
        };
        self
    }
}

/// Writes `first` and then each error of the `source()` chain starting at
/// `next`, joined by ": ", skipping a cause whose text the line already
/// holds (libraries such as object_store repeat their source's text in their
/// own message).
pub fn write_chain(
    f: &mut dyn fmt::Write,
    first: &str,
    mut next: Option<&(dyn std::error::Error + 'static)>,
) -> fmt::Result {
    let mut line = first.trim().to_string();
    while let Some(e) = next {
        let t = e.to_string();
        let t = t.trim();
        if !t.is_empty() && !line.contains(t) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(t);
        }
        next = e.source();
    }
    f.write_str(&line)
}

impl fmt::Display for Error {
    /// `{}`: this level's message (for an error converted from a cause
    /// without a message of its own, the cause's text); `{:#}`: the message
    /// followed by every cause, each once.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        if f.alternate() {
            write_chain(f, &self.message, cause)
        } else if self.message.is_empty() {
            match cause {
                Some(c) => write!(f, "{c}"),
                None => Ok(()),
            }
        } else {
            f.write_str(&self.message)
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {:#}", self.kind, self)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::with_source(ErrorKind::Catalog, "catalog", e)
    }
}

/// A decoding failure is [`ErrorKind::Corrupt`] with the [`DecodeError`]
/// (what, byte offset, detail) kept as its cause.
///
/// [`DecodeError`]: crate::format::DecodeError
impl From<crate::format::DecodeError> for Error {
    fn from(e: crate::format::DecodeError) -> Self {
        Error::with_source(ErrorKind::Corrupt, "", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{MasterKey, AAD_INDEX};
    use crate::format::index::IndexFile;
    use std::error::Error as _;

    #[test]
    fn authentication_failure_is_unauthenticated_and_malformed_data_corrupt() {
        let key = MasterKey::generate();
        let sealed = key.seal(AAD_INDEX, b"not an index");
        // Tampered: one bit of the ciphertext flipped.
        let mut tampered = sealed.clone();
        let mid = tampered.len() / 2;
        tampered[mid] ^= 1;
        let e = key.open(AAD_INDEX, &tampered, "index x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e:#}");
        assert!(e.kind().is_damaged_data());
        // Sealed with another key, or under another kind's associated data.
        let e = MasterKey::generate()
            .open(AAD_INDEX, &sealed, "index x")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e:#}");
        let e = key
            .open(crate::crypto::AAD_SNAPSHOT, &sealed, "index x")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e:#}");
        assert_eq!(
            e.to_string(),
            "index x failed authentication (corrupt or tampered data)"
        );
        // Shorter than nonce and tag: malformed, not an authentication failure.
        let e = key.open(AAD_INDEX, &sealed[..10], "index x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e:#}");
        // Authenticates, but the plaintext does not decode.
        let plain = key.open(AAD_INDEX, &sealed, "index x").unwrap();
        let decode = IndexFile::decode(&plain).unwrap_err();
        let e: Error = decode.clone().into();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e:#}");
        assert!(e.kind().is_damaged_data());
        // The DecodeError is the cause, not a string.
        let cause = e
            .source()
            .and_then(|s| s.downcast_ref::<crate::format::DecodeError>());
        assert_eq!(cause, Some(&decode));
        assert_eq!(e.to_string(), decode.to_string());
        assert_eq!(format!("{e:#}"), decode.to_string());
        let e = e.context("index 3fa2c1d0");
        assert_eq!(e.to_string(), "index 3fa2c1d0");
        assert_eq!(format!("{e:#}"), format!("index 3fa2c1d0: {decode}"));
    }

    #[test]
    fn source_chain_prints_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = Error::io("reading /x", io);
        assert_eq!(e.to_string(), "reading /x");
        let src = e.source().expect("io error as source");
        assert_eq!(
            src.downcast_ref::<std::io::Error>().map(|i| i.kind()),
            Some(std::io::ErrorKind::PermissionDenied)
        );
        assert_eq!(format!("{e:#}"), "reading /x: denied");
        // A cause that repeats its own cause's text (as object_store does):
        // each text once.
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "request failed: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::with_source(ErrorKind::Backend, "get config", Outer(inner));
        assert_eq!(format!("{e:#}"), "get config: request failed: refused");
        let wrapped = Error::with_source(ErrorKind::Backend, "opening repository", e);
        let mut line = String::new();
        write_chain(&mut line, "", Some(&wrapped)).unwrap();
        assert_eq!(
            line,
            "opening repository: get config: request failed: refused"
        );
    }

    #[test]
    fn exit_codes_are_mapped_once() {
        assert_eq!(ErrorKind::Usage.exit_code(), 2);
        assert_eq!(ErrorKind::NoRepository.exit_code(), 10);
        assert_eq!(ErrorKind::Locked.exit_code(), 11);
        assert_eq!(ErrorKind::WrongPassword.exit_code(), 12);
        assert_eq!(ErrorKind::Interrupted.exit_code(), 130);
        assert_eq!(ErrorKind::Corrupt.exit_code(), 1);
        assert_eq!(ErrorKind::Unauthenticated.exit_code(), 1);
        for k in [
            ErrorKind::Usage,
            ErrorKind::NoRepository,
            ErrorKind::Locked,
            ErrorKind::WrongPassword,
        ] {
            assert_eq!(ErrorKind::from_exit_code(k.exit_code().into()), Some(k));
        }
        for code in [0, 1, 3, 130, 141, 143] {
            assert_eq!(ErrorKind::from_exit_code(code), None, "{code}");
        }
    }
}

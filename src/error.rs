//! `snap::Error`: one error type for the library, with a small [`ErrorKind`]
//! that callers (and the CLI's exit-code mapping) branch on.

use std::fmt;

/// What went wrong, coarsely; the CLI maps each kind to one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The repository at the given location has no `config` object (exit 10).
    NoRepository,
    /// No key file could be opened with the given password (exit 12).
    WrongPassword,
    /// An object, snapshot or path that was asked for does not exist.
    NotFound,
    /// Data read from the repository failed authentication or decoding.
    Corrupt,
    /// A local I/O error (source files, restore target, cache).
    Io,
    /// The storage backend failed; `transient` errors may succeed on retry.
    Backend,
    /// Another process holds an exclusive lease on the repository (exit 11).
    Locked,
    /// A bad argument, configuration or request from the user.
    Usage,
    /// A source command (`--command`, `pg_dump`, …) failed.
    Source,
    /// The operation was interrupted (exit 130).
    Interrupted,
    /// A local filesystem ran out of space.
    NoSpace,
    /// The catalog (SQLite cache) failed.
    Catalog,
}

/// The library's error: a kind, a one-line lower-case message naming the
/// object and what to do next, and an optional cause.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
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

    /// A new error with a cause, shown after the message.
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

    /// Data read from the repository is corrupt or was tampered with.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, message)
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

    /// The underlying cause given to [`Error::with_source`], if any.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }

    /// The kind, for branching and exit codes.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Prefixes the message with more context ("restoring snapshot 3fa2…: …").
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Many libraries (object_store, reqwest) already include their
        // source's text in their own message: print each cause once.
        let mut text = self.message.clone();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(s) = cur {
            let t = s.to_string();
            if !t.is_empty() && !text.contains(&t) {
                text.push_str(": ");
                text.push_str(&t);
            }
            cur = s.source();
        }
        f.write_str(&text)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::with_source(ErrorKind::Catalog, "catalog", e)
    }
}

impl From<crate::format::DecodeError> for Error {
    fn from(e: crate::format::DecodeError) -> Self {
        Error::new(ErrorKind::Corrupt, e.to_string())
    }
}

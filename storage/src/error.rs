//! The one error type of `gavel-storage`.
//!
//! Domain rule violations are *not* errors: they are deterministic
//! [`Rejection`](crate::Rejection)s returned inside a [`Response`](crate::Response),
//! identical on every replica. This enum is for the things that can differ between
//! replicas or stop a node: I/O, corruption, bad input to the offline tools.

use std::path::PathBuf;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Data on disk failed a checksum or could not be decoded. `what` names the file or
    /// the log index; the node must not apply it.
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: String, reason: String },

    /// Caller gave something unusable (a path that is not a snapshot, say).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("not found: {0}")]
    NotFound(String),

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// sled cannot open or read the log in `dir` at all (it panicked, or the files are
    /// of another format). The node cannot start from this directory.
    #[error("the log in {} cannot be opened: {reason}", dir.display())]
    Unopenable { dir: PathBuf, reason: String },

    /// Not enough free space to write something safely; nothing was written.
    #[error("not enough free space in {}: {needed} bytes needed, {available} available", path.display())]
    DiskFull { path: PathBuf, needed: u64, available: u64 },

    #[error("sled: {0}")]
    Sled(#[from] sled::Error),

    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

impl Error {
    pub fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Whether this is the disk (or a quota) being full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => crate::fsutil::is_disk_full(source),
            Error::Sled(sled::Error::Io(e)) => crate::fsutil::is_disk_full(e),
            Error::DiskFull { .. } => true,
            _ => false,
        }
    }

    /// Another process holds the sled database (sled locks it; a second open fails).
    pub fn is_locked(&self) -> bool {
        match self {
            // sled wraps the flock failure in an error of its own kind, with this text.
            Error::Sled(sled::Error::Io(e)) | Error::Io { source: e, .. } => {
                e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
            }
            _ => false,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Adds the path to an `std::io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

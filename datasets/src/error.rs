//! The one error type of kd-datasets: every variant names the file it concerns.

use std::path::PathBuf;

/// Everything that can go wrong while reading or preparing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Reading a file failed; the cause is the error's source (printed after the path in an
    /// error chain).
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    /// A file's content is malformed; `offset` is the byte offset of the problem.
    #[error("{path}: {message} (at byte offset {offset})")]
    Format { path: PathBuf, offset: u64, message: String },
    /// A label is outside `0..classes`.
    #[error("{path}: label {label} of image {index} is out of range 0..{classes} (at byte offset {offset})")]
    LabelOutOfRange { path: PathBuf, index: usize, label: i64, classes: usize, offset: u64 },
    /// Files that belong together disagree (for example image and label counts).
    #[error("{path}: {message}")]
    Inconsistent { path: PathBuf, message: String },
    /// An image could not be decoded.
    #[error("{path}: cannot decode image: {message}")]
    Decode { path: PathBuf, message: String },
    /// The request itself is invalid (unknown split, empty dataset, bad transform parameter).
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    /// The image file this error is about, if it is an image that cannot be read or decoded
    /// (what `--skip-bad-images` skips).
    pub fn bad_image(&self) -> Option<&std::path::Path> {
        match self {
            Self::Decode { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), cause: source }
    }
}

/// Result alias of kd-datasets.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

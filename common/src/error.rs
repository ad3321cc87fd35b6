//! The one error type of kd-common.

use std::path::PathBuf;

/// Everything that can go wrong in kd-common. Variants that concern a file name it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- devices ---
    /// A backend was asked for that this binary was built without.
    #[error("the {backend} backend is not compiled into this binary; rebuild with `--features {backend}` ({hint})")]
    BackendNotCompiled { backend: &'static str, hint: &'static str },
    /// A backend is compiled in but has no driver or adapter on this machine.
    #[error("{0}")]
    DeviceUnavailable(String),
    /// `--device` could not be parsed.
    #[error("invalid device `{0}`: expected auto, cpu, wgpu[:N] or cuda[:N]")]
    BadDeviceSpec(String),

    // --- files ---
    /// Reading or writing a file failed; the cause is the error's source, so the printed chain
    /// reads "path: cause" and a closed pipe can be recognised in it.
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    /// A JSON or TOML document did not parse or did not fit its schema.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },

    // --- checkpoints ---
    /// A checkpoint does not fit the model it is loaded into.
    #[error("checkpoint {path} does not match: {message}")]
    CheckpointMismatch { path: PathBuf, message: String },
    /// The safetensors store rejected a file.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },

    // --- models and training ---
    /// A model specification is inconsistent.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// A training configuration is inconsistent.
    #[error("invalid training configuration: {0}")]
    InvalidConfig(String),
    /// The loss became NaN or infinite.
    #[error("training diverged: loss is {value} in pass {pass}, step {step}; the last good state is kept")]
    Diverged { value: f32, pass: usize, step: usize },
    /// A dataset or label file could not be read or is malformed.
    #[error(transparent)]
    Data(#[from] kd_datasets::DataError),
    /// An input tensor had the wrong shape.
    #[error("shape mismatch: {0}")]
    Shape(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), cause: source }
    }
}

/// Result alias of kd-common.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! kd-common: the tensor side of kdkit — devices, the model zoo, checkpoints, losses, metrics and
//! the one training loop that every trainer reuses.

pub mod allocator;
pub mod atomic;
pub mod checkpoint;
pub mod contrastive;
mod cuda_probe;
pub mod device;
pub mod ensemble;
pub mod error;
pub mod host_tensors;
pub mod logging;
pub mod losses;
pub mod metrics;
pub mod models;
pub mod module_path;
pub mod progress;
pub mod pruning;
pub mod sparsity;
pub mod tensor_fit;
#[cfg(test)]
pub(crate) mod test_precision;
pub mod train;

pub use error::{Error, Result};

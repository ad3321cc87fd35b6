//! kd-datasets: reading datasets, augmenting images and loading batches on worker threads.

pub mod cifar;
pub mod error;
pub mod idx;
pub mod image;
pub mod rng;

pub use error::{DataError, Result};

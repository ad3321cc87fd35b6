//! kd-datasets: reading datasets, augmenting images and loading batches on worker threads.

pub mod catalog;
pub mod cifar;
pub mod dataset;
pub mod decode;
pub mod error;
pub mod feature_source;
pub mod folder;
pub mod idx;
pub mod image;
pub mod loader;
pub mod ordered_pool;
pub mod photometric;
pub mod region_sampling;
pub mod resample;
pub mod rng;
pub mod soft_labels;
pub mod transforms;

pub use catalog::{DatasetKind, Split};
pub use dataset::{Dataset, DatasetIdentity, SkippedImages, Storage};
pub use error::{DataError, Result};
pub use feature_source::FeatureSource;
pub use loader::{Batch, BatchLoader, BatchSource, HostTensor, LoaderConfig, Targets};
pub use ordered_pool::OrderedPool;
pub use region_sampling::RegionSampling;
pub use transforms::{Augment, CropBox, Transform};

//! FKD region-level soft labels: compression, crop geometry, and the HDF5 label file.

pub mod chunked;
pub mod compress;
pub mod file;
pub mod geometry;
pub mod recompress;

pub use chunked::{ChunkedLabels, LabelReader};
pub use compress::{Compression, LabelType, ProbEncoding};
pub use file::{CropLabel, Geometry, LabelBlock, LabelMeta, LabelWriter, RegionLabels, TeacherInfo};
pub use geometry::CropParams;

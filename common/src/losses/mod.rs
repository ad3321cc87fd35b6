//! Losses, one per file, each with its formula in the doc comment.

mod cross_entropy;
mod soft_cross_entropy;

pub use cross_entropy::cross_entropy_with_smoothing;
pub use soft_cross_entropy::soft_cross_entropy;

//! Losses, one per file, each with its formula in the doc comment.

mod cross_entropy;
pub mod discriminator_bce;
pub mod info_nce;
pub mod jensen_shannon;
pub mod kd_kl;
pub mod logit_standardization;
pub mod seed;
mod soft_cross_entropy;
pub mod symmetric_kl;
#[doc(hidden)]
pub mod test_support;

pub use cross_entropy::cross_entropy_with_smoothing;
pub use discriminator_bce::{bce_with_logits, discriminator_loss};
pub use info_nce::{info_nce, similarity_logits};
pub use jensen_shannon::jensen_shannon;
pub use kd_kl::{kd_loss, kl_to_teacher};
pub use logit_standardization::standardize_logits;
pub use seed::seed_loss;
pub use soft_cross_entropy::soft_cross_entropy;
pub use symmetric_kl::symmetric_kl;

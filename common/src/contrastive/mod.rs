//! The parts of contrastive self-supervised training and distillation (MoCo v2, SEED) that are
//! not losses: the queue of embeddings and the momentum key encoder. The losses are
//! `crate::losses::{info_nce, seed_loss}`.

mod momentum;
mod normalize;
mod queue;

pub use momentum::momentum_update;
pub use normalize::l2_normalize;
pub use queue::EmbeddingQueue;

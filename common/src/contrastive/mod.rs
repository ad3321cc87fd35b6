//! The parts of contrastive self-supervised training and distillation (MoCo v2, SEED) that are
//! not losses: the queue of embeddings and the momentum key encoder. The losses are
//! `crate::losses::{info_nce, seed_loss}`.

mod momentum;
mod queue;

pub use momentum::momentum_update;
pub use queue::EmbeddingQueue;

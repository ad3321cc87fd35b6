//! Evaluation of a frozen encoder (self-supervised checkpoints, or any network's pooled
//! features): weighted kNN top-1 (k 200, tau 0.07, cosine; Wu et al. 2018) with the training
//! split as the bank, and the linear probe of the MoCo protocol on cached features
//! (`kd_common::train::linear_probe`).

use crate::shared::data::{eval_transform, loader};
use anyhow::Result;
use kd_common::checkpoint::InputSpec;
use kd_common::device::ResolvedDevice;
use kd_common::models::Network;
use kd_common::train::{KnnConfig, LinearProbeConfig, cache_features, knn_top1_features, linear_probe};
use kd_datasets::Dataset;
use serde_json::{Value, json};

/// What to measure.
pub struct FrozenEval {
    /// kNN classifier.
    pub knn: Option<KnnConfig>,
    /// Linear probe.
    pub probe: Option<LinearProbeConfig>,
    /// Loader workers.
    pub workers: usize,
    /// Seed of the probe's shuffling and initialisation.
    pub seed: u64,
}

/// kNN and linear-probe top-1 of `network`'s features: `train` labelled images fit (bank /
/// probe), `evaluated` is classified.
pub fn evaluate_frozen(
    network: &Network,
    input: &InputSpec,
    train: &Dataset,
    evaluated: &Dataset,
    what: &FrozenEval,
    device: &ResolvedDevice,
) -> Result<Value> {
    let (workers, seed) = (what.workers, what.seed);
    let bank = loader(train.clone(), eval_transform(input), crate::shared::run::EVAL_BATCH, false, workers, seed)?;
    let queries =
        loader(evaluated.clone(), eval_transform(input), crate::shared::run::EVAL_BATCH, false, workers, seed)?;
    let mut out = json!({});
    // One forward pass per image serves both the kNN bank / queries and the probe.
    let train_features = cache_features(network, &bank, &device.device)?;
    let test_features = cache_features(network, &queries, &device.device)?;
    if let Some(knn) = what.knn {
        let top1 = knn_top1_features(&train_features, &test_features, knn, &device.device)?;
        tracing::info!("kNN top-1 {top1:.2}% (k {}, tau {}, bank of {})", knn.k, knn.temperature, train.len());
        out["knn_top1"] = json!(top1);
        out["knn"] = json!({"k": knn.k, "temperature": knn.temperature, "bank": train.len()});
    }
    if let Some(probe) = &what.probe {
        let dir = tempfile::tempdir()?;
        let top1 = linear_probe(&train_features, &test_features, probe, device, dir.path(), seed)?;
        tracing::info!("linear-probe top-1 {top1:.2}% ({} epochs, lr {})", probe.epochs, probe.lr);
        out["linear_probe_top1"] = json!(top1);
        out["linear_probe"] = serde_json::to_value(probe)?;
    }
    Ok(out)
}

//! The end of every training tool: evaluate the trained network on the test split, write the
//! checkpoint with its sidecar, and build the summary JSON printed on stdout.

use crate::shared::data::{eval_transform, loader};
use anyhow::Result;
use kd_common::checkpoint::{self, CheckpointMeta, InputSpec, PruningRecord};
use kd_common::models::{ModelSpec, Network};
use kd_common::train::{self, PassRow};
use kd_datasets::Dataset;
use serde_json::{Value, json};
use std::path::Path;

/// What a finished run hands over.
pub struct TrainedRun<'a> {
    /// The trained network (inference mode).
    pub network: &'a Network,
    /// Its architecture.
    pub spec: ModelSpec,
    /// Its input.
    pub input: InputSpec,
    /// The training split (its identity is recorded).
    pub train: &'a Dataset,
    /// The test split.
    pub test: &'a Dataset,
    /// The resolved configuration.
    pub config: Value,
    /// Metrics rows of every stage, in order.
    pub rows: &'a [PassRow],
    /// The pass a killed run resumed after.
    pub resumed_after: Option<usize>,
    /// Teachers to measure test agreement with (empty: none).
    pub references: &'a [Network],
    /// Loader workers and seed.
    pub workers: usize,
    /// Seed.
    pub seed: u64,
    /// Tool name for the sidecar.
    pub tool: &'a str,
    /// The pruning record of a pruned network (its masks file already written).
    pub pruning: Option<PruningRecord>,
}

/// Evaluates on the test split, saves the checkpoint `weights` (+ sidecar) and returns the
/// summary.
pub fn save_trained(run: TrainedRun, device: &burn::tensor::Device, weights: &Path) -> Result<Value> {
    let test_loader = loader(run.test.clone(), eval_transform(&run.input), 256, false, run.workers, run.seed)?;
    let test = train::evaluate(run.network, run.references, &test_loader, device)?;
    let last = run.rows.last();
    let best = run.rows.iter().filter_map(|r| r.val("val_top1").map(|v| (v, r.epoch))).fold(
        None,
        |best: Option<(f64, usize)>, x| match best {
            Some(b) if b.0 >= x.0 => Some(b),
            _ => Some(x),
        },
    );
    let mut metrics = json!({
        "test_top1": test.top1,
        "test_top5": test.top5,
        "test_nll": test.nll,
        "test_ece": test.ece,
        "last_val_top1": last.and_then(|l| l.val("val_top1")),
        "best_val_top1": best.map(|b| b.0),
        "best_val_epoch": best.map(|b| b.1),
        "epochs": last.map_or(0, |l| l.epoch),
        "train_images_per_s": run.rows.iter().map(|r| r.images_per_s).sum::<f64>() / run.rows.len().max(1) as f64,
        "train_seconds": run.rows.iter().map(|r| r.seconds).sum::<f64>(),
        "resumed_after_pass": run.resumed_after,
    });
    if let Some(agreement) = test.agreement {
        metrics["test_agreement_with_teacher"] = json!(agreement);
        metrics["test_kl_teacher_to_student"] = json!(test.kl_to_reference);
    }
    let meta = CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        model: run.spec,
        input: run.input,
        dataset: serde_json::to_value(run.train.identity())?,
        classes: run.train.classes.clone(),
        training: run.config,
        metrics: metrics.clone(),
        weights_sha256: String::new(),
        written_by: format!("{} {}", run.tool, env!("CARGO_PKG_VERSION")),
        pruning: run.pruning,
        imported_from: None,
        other: Default::default(),
    };
    checkpoint::save(run.network, &meta, weights)?;
    tracing::info!(
        "test top-1 {:.2}% (top-5 {:.2}%, NLL {:.4}); wrote {}",
        test.top1,
        test.top5,
        test.nll,
        weights.display()
    );
    let mut summary = metrics;
    summary["checkpoint"] = json!(weights);
    Ok(summary)
}

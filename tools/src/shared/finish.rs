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
    /// The resolved configuration with its run hash (`shared::run::training_record`).
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

/// What every checkpoint of a training tool records besides its metrics.
pub struct CheckpointParts<'a> {
    /// Its architecture.
    pub spec: ModelSpec,
    /// Its input.
    pub input: InputSpec,
    /// The training split (its identity and class names are recorded).
    pub train: &'a Dataset,
    /// The resolved configuration with its run hash.
    pub training: Value,
    /// Tool name for the sidecar.
    pub tool: &'a str,
}

/// The one checkpoint writer of the training tools: `network` to `weights` with its sidecar.
pub fn write_checkpoint(
    network: &Network,
    parts: CheckpointParts,
    metrics: &Value,
    pruning: Option<PruningRecord>,
    weights: &Path,
) -> Result<()> {
    let meta = CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        model: parts.spec,
        input: parts.input,
        dataset: serde_json::to_value(parts.train.identity())?,
        classes: parts.train.classes.clone(),
        training: parts.training,
        metrics: metrics.clone(),
        weights_sha256: String::new(),
        written_by: format!("{} {}", parts.tool, env!("CARGO_PKG_VERSION")),
        pruning,
        imported_from: None,
        other: Default::default(),
    };
    Ok(checkpoint::save(network, &meta, weights)?)
}

/// Prints a run's summary JSON on stdout, with the tool's `extra` fields added.
pub fn print_summary(mut summary: Value, extra: Value) -> Result<()> {
    if let (Some(summary), Value::Object(extra)) = (summary.as_object_mut(), extra) {
        summary.extend(extra);
    }
    outln!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// Evaluates on the test split, saves the checkpoint `weights` (+ sidecar) and returns the
/// summary.
pub fn save_trained(run: TrainedRun, device: &burn::tensor::Device, weights: &Path) -> Result<Value> {
    let test_loader = loader(
        run.test.clone(),
        eval_transform(&run.input),
        crate::shared::run::EVAL_BATCH,
        false,
        run.workers,
        run.seed,
    )?;
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
        "train_images": run.rows.iter().map(|r| r.rows).sum::<usize>(),
        "resumed_after_pass": run.resumed_after,
    });
    if let Some(skipped) = crate::shared::data::skipped_summary(run.train) {
        metrics["skipped_bad_images"] = skipped;
    }
    if let Some(agreement) = test.agreement {
        metrics["test_agreement_with_teacher"] = json!(agreement);
        metrics["test_kl_teacher_to_student"] = json!(test.kl_to_reference);
    }
    let parts =
        CheckpointParts { spec: run.spec, input: run.input, train: run.train, training: run.config, tool: run.tool };
    write_checkpoint(run.network, parts, &metrics, run.pruning, weights)?;
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

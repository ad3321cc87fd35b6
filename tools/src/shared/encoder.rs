//! What every self-supervised trainer (MoCo v2 in `kd-pretrain`, `kd-seed`) shares: the kNN
//! monitor's sources (a labelled bank from the training split, the validation and test
//! splits, all without augmentation), and the end of a run: test kNN top-1 (when the data has
//! labels), the checkpoint with its sidecar, the summary.

use crate::shared::data::{Splits, eval_transform, loader};
use crate::shared::finish::{CheckpointParts, write_checkpoint};
use anyhow::Result;
use burn::tensor::Device;
use kd_common::checkpoint::InputSpec;
use kd_common::models::{ModelSpec, Network};
use kd_common::train::{KnnConfig, PassRow, Validation, knn_top1};
use kd_datasets::{BatchLoader, Dataset};
use serde_json::{Value, json};
use std::path::Path;

/// `spec` with an MLP projection head `embedding -> embedding -> out` (MoCo v2's), the
/// embedding width read off the backbone's output on one blank `input`-sized image.
pub fn with_projection_head(mut spec: ModelSpec, input: &InputSpec, out: usize, device: &Device) -> Result<ModelSpec> {
    spec.head = kd_common::models::HeadSpec::None;
    let blank = burn::tensor::Tensor::<4>::zeros([1, input.channels, input.height, input.width], device);
    let [_, embedding] = spec.init(device)?.forward_features(blank).dims();
    spec.head = kd_common::models::HeadSpec::Projection { hidden: embedding, out };
    Ok(spec)
}

/// Loaders of the kNN monitor.
pub struct KnnSources {
    /// The first `bank_size` training images, labelled.
    pub bank: BatchLoader,
    /// Size of the bank.
    pub bank_size: usize,
    /// The validation split (monitored per pass), if any.
    pub val: Option<BatchLoader>,
    /// The test split.
    pub test: BatchLoader,
}

impl KnnSources {
    /// A bank of `bank` training images (0: all).
    pub fn new(splits: &Splits, input: &InputSpec, bank: usize, workers: usize, seed: u64) -> Result<Self> {
        let bank_size = if bank == 0 { splits.train.len() } else { bank.min(splits.train.len()) };
        let positions: Vec<usize> = (0..bank_size).collect();
        let eval = |dataset: kd_datasets::Dataset| {
            loader(dataset, eval_transform(input), crate::shared::run::EVAL_BATCH, false, workers, seed)
        };
        Ok(Self {
            bank: eval(splits.train.subset(&positions, "knn-bank"))?,
            bank_size,
            val: splits.val.as_ref().map(|v| eval(v.clone())).transpose()?,
            test: eval(splits.test.clone())?,
        })
    }
}

impl KnnSources {
    /// The loop's per-pass validation: kNN top-1 on the validation split, when there is one.
    pub fn validation(sources: Option<&Self>, knn: KnnConfig) -> Validation<'_> {
        match sources {
            Some(Self { bank, val: Some(queries), .. }) => Validation::Knn { bank, queries, config: knn },
            _ => Validation::None,
        }
    }
}

/// A finished encoder run.
pub struct TrainedEncoder<'a> {
    /// The network (inference mode).
    pub network: &'a Network,
    /// Its spec.
    pub spec: ModelSpec,
    /// Its input.
    pub input: InputSpec,
    /// The training images (identity and class names).
    pub train: &'a Dataset,
    /// The resolved configuration with its run hash (`shared::run::training_record`).
    pub config: Value,
    /// Metrics rows.
    pub rows: &'a [PassRow],
    /// The pass a killed run resumed after.
    pub resumed_after: Option<usize>,
    /// Tool name for the sidecar.
    pub tool: &'a str,
}

/// Measures test kNN top-1 (labelled data only), writes `weights` and its sidecar, returns the
/// summary.
pub fn save_encoder(
    run: TrainedEncoder,
    sources: Option<&KnnSources>,
    knn: KnnConfig,
    device: &Device,
    weights: &Path,
) -> Result<Value> {
    let test_knn = match sources {
        Some(s) => Some(knn_top1(run.network, &s.bank, &s.test, knn, device)?),
        None => None,
    };
    let last = run.rows.last();
    let metrics = json!({
        "test_knn_top1": test_knn,
        "last_val_knn_top1": last.and_then(|r| r.val("val_knn_top1")),
        "knn_bank": sources.map(|s| s.bank_size),
        "epochs": last.map_or(0, |r| r.epoch),
        "train_images_per_s": run.rows.iter().map(|r| r.images_per_s).sum::<f64>() / run.rows.len().max(1) as f64,
        "train_seconds": run.rows.iter().map(|r| r.seconds).sum::<f64>(),
        "train_images": run.rows.iter().map(|r| r.rows).sum::<usize>(),
        "resumed_after_pass": run.resumed_after,
    });
    let parts =
        CheckpointParts { spec: run.spec, input: run.input, train: run.train, training: run.config, tool: run.tool };
    write_checkpoint(run.network, parts, &metrics, None, weights)?;
    match (test_knn, sources) {
        (Some(top1), Some(s)) => {
            tracing::info!("test kNN top-1 {top1:.2}% (bank of {}); wrote {}", s.bank_size, weights.display())
        }
        _ => {
            tracing::info!("wrote {} (unlabelled data: evaluate it with kd-eval on labelled images)", weights.display())
        }
    }
    let mut summary = metrics;
    summary["checkpoint"] = json!(weights);
    Ok(summary)
}

//! `kd-eval`: accuracy, likelihood and calibration of a checkpoint on a dataset split, with
//! agreement and KL divergence to a reference checkpoint, a confusion matrix and per-image
//! predictions for checking results with any other tool.

mod frozen;

use crate::shared::cli::{CommonArgs, default_workers};
use crate::shared::data::{eval_transform, loader};
use anyhow::{Context, Result, bail};
use clap::Parser;
use frozen::{FrozenEval, evaluate_frozen};
use kd_common::checkpoint;
use kd_common::device::{self, DeviceSpec};
use kd_common::metrics::{EvalAccumulator, log_softmax};
use kd_common::train::{KnnConfig, LinearProbeConfig};
use kd_datasets::{DatasetKind, Split};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Evaluate a checkpoint; metrics JSON goes to stdout.
#[derive(Parser, Debug)]
#[command(name = "kd-eval", version, long_about = None)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The checkpoint (`model.safetensors`, with `model.json` beside it).
    pub checkpoint: PathBuf,
    /// Split to evaluate.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    pub split: SplitArg,
    /// A second checkpoint to compare with: agreement (% same prediction) and mean
    /// KL(reference || model).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Write per-image rows `index,label,predicted,p_0..p_{C-1}` to this CSV file.
    #[arg(long)]
    pub dump_predictions: Option<PathBuf>,
    /// Write the confusion matrix (rows: true class, columns: predicted) to this CSV file.
    #[arg(long)]
    pub confusion_matrix: Option<PathBuf>,
    /// Leave out image files that cannot be read or decoded (listed in the output) instead of
    /// stopping at the first (exit 2, naming the file).
    #[arg(long)]
    pub skip_bad_images: bool,
    /// Images per batch.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Weighted kNN top-1 of the pooled features, the training split as the bank (on by
    /// default for encoders without a classifier).
    #[arg(long)]
    pub knn: bool,
    /// Neighbours that vote.
    #[arg(long, default_value_t = 200)]
    pub knn_k: usize,
    /// Temperature of the vote.
    #[arg(long, default_value_t = 0.07)]
    pub knn_temperature: f32,
    /// Linear probe on cached features (on by default for encoders without a classifier).
    #[arg(long)]
    pub linear_probe: bool,
    /// Linear probe: epochs (MoCo protocol: 100).
    #[arg(long, default_value_t = 100)]
    pub probe_epochs: usize,
    /// Linear probe: SGD learning rate (MoCo protocol: 30).
    #[arg(long, default_value_t = 30.0)]
    pub probe_lr: f64,
    /// Linear probe: epochs where the rate drops 10x.
    #[arg(long, value_delimiter = ',', default_value = "60,80")]
    pub probe_milestones: Vec<usize>,
    /// Linear probe: batch size.
    #[arg(long, default_value_t = 256)]
    pub probe_batch_size: usize,
}

/// `--split`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitArg {
    /// The test split.
    Test,
    /// The training split.
    Train,
}

/// Runs `kd-eval`.
pub fn run(args: Args) -> Result<()> {
    args.common.init_output();
    let meta = checkpoint::read_meta(&args.checkpoint)
        .with_context(|| format!("reading checkpoint {}", args.checkpoint.display()))?;
    let trained_unlabeled = meta.training.get("unlabeled").and_then(|u| u.as_bool()).unwrap_or(false);
    if trained_unlabeled && args.common.data_dir.is_none() {
        bail!(
            "{} was trained on unlabelled images ({}); kNN and the linear probe need labelled ones: \
             pass --dataset and --data-dir",
            args.checkpoint.display(),
            meta.trained_data_dir().map_or_else(|| "no directory recorded".into(), |d| d.display().to_string())
        );
    }
    let kind = args.common.dataset.or_else(|| meta.trained_on()).unwrap_or(DatasetKind::FashionMnist);
    let data_dir =
        args.common.data_dir.clone().or_else(|| meta.trained_data_dir().filter(|_| args.common.dataset.is_none()));
    let spec_device = args.common.device.clone().unwrap_or(DeviceSpec::Auto);
    let device = device::resolve(&spec_device)?;
    tracing::info!("device: {}", device.description);
    let split = match args.split {
        SplitArg::Train => Split::Train,
        SplitArg::Test => Split::Test,
    };
    let seed = args.common.seed.unwrap_or(0);
    let dataset =
        kind.open(data_dir.as_deref(), split, meta.input.channels, crate::shared::run::FOLDER_TEST_FRACTION)?;
    let dataset = if args.skip_bad_images {
        dataset.skipping_bad_images(std::sync::Arc::new(kd_datasets::SkippedImages::default()))
    } else {
        dataset
    };
    let encoder = !meta.model.head.is_classifier();
    if !encoder && dataset.num_classes() != meta.model.num_classes {
        bail!(
            "{} was trained for {} classes but {kind} has {}",
            args.checkpoint.display(),
            meta.model.num_classes,
            dataset.num_classes()
        );
    }
    if dataset.channels() != meta.input.channels {
        bail!(
            "{} expects {} input channel(s) but {kind} images have {}",
            args.checkpoint.display(),
            meta.input.channels,
            dataset.channels()
        );
    }
    let (network, _) = checkpoint::load(&args.checkpoint, &device.device)?;
    let reference = match &args.reference {
        Some(path) => {
            let (reference, reference_meta) = checkpoint::load(path, &device.device)?;
            if reference_meta.model.num_classes != meta.model.num_classes {
                bail!(
                    "reference {} has {} classes, the checkpoint {}",
                    path.display(),
                    reference_meta.model.num_classes,
                    meta.model.num_classes
                );
            }
            if reference_meta.input != meta.input {
                bail!(
                    "reference {} expects another input (size or normalisation) than {}",
                    path.display(),
                    args.checkpoint.display()
                );
            }
            Some(reference)
        }
        None => None,
    };
    let workers = args.common.workers.unwrap_or_else(default_workers);
    let frozen = FrozenEval {
        knn: (encoder || args.knn).then_some(KnnConfig { k: args.knn_k, temperature: args.knn_temperature }),
        probe: (encoder || args.linear_probe).then(|| LinearProbeConfig {
            epochs: args.probe_epochs,
            lr: args.probe_lr,
            milestones: args.probe_milestones.clone(),
            batch_size: args.probe_batch_size,
            weight_decay: 0.0,
        }),
        workers,
        seed,
    };
    let frozen_metrics = if frozen.knn.is_some() || frozen.probe.is_some() {
        anyhow::ensure!(
            args.probe_epochs > 0 && args.probe_batch_size > 0 && args.knn_k > 0 && args.knn_temperature > 0.0,
            "kNN and the linear probe need k >= 1, a positive temperature, epochs and a batch size >= 1"
        );
        let train = kind.open(
            data_dir.as_deref(),
            Split::Train,
            meta.input.channels,
            crate::shared::run::FOLDER_TEST_FRACTION,
        )?;
        evaluate_frozen(&network, &meta.input, &train, &dataset, &frozen, &device)?
    } else {
        json!({})
    };
    if encoder {
        let (global_sparsity, _) = kd_common::sparsity::sparsity(&network)?;
        let mut output = json!({
            "checkpoint": args.checkpoint,
            "arch": meta.model.arch.to_string(),
            "dataset": kind.to_string(),
            "split": if split == Split::Train { "train" } else { "test" },
            "images": dataset.len(),
            "sparsity": {"global": global_sparsity},
            "device": device.description,
        });
        merge_into(&mut output, frozen_metrics);
        outln!("{}", serde_json::to_string_pretty(&output)?);
        return Ok(());
    }
    let loader = loader(dataset.clone(), eval_transform(&meta.input), args.batch_size, false, workers, seed)?;
    let classes = meta.model.num_classes;
    let mut accumulator = EvalAccumulator::new(classes);
    let mut dump = match &args.dump_predictions {
        Some(path) => Some(PredictionWriter::create(path, classes)?),
        None => None,
    };
    let started = Instant::now();
    kd_common::train::predict(&network, reference.as_slice(), &loader, &device.device, |batch, logits, reference| {
        let labels = batch.labels().unwrap_or_default();
        accumulator.add_batch(logits, labels, reference);
        if let Some(dump) = &mut dump {
            dump.write_batch(&batch.indices, labels, logits).map_err(|e| kd_common::Error::io(&dump.path, e))?;
        }
        Ok(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(dump) = dump {
        dump.finish()?;
    }
    let report = accumulator.report();
    if let Some(path) = &args.confusion_matrix {
        write_confusion(path, &dataset.classes, &report.confusion)?;
    }
    let per_class: serde_json::Map<String, serde_json::Value> =
        dataset.classes.iter().zip(&report.per_class_top1).map(|(name, acc)| (name.clone(), json!(acc))).collect();
    let (global_sparsity, layers) = kd_common::sparsity::sparsity(&network)?;
    let prunable: usize = layers.iter().map(|l| l.weights).sum();
    let output = json!({
        "checkpoint": args.checkpoint,
        "sparsity": {
            "global": global_sparsity,
            "prunable_weights": prunable,
            "nonzero_weights": layers.iter().map(|l| l.nonzero).sum::<usize>(),
            "layers": layers,
        },
        "arch": meta.model.arch.to_string(),
        "dataset": kind.to_string(),
        "split": if split == Split::Train { "train" } else { "test" },
        "images": report.images,
        "top1": report.top1,
        "top5": report.top5,
        "nll": report.nll,
        "ece": report.ece,
        "per_class_top1": per_class,
        "agreement": report.agreement,
        "kl_to_reference": report.kl_to_reference,
        "images_per_s": report.images as f64 / seconds,
        "device": device.description,
    });
    let mut output = output;
    if let Some(skipped) = crate::shared::data::skipped_summary(&dataset) {
        output["skipped_bad_images"] = skipped;
    }
    merge_into(&mut output, frozen_metrics);
    outln!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

fn merge_into(output: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(out), serde_json::Value::Object(extra)) = (output.as_object_mut(), extra) {
        out.extend(extra);
    }
}

/// Streams prediction rows to a temporary file, renamed into place when complete.
struct PredictionWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl PredictionWriter {
    fn create(path: &Path, classes: usize) -> Result<Self> {
        let tmp = kd_common::atomic::temp_path(path);
        let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let header: Vec<String> = ["index", "label", "predicted"]
            .iter()
            .map(|s| s.to_string())
            .chain((0..classes).map(|c| format!("p_{c}")))
            .collect();
        writeln!(out, "{}", header.join(",")).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { path: path.into(), tmp, out })
    }

    fn write_batch(&mut self, indices: &[usize], labels: &[usize], logits: &[f32]) -> std::io::Result<()> {
        let classes = logits.len() / labels.len().max(1);
        for (i, (&index, &label)) in indices.iter().zip(labels).enumerate() {
            let row = &logits[i * classes..(i + 1) * classes];
            let probabilities: Vec<String> = log_softmax(row).iter().map(|l| format!("{:.6e}", l.exp())).collect();
            writeln!(self.out, "{index},{label},{},{}", kd_common::metrics::argmax(row), probabilities.join(","))?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.out.flush().with_context(|| format!("writing {}", self.path.display()))?;
        std::fs::rename(&self.tmp, &self.path).with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

fn write_confusion(path: &Path, classes: &[String], confusion: &[Vec<u64>]) -> Result<()> {
    let mut text = format!("true\\predicted,{}\n", classes.join(","));
    for (name, row) in classes.iter().zip(confusion) {
        let cells: Vec<String> = row.iter().map(u64::to_string).collect();
        text.push_str(&format!("{name},{}\n", cells.join(",")));
    }
    kd_common::atomic::write_bytes(path, text.as_bytes())?;
    Ok(())
}

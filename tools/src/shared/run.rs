//! The run harness of the training tools (`kd-pretrain`, `kd-distill`, `kd-prune`, `kd-seed`):
//! the data settings every run shares ([`RunSettings`], flattened into each tool's
//! configuration), the one run hash, and the output folder's contract: a finished run with the
//! same hash is a no-op, a different run into it is refused before anything is written, and
//! otherwise the resolved configuration is written as `config.json` before training starts.

use crate::shared::cli::{CommonArgs, default_workers, hash_json, read_config_file};
use crate::shared::data::{Splits, open_splits};
use anyhow::{Context, Result, bail};
use kd_common::checkpoint;
use kd_common::device::DeviceSpec;
use kd_datasets::DatasetKind;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Training images held out for per-epoch validation by default (none for image folders,
/// whose size is unknown).
pub const DEFAULT_VAL_SIZE: usize = 5000;
/// Fraction of an image folder without a `val/` split held out as its test split (a fixed
/// shuffle, the same for every seed).
pub const FOLDER_TEST_FRACTION: f64 = 0.1;
/// Batch size of evaluation passes (validation, test, kNN banks, teacher scoring).
pub const EVAL_BATCH: usize = 256;

/// The data and execution settings of a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunSettings {
    /// Dataset.
    pub dataset: DatasetKind,
    /// Dataset directory (null: the standard location).
    pub data_dir: Option<PathBuf>,
    /// Training images held out for validation (0: none).
    pub val_size: usize,
    /// Image side for image folders (null: the dataset's, or the checkpoint's).
    #[serde(default)]
    pub image_size: Option<usize>,
    /// Channels for image folders (1 or 3).
    pub folder_channels: usize,
    /// Skip image files that cannot be read or decoded (recorded in the summary) instead of
    /// stopping.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_bad_images: bool,
    /// Seed.
    pub seed: u64,
    /// Loader workers (not part of the run hash).
    pub workers: usize,
    /// Device (not part of the run hash).
    pub device: DeviceSpec,
}

/// The flags of the training tools besides [`CommonArgs`]: their config file and data settings.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunFlags {
    /// Configuration file (TOML or JSON); flags override it, unknown keys are rejected.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training images held out for per-epoch validation (0: none).
    #[arg(long)]
    pub val_size: Option<usize>,
    /// Image side for image folders.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Skip image files that cannot be read or decoded (truncated, corrupt, empty): a training
    /// batch takes the next image instead, evaluation leaves them out, and the summary lists
    /// them. Without it the first one stops the run (exit 2, naming the file).
    #[arg(long)]
    pub skip_bad_images: bool,
}

impl RunFlags {
    /// The config file (if given) and the dataset: the flag, else the file's `dataset`, else
    /// Fashion-MNIST (the dataset decides the defaults the file is merged into).
    pub fn config_file_and_dataset(&self, common: &CommonArgs) -> Result<(Option<(PathBuf, Value)>, DatasetKind)> {
        let file = match &self.config {
            Some(path) => Some((path.clone(), read_config_file(path)?)),
            None => None,
        };
        let file_dataset =
            file.as_ref().and_then(|(_, v)| v.get("dataset")).and_then(|d| d.as_str()).map(str::parse::<DatasetKind>);
        let dataset = match (common.dataset, file_dataset) {
            (Some(d), _) => d,
            (None, Some(parsed)) => parsed?,
            (None, None) => DatasetKind::FashionMnist,
        };
        Ok((file, dataset))
    }
}

impl RunSettings {
    /// The defaults for `dataset`.
    pub fn defaults(dataset: DatasetKind) -> Self {
        Self {
            dataset,
            data_dir: None,
            val_size: if dataset == DatasetKind::Folder { 0 } else { DEFAULT_VAL_SIZE },
            image_size: None,
            folder_channels: 3,
            skip_bad_images: false,
            seed: 0,
            workers: default_workers(),
            device: DeviceSpec::Auto,
        }
    }

    /// Overrides the settings whose flags were given (`dataset` is the one the defaults were
    /// made for: the flag, else the config file's).
    pub fn apply(&mut self, dataset: DatasetKind, common: &CommonArgs, data: &RunFlags) {
        self.dataset = dataset;
        if let Some(dir) = &common.data_dir {
            self.data_dir = Some(dir.clone());
        }
        if let Some(spec) = &common.device {
            self.device = spec.clone();
        }
        if let Some(seed) = common.seed {
            self.seed = seed;
        }
        if let Some(workers) = common.workers {
            self.workers = workers;
        }
        if let Some(val) = data.val_size {
            self.val_size = val;
        }
        if let Some(size) = data.image_size {
            self.image_size = Some(size);
        }
        if data.skip_bad_images {
            self.skip_bad_images = true;
        }
    }

    /// Train (minus the validation hold-out), validation and test splits.
    pub fn open_splits(&self) -> Result<Splits> {
        let splits =
            open_splits(self.dataset, self.data_dir.as_deref(), self.val_size, self.seed, self.folder_channels)?;
        Ok(if self.skip_bad_images { splits.skipping_bad_images() } else { splits })
    }
}

/// The one run hash: SHA-256 of the configuration without what does not change the result
/// (`device`, `workers`), with `inputs` (the identities of the input files: teacher weights,
/// label files) when not null.
pub fn run_hash(config: &impl serde::Serialize, inputs: &Value) -> Result<String> {
    let mut value = serde_json::to_value(config)?;
    let object = value.as_object_mut().context("a configuration serialises to an object")?;
    object.remove("device");
    object.remove("workers");
    object.remove("run_hash");
    if !inputs.is_null() {
        object.insert("inputs".into(), inputs.clone());
    }
    Ok(hash_json(&value))
}

/// What [`claim_output`] found in the output folder.
pub enum Output {
    /// Nothing finished there: `config.json` is written, train.
    Fresh,
    /// This very run finished there before; its summary.
    Finished(Value),
}

/// Claims `out` for a run of `config` with `hash` that writes `weights`: when `weights` and
/// its sidecar exist the run is finished, and it must be this run (the sidecar records the
/// same hash) or it is refused, before anything in `out` changes; else the folder is made
/// writable and the resolved configuration written as `config.json`.
pub fn claim_output(out: &Path, weights: &Path, config: &impl serde::Serialize, hash: &str) -> Result<Output> {
    if weights.exists() && checkpoint::sidecar_path(weights).exists() {
        let meta = checkpoint::read_meta(weights).with_context(|| format!("the finished run in {}", out.display()))?;
        // A checkpoint without a recorded hash (written before kdkit recorded it) cannot be
        // told apart from another run with other inputs at the same paths: refused.
        let same = meta.training.get("run_hash").and_then(Value::as_str) == Some(hash);
        if !same {
            bail!(
                "{} holds a finished run of another configuration or other inputs; use another --out \
                 (or delete it to train again)",
                weights.display()
            );
        }
        let mut summary = meta.metrics;
        summary["checkpoint"] = json!(weights);
        summary["already_complete"] = json!(true);
        tracing::info!("{} is already complete with these settings; nothing to do", weights.display());
        return Ok(Output::Finished(summary));
    }
    kd_common::atomic::ensure_writable_dir(out).with_context(|| format!("output directory {}", out.display()))?;
    kd_common::atomic::write_json(&out.join("config.json"), config)?;
    Ok(Output::Fresh)
}

/// The resolved configuration as the sidecar records it: the configuration with its run hash.
pub fn training_record(config: &impl serde::Serialize, hash: &str) -> Result<Value> {
    let mut value = serde_json::to_value(config)?;
    value["run_hash"] = json!(hash);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Config {
        lr: f64,
        workers: usize,
        device: &'static str,
    }

    /// Device and worker count do not change the hash; the configuration and the inputs do.
    #[test]
    fn the_hash_ignores_device_and_workers() {
        let a = run_hash(&Config { lr: 0.1, workers: 1, device: "cpu" }, &Value::Null).unwrap();
        assert_eq!(a, run_hash(&Config { lr: 0.1, workers: 8, device: "cuda" }, &Value::Null).unwrap());
        assert_ne!(a, run_hash(&Config { lr: 0.2, workers: 1, device: "cpu" }, &Value::Null).unwrap());
        assert_ne!(a, run_hash(&Config { lr: 0.1, workers: 1, device: "cpu" }, &json!({"teachers": ["x"]})).unwrap());
        // By hand: the hash of `{"lr":0.1}` (workers and device removed), as `hash_json` computes it.
        assert_eq!(a, hash_json(&json!({"lr": 0.1})));
    }

    /// A folder that holds nothing finished is claimed and gets `config.json`; a finished run of
    /// another configuration is refused and `config.json` stays as it was.
    #[test]
    fn finished_runs_are_kept_or_refused_before_anything_is_written() {
        use kd_common::models::{Arch, ModelSpec};
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let weights = out.join("model.safetensors");
        let config = Config { lr: 0.1, workers: 1, device: "cpu" };
        let hash = run_hash(&config, &Value::Null).unwrap();
        assert!(matches!(claim_output(&out, &weights, &config, &hash).unwrap(), Output::Fresh));
        let written = std::fs::read_to_string(out.join("config.json")).unwrap();

        let device = burn::tensor::Device::default();
        let spec = ModelSpec { width: 0.25, ..ModelSpec::new(Arch::SmallCnn, 1, 2) };
        let meta = checkpoint::CheckpointMeta {
            format_version: checkpoint::FORMAT_VERSION,
            model: spec.clone(),
            input: checkpoint::InputSpec {
                channels: 1,
                height: 8,
                width: 8,
                mean: vec![0.0],
                std: vec![1.0],
                crop_fraction: None,
            },
            dataset: json!({}),
            classes: vec!["a".into(), "b".into()],
            training: training_record(&config, &hash).unwrap(),
            metrics: json!({"test_top1": 50.0}),
            weights_sha256: String::new(),
            written_by: "test".into(),
            pruning: None,
            imported_from: None,
            other: Default::default(),
        };
        checkpoint::save(&spec.init(&device).unwrap(), &meta, &weights).unwrap();

        let Output::Finished(summary) = claim_output(&out, &weights, &config, &hash).unwrap() else {
            panic!("the same run is finished");
        };
        assert_eq!((summary["test_top1"].as_f64(), summary["already_complete"].as_bool()), (Some(50.0), Some(true)));
        let other = Config { lr: 0.2, workers: 1, device: "cpu" };
        let other_hash = run_hash(&other, &Value::Null).unwrap();
        let err = claim_output(&out, &weights, &other, &other_hash).err().expect("refused").to_string();
        assert!(err.contains("another configuration"), "{err}");
        assert_eq!(std::fs::read_to_string(out.join("config.json")).unwrap(), written, "config.json untouched");
    }
}

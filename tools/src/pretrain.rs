//! `kd-pretrain`: supervised training of a teacher or a baseline student with cross-entropy and
//! optional label smoothing.

use crate::cli::{CommonArgs, default_workers, hash_json, merge, read_config_file};
use crate::data::{eval_transform, input_spec, loader, open_splits, train_transform};
use crate::profiles::{self, Profile, Role};
use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Int, Tensor};
use clap::Parser;
use kd_common::checkpoint::{self, CheckpointMeta};
use kd_common::device::{self, DeviceSpec};
use kd_common::losses::cross_entropy_with_smoothing;
use kd_common::models::{Arch, ModelSpec, Network, PlanItem, Shortcut};
use kd_common::train::{self, Objective, OptimizerConfig, StepOutput, TrainConfig};
use kd_datasets::{Augment, Batch, DatasetKind};
use serde_json::json;
use std::path::PathBuf;

/// Train a teacher or a baseline student with cross-entropy.
#[derive(Parser, Debug)]
#[command(name = "kd-pretrain", version, about, long_about = None)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output directory: config.json, metrics.csv, model.safetensors + model.json, state/.
    #[arg(long, default_value = "runs/pretrain")]
    pub out: PathBuf,
    /// Preset: quick (minutes on a 2-core CPU) or full (the long GPU recipe).
    #[arg(long, value_enum, default_value_t = Profile::Quick)]
    pub profile: Profile,
    /// Which network of the preset to train.
    #[arg(long, value_enum, default_value_t = RoleArg::Teacher)]
    pub role: RoleArg,
    /// Architecture (overrides the preset): resnet20/32/44/56/110, vgg11/13/16/19, vgg-custom,
    /// mobilenetv2, small-cnn.
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
    /// Channel width multiplier.
    #[arg(long)]
    pub width: Option<f32>,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimizer: sgd (Nesterov, momentum 0.9) or adamw.
    #[arg(long, value_parser = ["sgd", "adamw"])]
    pub optimizer: Option<String>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Label smoothing epsilon.
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// Training images held out for per-epoch validation (0: none).
    #[arg(long)]
    pub val_size: Option<usize>,
    /// Image side for image folders.
    #[arg(long)]
    pub image_size: Option<usize>,
}

/// `--role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// The preset's teacher.
    Teacher,
    /// The preset's student (a baseline without distillation).
    Student,
}

fn parse_arch(text: &str) -> Result<Arch, String> {
    text.parse().map_err(|e: kd_common::Error| e.to_string())
}

/// The network to build, without the data-dependent input channels and classes.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelChoice {
    /// Architecture.
    pub arch: Arch,
    /// Width multiplier.
    pub width: f32,
    /// ResNet shortcut.
    pub shortcut: Shortcut,
    /// VGG plan (vgg-custom).
    pub plan: Option<Vec<PlanItem>>,
}

/// The resolved configuration, written to `config.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// Preset the defaults came from.
    pub profile: Profile,
    /// Dataset.
    pub dataset: DatasetKind,
    /// Dataset directory (null: the standard location).
    pub data_dir: Option<PathBuf>,
    /// Network.
    pub model: ModelChoice,
    /// Loop hyper-parameters.
    pub train: TrainConfig,
    /// Label smoothing epsilon.
    pub label_smoothing: f32,
    /// Training augmentation.
    pub augment: Augment,
    /// Validation hold-out.
    pub val_size: usize,
    /// Image side for folders.
    pub image_size: Option<usize>,
    /// Channels for folders (1 or 3).
    pub folder_channels: usize,
    /// Seed.
    pub seed: u64,
    /// Loader workers.
    pub workers: usize,
    /// Device.
    pub device: DeviceSpec,
}

impl PretrainConfig {
    fn defaults(profile: Profile, role: Role, dataset: DatasetKind) -> Self {
        let (arch, width) = profiles::model(profile, role);
        Self {
            profile,
            dataset,
            data_dir: None,
            model: ModelChoice { arch, width, shortcut: Shortcut::Pad, plan: None },
            train: profiles::train_config(profile, dataset),
            label_smoothing: 0.0,
            augment: profiles::augment(profile, dataset),
            val_size: match dataset {
                DatasetKind::Folder => 0,
                _ => 5000,
            },
            image_size: None,
            folder_channels: 3,
            seed: 0,
            workers: default_workers(),
            device: DeviceSpec::Auto,
        }
    }

    /// Defaults of the preset, then the config file, then the flags.
    pub fn resolve(args: &Args) -> Result<Self> {
        let file = match &args.common.config {
            Some(path) => Some((path.clone(), read_config_file(path)?)),
            None => None,
        };
        let file_dataset = file.as_ref().and_then(|(_, v)| v.get("dataset")).and_then(|d| d.as_str()).map(str::parse::<DatasetKind>);
        let dataset = match (args.common.dataset, file_dataset) {
            (Some(d), _) => d,
            (None, Some(parsed)) => parsed?,
            (None, None) => DatasetKind::FashionMnist,
        };
        let role = if args.role == RoleArg::Teacher { Role::Teacher } else { Role::Student };
        let mut value = serde_json::to_value(Self::defaults(args.profile, role, dataset))?;
        if let Some((path, overlay)) = &file {
            merge(&mut value, overlay, "", path)?;
        }
        let mut config: Self = serde_json::from_value(value).context("the configuration does not fit its schema")?;
        let c = &args.common;
        config.dataset = dataset;
        if let Some(dir) = &c.data_dir {
            config.data_dir = Some(dir.clone());
        }
        if let Some(device) = &c.device {
            config.device = device.clone();
        }
        if let Some(seed) = c.seed {
            config.seed = seed;
        }
        if let Some(workers) = c.workers {
            config.workers = workers;
        }
        if let Some(arch) = args.arch {
            config.model.arch = arch;
        }
        if let Some(width) = args.width {
            config.model.width = width;
        }
        if let Some(epochs) = args.epochs {
            config.train.epochs = epochs;
        }
        if let Some(batch) = args.batch_size {
            config.train.batch_size = batch;
        }
        if let Some(lr) = args.lr {
            config.train.schedule.lr = lr;
        }
        if let Some(name) = &args.optimizer {
            config.train.optimizer = match name.as_str() {
                "adamw" => OptimizerConfig::Adamw { betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.05 },
                _ => OptimizerConfig::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 },
            };
        }
        if let Some(wd) = args.weight_decay {
            match &mut config.train.optimizer {
                OptimizerConfig::Sgd { weight_decay, .. } | OptimizerConfig::Adamw { weight_decay, .. } => *weight_decay = wd,
            }
        }
        if let Some(eps) = args.label_smoothing {
            config.label_smoothing = eps;
        }
        if let Some(val) = args.val_size {
            config.val_size = val;
        }
        if let Some(size) = args.image_size {
            config.image_size = Some(size);
        }
        if !(0.0..1.0).contains(&config.label_smoothing) {
            anyhow::bail!("label smoothing must be in [0, 1), got {}", config.label_smoothing);
        }
        Ok(config)
    }

    /// Hash of everything that shapes the result (not the device or the worker count).
    pub fn run_hash(&self) -> Result<String> {
        let mut value = serde_json::to_value(self)?;
        let object = value.as_object_mut().expect("the config serialises to an object");
        object.remove("device");
        object.remove("workers");
        Ok(hash_json(&value))
    }
}

/// Cross-entropy with label smoothing on hard labels.
pub struct CrossEntropy {
    /// Smoothing epsilon.
    pub label_smoothing: f32,
}

impl Objective<Network> for CrossEntropy {
    fn step(&mut self, model: &Network, images: Tensor<4>, labels: Tensor<1, Int>, _batch: &Batch) -> kd_common::Result<StepOutput> {
        let logits = model.forward(images);
        let loss = cross_entropy_with_smoothing(logits.clone(), labels, self.label_smoothing);
        Ok(StepOutput { loss, logits })
    }

    fn network<'a>(&self, model: &'a Network) -> &'a Network {
        model
    }
}

/// Runs `kd-pretrain`.
pub fn run(args: Args) -> Result<()> {
    args.common.init_output();
    let config = PretrainConfig::resolve(&args)?;
    let device = device::resolve(&config.device)?;
    tracing::info!("device: {}", device.description);

    let splits = open_splits(config.dataset, config.data_dir.as_deref(), config.val_size, config.seed, config.folder_channels)?;
    let input = input_spec(config.dataset, &splits.train, config.image_size)?;
    let classes = splits.train.classes.clone();
    let mut spec = ModelSpec::new(config.model.arch, input.channels, classes.len());
    spec.width = config.model.width;
    spec.shortcut = config.model.shortcut;
    if config.model.plan.is_some() {
        spec.plan = config.model.plan.clone();
    }
    kd_common::atomic::ensure_writable_dir(&args.out).with_context(|| format!("output directory {}", args.out.display()))?;
    kd_common::atomic::write_json(&args.out.join("config.json"), &config)?;
    let run_hash = config.run_hash()?;

    device.device.seed(config.seed);
    let network = spec.init(&device.device.clone().autodiff())?;
    tracing::info!(
        "{} ({:.3} M parameters) on {}: {} train / {} val / {} test images",
        spec.arch,
        kd_common::models::trainable_params(&network) as f64 / 1e6,
        config.dataset,
        splits.train.len(),
        splits.val.as_ref().map_or(0, |v| v.len()),
        splits.test.len()
    );
    let batch = config.train.batch_size;
    let train_loader = loader(splits.train.clone(), train_transform(&input, config.augment.clone()), batch, true, config.workers, config.seed)?;
    let val_loader = match &splits.val {
        Some(val) => Some(loader(val.clone(), eval_transform(&input), 256, false, config.workers, config.seed)?),
        None => None,
    };
    let mut objective = CrossEntropy { label_smoothing: config.label_smoothing };
    let started = std::time::Instant::now();
    let outcome = train::fit(network, &mut objective, &config.train, &train_loader, val_loader.as_ref(), &device, &args.out, &run_hash)?;

    let network = outcome.model.valid();
    let test_loader = loader(splits.test.clone(), eval_transform(&input), 256, false, config.workers, config.seed)?;
    let test = train::evaluate(&network, None, &test_loader, &device.device)?;
    let last = outcome.rows.last().expect("at least one epoch ran");
    let best = outcome.rows.iter().filter_map(|r| r.val_top1.map(|v| (v, r.epoch))).fold(None, |best: Option<(f64, usize)>, x| match best {
        Some(b) if b.0 >= x.0 => Some(b),
        _ => Some(x),
    });
    let metrics = json!({
        "test_top1": test.top1,
        "test_top5": test.top5,
        "test_nll": test.nll,
        "test_ece": test.ece,
        "last_val_top1": last.val_top1,
        "best_val_top1": best.map(|b| b.0),
        "best_val_epoch": best.map(|b| b.1),
        "epochs": outcome.rows.len(),
        "train_images_per_s": outcome.rows.iter().map(|r| r.images_per_s).sum::<f64>() / outcome.rows.len() as f64,
        "train_seconds": outcome.rows.iter().map(|r| r.seconds).sum::<f64>(),
        "resumed_after_epoch": outcome.resumed_after,
    });
    let meta = CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        model: spec,
        input,
        dataset: serde_json::to_value(splits.train.identity())?,
        classes,
        training: serde_json::to_value(&config)?,
        metrics: metrics.clone(),
        weights_sha256: String::new(),
        written_by: format!("kd-pretrain {}", env!("CARGO_PKG_VERSION")),
    };
    let weights = args.out.join("model.safetensors");
    checkpoint::save(&network, &meta, &weights)?;
    tracing::info!(
        "test top-1 {:.2}% (top-5 {:.2}%, NLL {:.4}) after {:.0} s; wrote {}",
        test.top1,
        test.top5,
        test.nll,
        started.elapsed().as_secs_f64(),
        weights.display()
    );
    let mut summary = metrics;
    summary["checkpoint"] = json!(weights);
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

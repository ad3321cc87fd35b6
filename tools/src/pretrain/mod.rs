//! `kd-pretrain`: supervised training of a teacher or a baseline student with cross-entropy and
//! optional label smoothing.

use crate::shared::cli::{CommonArgs, overlay_config};
use crate::shared::data::{input_spec, train_and_val_loaders, unlabeled_holdout};
use crate::shared::finish::{TrainedRun, print_summary, save_trained};
use crate::shared::initial::{init_identity, initial_network};
use crate::shared::profiles::{self, Profile, Role};
use crate::shared::run::{Output, RunFlags, RunSettings, claim_output, run_hash, training_record};
use crate::shared::ssl_data::SslDataSpec;
pub mod moco;

use moco::MocoConfig;

pub use crate::shared::train_args::ModelChoice;
use crate::shared::train_args::TrainArgs;
use anyhow::Result;
use burn::module::Module;
use burn::tensor::Device;
use clap::Parser;
use kd_common::device;
use kd_common::losses::cross_entropy_with_smoothing;
use kd_common::models::Network;
use kd_common::train::{self, Objective, Phase, Run, StepOutput, TrainConfig, Validation, upload};
use kd_datasets::{Augment, Batch, DatasetKind};
use std::path::PathBuf;

/// Train a teacher or a baseline student with cross-entropy.
#[derive(Parser, Debug)]
#[command(name = "kd-pretrain", version, long_about = None)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output directory: config.json, metrics.csv, model.safetensors + model.json, state/.
    #[arg(long, default_value = "runs/pretrain")]
    pub out: PathBuf,
    /// Preset: quick (minutes on a 2-core CPU), converged (quick 8x as long) or full (the long GPU recipe).
    #[arg(long, value_enum, default_value_t = Profile::Quick)]
    pub profile: Profile,
    /// Which network of the preset to train.
    #[arg(long, value_enum, default_value_t = RoleArg::Teacher)]
    pub role: RoleArg,
    #[command(flatten)]
    pub data: RunFlags,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Label smoothing epsilon.
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// Supervised (cross-entropy on labels) or MoCo v2 (self-supervised, no labels read).
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// MoCo: keys in the queue (a multiple of the batch size).
    #[arg(long)]
    pub queue: Option<usize>,
    /// MoCo: momentum of the key encoder.
    #[arg(long)]
    pub moco_momentum: Option<f32>,
    /// MoCo: InfoNCE temperature.
    #[arg(long)]
    pub moco_temperature: Option<f32>,
    /// Leave out the N training images that `kd-distill ssld --unlabeled train-holdout:N` uses
    /// as unlabelled data (same seed, same images): SSLD's labelled-only baseline.
    #[arg(long)]
    pub unlabeled_holdout: Option<usize>,
    /// MoCo: train on every PNG/JPEG under --data-dir (with --dataset folder), images without
    /// class folders or labels; no kNN monitor (evaluate the encoder with kd-eval).
    #[arg(long)]
    pub unlabeled: bool,
    /// Supervised: continue from this checkpoint (its architecture is used) instead of a fresh
    /// network, e.g. a baseline trained on for as many epochs as a method that starts from it.
    #[arg(long)]
    pub init: Option<PathBuf>,
}

/// `--method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// Cross-entropy on the labels.
    Supervised,
    /// MoCo v2 contrastive pretraining.
    Moco,
}

/// What the network is trained for.
#[derive(Clone, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PretrainMethod {
    /// Cross-entropy on the labels.
    #[default]
    Supervised,
    /// MoCo v2 (`moco.rs`).
    Moco(MocoConfig),
}

/// `--role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// The preset's teacher.
    Teacher,
    /// The preset's student (a baseline without distillation).
    Student,
}

/// The resolved configuration, written to `config.json` (unknown keys of a config file are
/// refused by the overlay, `shared::cli::merge`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PretrainConfig {
    /// Preset the defaults came from.
    pub profile: Profile,
    /// Data and execution settings.
    #[serde(flatten)]
    pub run: RunSettings,
    /// Training images left out as SSLD's unlabelled hold-out (0: none); absent in older configs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unlabeled_holdout: usize,
    /// The folder's images carry no labels (MoCo only); absent in older configs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unlabeled: bool,
    /// Network (with `init`, the initial checkpoint's).
    pub model: ModelChoice,
    /// Checkpoint the network starts from (supervised only); absent in older configs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Loop hyper-parameters.
    pub train: TrainConfig,
    /// Label smoothing epsilon.
    pub label_smoothing: f32,
    /// Supervised or self-supervised (MoCo v2); older configs without it are supervised.
    #[serde(default)]
    pub method: PretrainMethod,
    /// Training augmentation.
    pub augment: Augment,
}

impl PretrainConfig {
    fn defaults(profile: Profile, role: Role, dataset: DatasetKind, method: MethodArg) -> Self {
        let (arch, width) = profiles::model(profile, role);
        let supervised = Self {
            profile,
            run: RunSettings::defaults(dataset),
            unlabeled: false,
            unlabeled_holdout: 0,
            model: ModelChoice::new(arch, width),
            init: None,
            train: profiles::train_config(profile, dataset),
            label_smoothing: 0.0,
            method: PretrainMethod::Supervised,
            augment: profiles::augment(profile, dataset),
        };
        match method {
            MethodArg::Supervised => supervised,
            MethodArg::Moco => {
                let (moco, train) = profiles::moco(profile, dataset);
                Self {
                    method: PretrainMethod::Moco(moco),
                    train,
                    augment: kd_datasets::Augment::moco_v2(dataset.default_side().unwrap_or(224), dataset.mirrors()),
                    ..supervised
                }
            }
        }
    }

    /// The quick preset's teacher on Fashion-MNIST (tests start from it).
    pub fn defaults_for_tests() -> Self {
        Self::defaults(Profile::Quick, Role::Teacher, DatasetKind::FashionMnist, MethodArg::Supervised)
    }

    /// Defaults of the preset, then the config file, then the flags.
    pub fn resolve(args: &Args) -> Result<Self> {
        let (file, dataset) = args.data.config_file_and_dataset(&args.common)?;
        let role = if args.role == RoleArg::Teacher { Role::Teacher } else { Role::Student };
        let file_method = file.as_ref().and_then(|(_, v)| v.pointer("/method/kind")).and_then(|k| k.as_str());
        let method = match (args.method, file_method) {
            (Some(m), _) => m,
            (None, Some("moco")) => MethodArg::Moco,
            _ => MethodArg::Supervised,
        };
        let mut config = overlay_config(&Self::defaults(args.profile, role, dataset, method), file.as_ref())?;
        config.run.apply(dataset, &args.common, &args.data);
        args.train.apply(&mut config.model, &mut config.train);
        if let Some(eps) = args.label_smoothing {
            config.label_smoothing = eps;
        }
        config.unlabeled |= args.unlabeled;
        if let Some(init) = &args.init {
            config.init = Some(init.clone());
        }
        if config.init.is_some() && config.method != PretrainMethod::Supervised {
            anyhow::bail!("--init continues supervised training from a checkpoint; MoCo starts from a fresh network");
        }
        if let Some(count) = args.unlabeled_holdout {
            config.unlabeled_holdout = count;
        }
        if config.unlabeled_holdout > 0 && config.method != PretrainMethod::Supervised {
            anyhow::bail!("--unlabeled-holdout makes a labelled-only baseline: it belongs to supervised training");
        }
        if config.unlabeled && config.method == PretrainMethod::Supervised {
            anyhow::bail!(
                "--unlabeled: supervised pretraining learns from labels and the images have none; \
                 use --method moco for self-supervised pretraining"
            );
        }
        if let PretrainMethod::Moco(moco) = &mut config.method {
            if let Some(queue) = args.queue {
                moco.queue = queue;
            }
            if let Some(m) = args.moco_momentum {
                moco.momentum = m;
            }
            if let Some(t) = args.moco_temperature {
                moco.temperature = t;
            }
            moco.validate(config.train.batch_size)?;
            anyhow::ensure!(
                config.label_smoothing == 0.0,
                "--label-smoothing smooths labels, which MoCo does not read; leave it out with --method moco"
            );
            config.ssl_data().validate()?;
        } else if args.queue.is_some() || args.moco_momentum.is_some() || args.moco_temperature.is_some() {
            anyhow::bail!("--queue, --moco-momentum and --moco-temperature belong to --method moco");
        }
        if !(0.0..1.0).contains(&config.label_smoothing) {
            anyhow::bail!("label smoothing must be in [0, 1), got {}", config.label_smoothing);
        }
        Ok(config)
    }

    /// The data of a MoCo run.
    pub fn ssl_data(&self) -> SslDataSpec<'_> {
        SslDataSpec { run: &self.run, unlabeled: self.unlabeled }
    }
}

/// Cross-entropy with label smoothing on hard labels.
pub struct CrossEntropy {
    /// Smoothing epsilon.
    pub label_smoothing: f32,
}

impl Objective<Network> for CrossEntropy {
    fn step(&mut self, model: &Network, batch: &Batch, device: &Device) -> kd_common::Result<StepOutput> {
        let logits = model.forward(upload::images(batch, 0, device)?);
        let loss = cross_entropy_with_smoothing(logits.clone(), upload::labels(batch, device)?, self.label_smoothing);
        Ok(StepOutput::with_logits(loss, logits))
    }

    fn network<'a>(&self, model: &'a Network) -> Option<&'a Network> {
        Some(model)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Runs `kd-pretrain`.
pub fn run(args: Args) -> Result<()> {
    args.common.init_output();
    let mut config = PretrainConfig::resolve(&args)?;
    // Arguments first, before any device is touched or data read.
    config.train.validate()?;
    config.model.validate()?;
    let device = device::resolve(&config.run.device)?;
    tracing::info!("device: {}", device.description);
    if let PretrainMethod::Moco(moco) = &config.method {
        return moco::run(&config, moco, &device, &args.out);
    }
    let mut splits = config.run.open_splits()?;
    if config.unlabeled_holdout > 0 {
        splits.train = unlabeled_holdout(&splits.train, config.unlabeled_holdout, config.run.seed)?.0;
    }
    let input = input_spec(config.run.dataset, &splits.train, config.run.image_size)?;
    let init = config.init.clone();
    if let Some(path) = &init {
        anyhow::ensure!(path.exists(), "initial network {}: not found", path.display());
    }
    device.device.seed(config.run.seed);
    let classes = splits.train.classes.len();
    let ad_device = device.device.clone().autodiff();
    let (network, spec) = initial_network(init.as_deref(), &config.model, &input, classes, &ad_device)?;
    if init.is_some() {
        // Record the architecture the initial checkpoint brought.
        config.model = ModelChoice::from_spec(&spec);
    }
    // A run from an initial checkpoint is identified by its weights too (runs without one keep
    // the hash they always had).
    let identity =
        init_identity(init.as_deref())?.map_or(serde_json::Value::Null, |sha| serde_json::json!({"init": sha}));
    let hash = run_hash(&config, &identity)?;
    let weights = args.out.join("model.safetensors");
    if let Output::Finished(summary) = claim_output(&args.out, &weights, &config, &hash)? {
        return print_summary(summary, serde_json::Value::Null);
    }
    tracing::info!(
        "{} ({:.3} M parameters) on {}: {} train / {} val / {} test images",
        spec.arch,
        kd_common::models::trainable_params(&network) as f64 / 1e6,
        config.run.dataset,
        splits.train.len(),
        splits.val.as_ref().map_or(0, |v| v.len()),
        splits.test.len()
    );
    let (workers, seed) = (config.run.workers, config.run.seed);
    let (train_loader, val_loader) =
        train_and_val_loaders(&splits, &input, config.augment.clone(), config.train.batch_size, workers, seed)?;
    let run = Run {
        config: &config.train,
        phases: vec![Phase::epochs(&train_loader, config.train.epochs)],
        validation: Validation::classification_if_any(val_loader.as_ref()),
        device: &device,
        out_dir: &args.out,
        run_hash: &hash,
    };
    let outcome = train::fit(network, &mut CrossEntropy { label_smoothing: config.label_smoothing }, &run)?;
    let network = outcome.model.valid();
    let trained = TrainedRun {
        network: &network,
        spec,
        input,
        train: &splits.train,
        test: &splits.test,
        config: training_record(&config, &hash)?,
        rows: &outcome.rows,
        resumed_after: outcome.resumed_after,
        references: &[],
        workers,
        seed,
        tool: "kd-pretrain",
        pruning: None,
    };
    print_summary(save_trained(trained, &device.device, &weights)?, serde_json::Value::Null)
}

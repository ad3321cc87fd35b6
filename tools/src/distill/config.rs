//! Command line and resolved configuration of `kd-distill`: preset defaults for the method,
//! then the config file (unknown keys rejected), then the flags.

use super::method::{DiscriminatorConfig, DiscriminatorInput, Divergence, Method, RegionCrops, UnlabeledSource};
use crate::shared::cli::{CommonArgs, default_workers, hash_json, overlay_config};
use crate::shared::profiles::{self, Profile, Role};
use crate::shared::train_args::{ModelChoice, TrainArgs, set_weight_decay};
use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use kd_common::device::DeviceSpec;
use kd_common::train::TrainConfig;
use kd_datasets::{Augment, DatasetKind};
use std::path::PathBuf;

/// Train a student from teachers or from packed FKD labels.
#[derive(Parser, Debug)]
#[command(name = "kd-distill", version, long_about = None)]
pub struct Args {
    /// The method.
    #[command(subcommand)]
    pub method: MethodArgs,
}

/// One subcommand per method.
#[derive(Subcommand, Debug)]
pub enum MethodArgs {
    /// Online Hinton KD: alpha T^2 KL(p_t || p_s) + (1 - alpha) CE, teachers frozen.
    Kd(KdArgs),
    /// FKD: soft cross-entropy on region crops rebuilt from a kd-pack-labels file, no teacher.
    Fkd(FkdArgs),
    /// MEAL V2: soft cross-entropy to the teachers' mean softmax plus a discriminator.
    #[command(name = "meal-v2")]
    MealV2(MealArgs),
    /// SSLD: symmetric KL to the teacher on labeled + unlabeled images, then a fine-tune.
    Ssld(SsldArgs),
}

/// Flags of every method.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Output directory: config.json, metrics.csv, model.safetensors + model.json, state/.
    #[arg(long, default_value = "runs/distill")]
    pub out: PathBuf,
    /// Preset of the student and its optimisation: quick or full.
    #[arg(long, value_enum, default_value_t = Profile::Quick)]
    pub profile: Profile,
    /// Start the student from this checkpoint (its architecture is used).
    #[arg(long)]
    pub init: Option<PathBuf>,
}

/// `kd-distill kd`.
#[derive(clap::Args, Debug)]
pub struct KdArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Teacher checkpoint; repeat for an ensemble (average of softmax probabilities).
    #[arg(long = "teacher")]
    pub teachers: Vec<PathBuf>,
    /// Weight of the distillation term (default 0.9; prune-then-distill's CIFAR-100 runs: 0.95).
    #[arg(long)]
    pub alpha: Option<f32>,
    /// Temperature T (default 4; prune-then-distill's CIFAR-100 runs: 10).
    #[arg(long)]
    pub temperature: Option<f32>,
}

/// Multi-crop flags of the region-label methods.
#[derive(clap::Args, Debug)]
pub struct CropArgs {
    /// Stored crops drawn per image visit (FKD: 4); a pass counts as this many epochs.
    #[arg(long)]
    pub num_crops: Option<usize>,
    /// Final epochs trained with one crop per image (FKD: num_crops).
    #[arg(long)]
    pub final_single_crop_epochs: Option<usize>,
    /// Label files up to this many MiB are read into memory, larger ones chunk by chunk.
    #[arg(long)]
    pub label_memory_mib: Option<u64>,
}

/// `kd-distill fkd`.
#[derive(clap::Args, Debug)]
pub struct FkdArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// The kd-pack-labels file.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    #[command(flatten)]
    pub crops: CropArgs,
    /// Student softmax temperature of the soft cross-entropy.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Teacher checkpoint(s) to measure agreement with (optional; never run during training).
    #[arg(long = "reference")]
    pub references: Vec<PathBuf>,
}

/// `kd-distill meal-v2`.
#[derive(clap::Args, Debug)]
pub struct MealArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Teacher checkpoint; repeat for the ensemble.
    #[arg(long = "teacher")]
    pub teachers: Vec<PathBuf>,
    /// Train from packed ensemble labels instead of running the teachers.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    #[command(flatten)]
    pub crops: CropArgs,
    /// Train without the discriminator.
    #[arg(long)]
    pub no_discriminator: bool,
    /// Discriminator input: logits (MEAL V2) or probs (MEAL V2's FKD variant; required with
    /// --labels). Default: logits online, probs with --labels.
    #[arg(long, value_enum)]
    pub disc_input: Option<DiscriminatorInput>,
    /// ReLU after the discriminator's last layer: true (the default) as MEAL V2's code does,
    /// false for a plain linear output.
    #[arg(long, value_name = "BOOL")]
    pub disc_final_relu: Option<bool>,
}

/// `kd-distill ssld`.
#[derive(clap::Args, Debug)]
pub struct SsldArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Teacher checkpoint; repeat for an ensemble.
    #[arg(long = "teacher")]
    pub teachers: Vec<PathBuf>,
    /// symmetric-kl (PaddleClas's "JS") or jensen-shannon (the true JS divergence).
    #[arg(long, value_enum)]
    pub divergence: Option<Divergence>,
    /// Unlabeled images: train-holdout:N, folder:PATH or DATASET:SPLIT[:DIR].
    #[arg(long)]
    pub unlabeled: Option<UnlabeledSource>,
    /// Keep the k unlabeled images with the highest teacher score per class.
    #[arg(long)]
    pub select_per_class: Option<usize>,
    /// Epochs of the fine-tune on the labeled set.
    #[arg(long)]
    pub finetune_epochs: Option<usize>,
    /// Fine-tune learning rate relative to the distillation learning rate.
    #[arg(long)]
    pub finetune_lr_scale: Option<f64>,
}

impl MethodArgs {
    /// The flags every method shares.
    pub fn run_args(&self) -> &RunArgs {
        match self {
            Self::Kd(a) => &a.run,
            Self::Fkd(a) => &a.run,
            Self::MealV2(a) => &a.run,
            Self::Ssld(a) => &a.run,
        }
    }
}

/// The resolved configuration, written to `config.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// Preset the defaults came from.
    pub profile: Profile,
    /// Dataset.
    pub dataset: DatasetKind,
    /// Dataset directory (null: the standard location).
    pub data_dir: Option<PathBuf>,
    /// Student network (ignored with `init`, whose architecture is used).
    pub model: ModelChoice,
    /// Checkpoint the student starts from.
    pub init: Option<PathBuf>,
    /// Loop hyper-parameters.
    pub train: TrainConfig,
    /// The method.
    pub method: Method,
    /// Training augmentation (online methods; region crops come from the label file).
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
    /// Teachers measured for agreement only (FKD).
    pub references: Vec<PathBuf>,
}

fn default_crops(profile: Profile) -> RegionCrops {
    // The quick preset's 5 epochs: one 4-crop pass (4 epochs) and one single-crop epoch.
    let final_single_crop_epochs = if profile == Profile::Quick { 1 } else { 4 };
    RegionCrops { num_crops: 4, final_single_crop_epochs, memory_budget_mib: 2048 }
}

fn default_method(args: &MethodArgs, profile: Profile) -> Method {
    match args {
        // Hinton KD as the CIFAR benchmarks run it (Tian et al., CRD, ICLR 2020, §4: T 4, 0.9 on
        // the KL term). prune-then-distill's T 10 flattens a 10-class target almost to uniform.
        MethodArgs::Kd(_) => Method::Kd { teachers: vec![], alpha: 0.9, temperature: 4.0 },
        MethodArgs::Fkd(_) => Method::Fkd { labels: PathBuf::new(), crops: default_crops(profile), temperature: 1.0 },
        MethodArgs::MealV2(a) => Method::MealV2 {
            teachers: vec![],
            labels: None,
            crops: default_crops(profile),
            discriminator: Some(DiscriminatorConfig {
                input: if a.labels.is_some() { DiscriminatorInput::Probs } else { DiscriminatorInput::Logits },
                final_relu: true,
            }),
        },
        MethodArgs::Ssld(_) => Method::Ssld {
            teachers: vec![],
            divergence: Divergence::SymmetricKl,
            unlabeled: None,
            select_per_class: None,
            finetune_epochs: if profile == Profile::Quick { 1 } else { 30 },
            finetune_lr_scale: 0.01,
        },
    }
}

impl DistillConfig {
    fn defaults(args: &MethodArgs, profile: Profile, dataset: DatasetKind) -> Self {
        let (arch, width) = profiles::model(profile, Role::Student);
        let mut train = profiles::train_config(profile, dataset);
        if matches!(args, MethodArgs::MealV2(_)) {
            // MEAL V2 trains without weight decay (Shen & Savvides, MEAL V2, 2020, §3.1).
            set_weight_decay(&mut train, 0.0);
        }
        Self {
            profile,
            dataset,
            data_dir: None,
            model: ModelChoice::new(arch, width),
            init: None,
            train,
            method: default_method(args, profile),
            augment: profiles::augment(profile, dataset),
            val_size: if dataset == DatasetKind::Folder { 0 } else { 5000 },
            image_size: None,
            folder_channels: 3,
            seed: 0,
            workers: default_workers(),
            device: DeviceSpec::Auto,
            references: vec![],
        }
    }

    /// Checks that every input file the run names exists (teachers, label file, references,
    /// initial checkpoint), so that a typo fails at once with "not found".
    pub fn check_inputs(&self) -> Result<()> {
        let mut files: Vec<(&str, &std::path::Path)> = Vec::new();
        files.extend(self.method.teachers().iter().map(|p| ("teacher", p.as_path())));
        files.extend(self.references.iter().map(|p| ("reference", p.as_path())));
        if let Some(labels) = self.method.labels().filter(|l| !l.as_os_str().is_empty()) {
            files.push(("label file", labels.as_path()));
        }
        if let Some(init) = &self.init {
            files.push(("initial checkpoint", init.as_path()));
        }
        for (what, path) in files {
            if !path.exists() {
                bail!("{what} {}: not found", path.display());
            }
        }
        Ok(())
    }

    /// Defaults, then the config file, then the flags.
    pub fn resolve(args: &MethodArgs) -> Result<Self> {
        let run = args.run_args();
        let (file, dataset) = run.common.config_file_and_dataset()?;
        let defaults = Self::defaults(args, run.profile, dataset);
        let kind = defaults.method.name();
        if let Some((path, overlay)) = &file
            && let Some(file_kind) = overlay.get("method").and_then(|m| m.get("kind")).and_then(|k| k.as_str())
            && file_kind != kind
        {
            bail!("{}: method.kind is `{file_kind}` but the command is `{kind}`", path.display());
        }
        let mut config = overlay_config(&defaults, file.as_ref())?;
        let c = &run.common;
        config.dataset = dataset;
        c.apply(&mut config.data_dir, &mut config.device, &mut config.seed, &mut config.workers);
        if let Some(init) = &run.init {
            config.init = Some(init.clone());
        }
        run.train.apply(&mut config.model, &mut config.train, &mut config.val_size, &mut config.image_size);
        apply_method_flags(args, &mut config);
        config.method.validate(config.train.epochs).map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    /// Hash of everything that shapes the result (not the device or the worker count), with
    /// the teachers' and label file's identities.
    pub fn run_hash(&self, inputs: &serde_json::Value) -> Result<String> {
        let mut value = serde_json::to_value(self)?;
        let object = value.as_object_mut().expect("the config serialises to an object");
        object.remove("device");
        object.remove("workers");
        object.insert("inputs".into(), inputs.clone());
        Ok(hash_json(&value))
    }
}

fn set_if<T: Clone>(slot: &mut T, flag: &Option<T>) {
    if let Some(value) = flag {
        *slot = value.clone();
    }
}

fn apply_crops(crops: &mut RegionCrops, flags: &CropArgs) {
    set_if(&mut crops.num_crops, &flags.num_crops);
    set_if(&mut crops.final_single_crop_epochs, &flags.final_single_crop_epochs);
    set_if(&mut crops.memory_budget_mib, &flags.label_memory_mib);
}

fn apply_method_flags(args: &MethodArgs, config: &mut DistillConfig) {
    match (args, &mut config.method) {
        (MethodArgs::Kd(a), Method::Kd { teachers, alpha, temperature }) => {
            if !a.teachers.is_empty() {
                *teachers = a.teachers.clone();
            }
            set_if(alpha, &a.alpha);
            set_if(temperature, &a.temperature);
        }
        (MethodArgs::Fkd(a), Method::Fkd { labels, crops, temperature }) => {
            if let Some(path) = &a.labels {
                *labels = path.clone();
            }
            apply_crops(crops, &a.crops);
            set_if(temperature, &a.temperature);
            if !a.references.is_empty() {
                config.references = a.references.clone();
            }
        }
        (MethodArgs::MealV2(a), Method::MealV2 { teachers, labels, crops, discriminator }) => {
            if !a.teachers.is_empty() {
                *teachers = a.teachers.clone();
            }
            if a.labels.is_some() {
                *labels = a.labels.clone();
            }
            apply_crops(crops, &a.crops);
            if a.no_discriminator {
                *discriminator = None;
            } else if let Some(d) = discriminator {
                set_if(&mut d.input, &a.disc_input);
                set_if(&mut d.final_relu, &a.disc_final_relu);
            }
        }
        (
            MethodArgs::Ssld(a),
            Method::Ssld { teachers, divergence, unlabeled, select_per_class, finetune_epochs, finetune_lr_scale },
        ) => {
            if !a.teachers.is_empty() {
                *teachers = a.teachers.clone();
            }
            set_if(divergence, &a.divergence);
            if a.unlabeled.is_some() {
                *unlabeled = a.unlabeled.clone();
            }
            if a.select_per_class.is_some() {
                *select_per_class = a.select_per_class;
            }
            set_if(finetune_epochs, &a.finetune_epochs);
            set_if(finetune_lr_scale, &a.finetune_lr_scale);
        }
        _ => unreachable!("the default method matches the subcommand"),
    }
}

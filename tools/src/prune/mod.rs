//! `kd-prune`: iterative global (or layer-wise) L1 magnitude pruning with learning-rate
//! rewinding (prune-then-distill, Park & No, ECCV 2022, §3.2; Renda et al., ICLR 2020): every
//! round prunes a fraction of the remaining convolution and linear weights, then retrains the
//! current weights with the learning-rate schedule restarted while the masks hold the pruned
//! weights at zero. One checkpoint per round; `derive-student` shapes the dense student.

mod derive;

use crate::pretrain::CrossEntropy;
use crate::shared::cli::{CommonArgs, default_workers, hash_json, overlay_config};
use crate::shared::data::{input_spec, open_splits, train_and_val_loaders};
use crate::shared::finish::{TrainedRun, save_trained};
use crate::shared::profiles::{self, Profile};
use crate::shared::train_args::TrainArgs;
use anyhow::{Context, Result, bail, ensure};
use burn::module::Module;
use clap::{Parser, Subcommand};
pub use derive::DeriveArgs;
use kd_common::checkpoint::{self, CheckpointMeta, LayerSparsity, PruningRecord};
use kd_common::device::{self, DeviceSpec};
use kd_common::models::Network;
use kd_common::pruning::{DeviceMasks, Masked, Scope, complete_masks, prune_round, rounds_for_target};
use kd_common::sparsity::{Masks, kept_and_total, prunable_weights, read_masks, write_masks};
use kd_common::train::{self, Decay, Phase, Run, TrainConfig, Validation};
use kd_datasets::{Augment, DatasetKind};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Prune a trained network in rounds with learning-rate rewinding; or derive a student.
#[derive(Parser, Debug)]
#[command(name = "kd-prune", version, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub prune: PruneArgs,
}

/// Subcommands besides pruning.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build the dense student whose layers have as many weights as a pruned checkpoint kept.
    DeriveStudent(DeriveArgs),
}

/// Flags of a pruning run.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The trained network to prune (a kdkit checkpoint; a pruned one continues from its masks).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Output directory: config.json, ladder.csv, model-remaining-<f>.safetensors (+ .json,
    /// .masks.safetensors) per round, round-<k>/ (metrics.csv, state/).
    #[arg(long, default_value = "runs/prune")]
    pub out: PathBuf,
    /// Preset: quick (1 retraining epoch a round) or full (prune-then-distill's recipe).
    #[arg(long, value_enum, default_value_t = Profile::Quick)]
    pub profile: Profile,
    /// Target sparsity r in [0, 1): rounds n = argmin |r - (1 - (1 - f)^n)|.
    #[arg(long, conflicts_with = "rounds")]
    pub target_sparsity: Option<f64>,
    /// Rounds, instead of a target.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Fraction f of the remaining weights pruned per round.
    #[arg(long)]
    pub fraction: Option<f64>,
    /// Global (one threshold over all layers) or per layer.
    #[arg(long, value_enum)]
    pub scope: Option<ScopeArg>,
    /// Retraining per round: `--epochs` (0: prune only), `--lr`, ... restart every round.
    #[command(flatten)]
    pub train: TrainArgs,
}

/// `--scope`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScopeArg {
    /// One magnitude threshold over all prunable weights.
    Global,
    /// The fraction in every layer.
    Layer,
}

/// The pruning schedule.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruningConfig {
    /// Fraction of the remaining weights pruned per round.
    pub fraction: f64,
    /// Rounds.
    pub rounds: usize,
    /// The target the rounds were chosen for (null: rounds given).
    pub target_sparsity: Option<f64>,
    /// Global or per-layer magnitude threshold.
    pub scope: Scope,
}

/// The resolved configuration, written to `config.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneConfig {
    /// Preset the defaults came from.
    pub profile: Profile,
    /// The checkpoint pruned.
    pub teacher: PathBuf,
    /// Dataset it retrains on.
    pub dataset: DatasetKind,
    /// Dataset directory (null: the standard location).
    pub data_dir: Option<PathBuf>,
    /// Rounds and fraction.
    pub pruning: PruningConfig,
    /// Retraining after every round (the schedule restarts each round; `epochs` 0: none).
    pub retrain: TrainConfig,
    /// Training augmentation.
    pub augment: Augment,
    /// Validation hold-out.
    pub val_size: usize,
    /// Channels for folders (1 or 3).
    pub folder_channels: usize,
    /// Seed.
    pub seed: u64,
    /// Loader workers.
    pub workers: usize,
    /// Device.
    pub device: DeviceSpec,
}

/// Retraining of a preset: quick, one epoch of the preset's recipe; full, prune-then-distill's
/// CIFAR-100 VGG-19 rewinding (130 epochs, lr 0.1 Nesterov, x0.1 at 39 and 84, wd 2e-4).
fn retrain_defaults(profile: Profile, dataset: DatasetKind) -> TrainConfig {
    let mut config = profiles::train_config(profile, dataset);
    match profile {
        Profile::Quick => config.epochs = 1,
        Profile::Full => {
            config.epochs = 130;
            config.schedule.warmup_epochs = 0.0;
            config.schedule.decay = Decay::Step { milestones: vec![39, 84], gamma: 0.1 };
            config.optimizer = train::OptimizerConfig::Sgd { momentum: 0.9, nesterov: true, weight_decay: 2e-4 };
        }
    }
    config
}

impl PruneConfig {
    fn defaults(profile: Profile, dataset: DatasetKind) -> Self {
        Self {
            profile,
            teacher: PathBuf::new(),
            dataset,
            data_dir: None,
            pruning: PruningConfig { fraction: 0.2, rounds: 7, target_sparsity: Some(0.8), scope: Scope::Global },
            retrain: retrain_defaults(profile, dataset),
            augment: profiles::augment(profile, dataset),
            val_size: if dataset == DatasetKind::Folder { 0 } else { 5000 },
            folder_channels: 3,
            seed: 0,
            workers: default_workers(),
            device: DeviceSpec::Auto,
        }
    }

    /// Defaults of the preset, then the config file, then the flags; checks the schedule.
    pub fn resolve(args: &PruneArgs) -> Result<Self> {
        let (file, dataset) = args.common.config_file_and_dataset()?;
        let mut config = overlay_config(&Self::defaults(args.profile, dataset), file.as_ref())?;
        config.dataset = dataset;
        let c = &args.common;
        c.apply(&mut config.data_dir, &mut config.device, &mut config.seed, &mut config.workers);
        let mut model = crate::shared::train_args::ModelChoice::new(kd_common::models::Arch::SmallCnn, 1.0);
        let mut image_size = None;
        let retrain_epochs = args.train.epochs;
        let mut train_args = args.train.clone();
        train_args.epochs = None;
        train_args.apply(&mut model, &mut config.retrain, &mut config.val_size, &mut image_size);
        if args.train.arch.is_some() || args.train.width.is_some() || image_size.is_some() {
            bail!("kd-prune prunes the teacher's architecture: --arch, --width and --image-size do not apply");
        }
        if let Some(epochs) = retrain_epochs {
            config.retrain.epochs = epochs;
        }
        if let Some(teacher) = &args.teacher {
            config.teacher = teacher.clone();
        }
        ensure!(!config.teacher.as_os_str().is_empty(), "--teacher is required (the trained checkpoint to prune)");
        let p = &mut config.pruning;
        if let Some(fraction) = args.fraction {
            p.fraction = fraction;
        }
        if let Some(scope) = args.scope {
            p.scope = if scope == ScopeArg::Global { Scope::Global } else { Scope::Layer };
        }
        ensure!(
            p.fraction > 0.0 && p.fraction < 1.0,
            "the fraction pruned per round must be in (0, 1), got {}",
            p.fraction
        );
        match (args.target_sparsity, args.rounds) {
            (_, Some(rounds)) => {
                p.rounds = rounds;
                p.target_sparsity = None;
            }
            (Some(target), None) => p.target_sparsity = Some(target),
            (None, None) => {}
        }
        if let Some(target) = p.target_sparsity {
            p.rounds = rounds_for_target(target, p.fraction)?;
        }
        ensure!(p.rounds >= 1, "at least one pruning round is needed (the target sparsity rounds to 0 rounds)");
        ensure!(p.rounds <= 200, "{} rounds would leave almost nothing; at most 200", p.rounds);
        if config.retrain.epochs > 0 {
            config.retrain.validate()?;
        }
        Ok(config)
    }

    /// Hash of everything that shapes the result, with the teacher's weights hash.
    fn run_hash(&self, teacher_sha256: &str) -> Result<String> {
        let mut value = serde_json::to_value(self)?;
        let object = value.as_object_mut().expect("the config serialises to an object");
        object.remove("device");
        object.remove("workers");
        object.insert("teacher_sha256".into(), json!(teacher_sha256));
        Ok(hash_json(&value))
    }
}

/// Remaining fraction after `round` rounds, as it names the checkpoints (`0.640`).
fn remaining_name(fraction: f64, round: usize) -> String {
    format!("{:.3}", (1.0 - fraction).powi(round as i32))
}

/// Where round `round`'s checkpoint goes.
pub fn round_checkpoint(out: &Path, fraction: f64, round: usize) -> PathBuf {
    out.join(format!("model-remaining-{}.safetensors", remaining_name(fraction, round)))
}

/// The masks file next to a checkpoint (`model-remaining-0.640.masks.safetensors`).
fn masks_path(weights: &Path) -> PathBuf {
    weights.with_extension("masks.safetensors")
}

/// The masks of a checkpoint: its masks file when it was pruned (hash checked), else none.
pub fn checkpoint_masks(weights: &Path, meta: &CheckpointMeta) -> Result<Masks> {
    let Some(record) = &meta.pruning else { return Ok(Masks::new()) };
    let path = weights.parent().unwrap_or(Path::new(".")).join(&record.masks_file);
    let sha = checkpoint::sha256_file(&path).with_context(|| format!("masks of {}", weights.display()))?;
    ensure!(
        sha == record.masks_sha256,
        "{}: hash {sha} differs from the sidecar's {}; the masks do not belong to these weights",
        path.display(),
        record.masks_sha256
    );
    Ok(read_masks(&path)?)
}

/// The pruning record of `masks` saved next to `weights`.
fn pruning_record(weights: &Path, masks: &Masks, rounds: usize) -> Result<PruningRecord> {
    let path = masks_path(weights);
    write_masks(&path, masks)?;
    let layers: Vec<LayerSparsity> = masks
        .iter()
        .map(|(name, m)| LayerSparsity {
            name: name.clone(),
            weights: m.keep.len(),
            nonzero: m.keep.iter().map(|&k| k as usize).sum(),
        })
        .collect();
    let (kept, total) = kept_and_total(masks);
    Ok(PruningRecord {
        masks_file: path.file_name().expect("a file name").to_string_lossy().into_owned(),
        masks_sha256: checkpoint::sha256_file(&path)?,
        global_sparsity: 1.0 - kept as f64 / total.max(1) as f64,
        layers,
        rounds,
    })
}

/// One line of `ladder.csv`.
#[derive(serde::Serialize)]
struct LadderRow {
    round: usize,
    remaining: String,
    global_sparsity: f64,
    nonzero_weights: usize,
    val_top1: Option<f64>,
    test_top1: f64,
    checkpoint: String,
}

/// Runs `kd-prune` (or its subcommand).
pub fn run(args: Args) -> Result<()> {
    match args.command {
        Some(Command::DeriveStudent(derive)) => derive::run(derive),
        None => prune(args.prune),
    }
}

fn prune(args: PruneArgs) -> Result<()> {
    args.common.init_output();
    let config = PruneConfig::resolve(&args)?;
    let device = device::resolve(&config.device)?;
    tracing::info!("device: {}", device.description);
    let ad_device = device.device.clone().autodiff();

    // Everything checked before the output directory is touched.
    let (teacher, teacher_meta) = checkpoint::load(&config.teacher, &ad_device)
        .with_context(|| format!("loading the checkpoint to prune, {}", config.teacher.display()))?;
    let start_masks = checkpoint_masks(&config.teacher, &teacher_meta)?;
    let start_rounds = teacher_meta.pruning.as_ref().map_or(0, |p| p.rounds);
    complete_masks(&prunable_weights(&teacher)?, &start_masks)
        .with_context(|| format!("{}: its masks do not fit its weights", config.teacher.display()))?;
    let splits =
        open_splits(config.dataset, config.data_dir.as_deref(), config.val_size, config.seed, config.folder_channels)?;
    let input = teacher_meta.input.clone();
    let data_input = input_spec(config.dataset, &splits.train, Some(input.height))?;
    ensure!(
        splits.train.classes.len() == teacher_meta.model.num_classes && data_input.channels == input.channels,
        "{} expects {} classes of {}-channel images; {} has {} classes of {} channels",
        config.teacher.display(),
        teacher_meta.model.num_classes,
        input.channels,
        config.dataset,
        splits.train.classes.len(),
        data_input.channels
    );
    kd_common::atomic::ensure_writable_dir(&args.out)
        .with_context(|| format!("output directory {}", args.out.display()))?;
    let run_hash = config.run_hash(&teacher_meta.weights_sha256)?;
    kd_common::atomic::write_json(&args.out.join("config.json"), &config)?;

    let (train_loader, val_loader) = train_and_val_loaders(
        &splits,
        &input,
        config.augment.clone(),
        config.retrain.batch_size,
        config.workers,
        config.seed,
    )?;
    let (mut network, mut masks) = (teacher, start_masks);
    let mut ladder = Vec::new();
    let p = &config.pruning;
    for round in 1..=p.rounds {
        let weights_path = round_checkpoint(&args.out, p.fraction, round);
        // A finished round of this run is loaded, not redone (a kill between the weights and
        // their sidecar leaves the round unfinished: its loop state finishes it at once).
        if weights_path.exists() && checkpoint::sidecar_path(&weights_path).exists() {
            let meta = checkpoint::read_meta(&weights_path)?;
            ensure!(
                meta.training.get("run_hash").and_then(|h| h.as_str()) == Some(run_hash.as_str()),
                "{} was written by another pruning configuration or teacher; use another --out",
                weights_path.display()
            );
            let (loaded, meta) = checkpoint::load(&weights_path, &ad_device)?;
            masks = checkpoint_masks(&weights_path, &meta)?;
            network = loaded;
            ladder.push(ladder_row(round, p.fraction, &meta, &weights_path, &masks));
            tracing::info!("round {round}/{}: done before ({})", p.rounds, weights_path.display());
            continue;
        }
        let started = std::time::Instant::now();
        masks = prune_round(&prunable_weights(&network)?, &masks, p.fraction, p.scope)?;
        let (kept, total) = kept_and_total(&masks);
        tracing::info!(
            "round {round}/{}: {kept} of {total} weights kept (sparsity {:.4}), selected in {:.2} s",
            p.rounds,
            1.0 - kept as f64 / total as f64,
            started.elapsed().as_secs_f64()
        );
        let device_masks = DeviceMasks::new(&network, masks.clone(), &ad_device)?;
        network = device_masks.apply(network);
        let round_dir = args.out.join(format!("round-{round}"));
        let mut objective = Masked::new(CrossEntropy { label_smoothing: 0.0 }, device_masks);
        let (rows, resumed_after) = if config.retrain.epochs > 0 {
            let validation = Validation::classification_if_any(val_loader.as_ref());
            let run = Run {
                config: &config.retrain,
                phases: vec![Phase::epochs(&train_loader, config.retrain.epochs)],
                validation,
                device: &device,
                out_dir: &round_dir,
                run_hash: &format!("{run_hash}-round-{round}"),
            };
            std::fs::create_dir_all(&round_dir).map_err(|e| kd_common::Error::io(&round_dir, e))?;
            let outcome = train::fit(network, &mut objective, &run)?;
            network = outcome.model;
            (outcome.rows, outcome.resumed_after)
        } else {
            (Vec::new(), None)
        };
        let mut training = serde_json::to_value(&config)?;
        training["run_hash"] = json!(run_hash);
        training["round"] = json!(round);
        let record = pruning_record(&weights_path, &masks, start_rounds + round)?;
        let valid = network.clone().valid();
        let summary = save_trained(
            TrainedRun {
                network: &valid,
                spec: teacher_meta.model.clone(),
                input: input.clone(),
                train: &splits.train,
                test: &splits.test,
                config: training,
                rows: &rows,
                resumed_after,
                references: &[],
                workers: config.workers,
                seed: config.seed,
                tool: "kd-prune",
                pruning: Some(record),
            },
            &device.device,
            &weights_path,
        )?;
        check_zeros(&valid, &masks, &weights_path)?;
        let meta = checkpoint::read_meta(&weights_path)?;
        ladder.push(ladder_row(round, p.fraction, &meta, &weights_path, &masks));
        write_ladder(&args.out.join("ladder.csv"), &ladder)?;
        tracing::info!(
            "round {round}/{}: test top-1 {:.2}% in {:.0} s",
            p.rounds,
            summary["test_top1"].as_f64().unwrap_or(f64::NAN),
            started.elapsed().as_secs_f64()
        );
    }
    write_ladder(&args.out.join("ladder.csv"), &ladder)?;
    println!("{}", serde_json::to_string_pretty(&json!({ "rounds": ladder }))?);
    Ok(())
}

/// Refuses to leave a checkpoint whose pruned weights are not exactly zero.
fn check_zeros(network: &Network, masks: &Masks, weights: &Path) -> Result<()> {
    for (name, (_, values)) in prunable_weights(network)? {
        if let Some(mask) = masks.get(&name) {
            let stray = values.iter().zip(&mask.keep).filter(|&(&v, &k)| k == 0 && v != 0.0).count();
            ensure!(stray == 0, "{}: {stray} pruned weights of {name} are not zero", weights.display());
        }
    }
    Ok(())
}

fn ladder_row(round: usize, fraction: f64, meta: &CheckpointMeta, weights: &Path, masks: &Masks) -> LadderRow {
    let (kept, total) = kept_and_total(masks);
    LadderRow {
        round,
        remaining: remaining_name(fraction, round),
        global_sparsity: 1.0 - kept as f64 / total.max(1) as f64,
        nonzero_weights: kept,
        val_top1: meta.metrics.get("last_val_top1").and_then(|v| v.as_f64()),
        test_top1: meta.metrics.get("test_top1").and_then(|v| v.as_f64()).unwrap_or(f64::NAN),
        checkpoint: weights.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    }
}

fn write_ladder(path: &Path, rows: &[LadderRow]) -> Result<()> {
    kd_common::atomic::write_with(path, |tmp| {
        let mut writer = csv::Writer::from_path(tmp).map_err(|e| kd_common::Error::io(tmp, e.into()))?;
        for row in rows {
            writer.serialize(row).map_err(|e| kd_common::Error::io(tmp, e.into()))?;
        }
        writer.flush().map_err(|e| kd_common::Error::io(tmp, e))
    })?;
    Ok(())
}

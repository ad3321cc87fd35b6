//! `kd-prune`: iterative global (or layer-wise) L1 magnitude pruning with learning-rate
//! rewinding (prune-then-distill, Park & No, ECCV 2022, §3.2; Renda et al., ICLR 2020): every
//! round prunes a fraction of the remaining convolution and linear weights, then retrains the
//! current weights with the learning-rate schedule restarted while the masks hold the pruned
//! weights at zero. One checkpoint per round; `derive-student` shapes the dense student.

mod derive;

use crate::pretrain::CrossEntropy;
use crate::shared::cli::{CommonArgs, overlay_config};
use crate::shared::data::{Splits, input_spec, train_and_val_loaders};
use crate::shared::finish::{TrainedRun, save_trained};
use crate::shared::profiles::{self, Profile};
use crate::shared::run::{RunFlags, RunSettings, run_hash, training_record};
use crate::shared::train_args::TrainArgs;
use anyhow::{Context, Result, bail, ensure};
use burn::module::Module;
use clap::{Parser, Subcommand};
pub use derive::DeriveArgs;
use kd_common::checkpoint::{self, CheckpointMeta, LayerSparsity, PruningRecord};
use kd_common::device::{self, ResolvedDevice};
use kd_common::models::Network;
use kd_common::pruning::{DeviceMasks, Masked, Scope, complete_masks, prune_round, rounds_for_target};
use kd_common::sparsity::{Masks, kept_and_total, prunable_weights, read_masks, write_masks};
use kd_common::train::{self, Decay, Phase, Run, TrainConfig, Validation};
use kd_datasets::BatchLoader;
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
    /// Preset: quick (1 retraining epoch a round), converged (8) or full (prune-then-distill's recipe).
    #[arg(long, value_enum, default_value_t = Profile::Quick)]
    pub profile: Profile,
    /// Target sparsity r in [0, 1): rounds n = argmin |r - (1 - (1 - f)^n)|.
    #[arg(long, conflicts_with = "rounds")]
    pub target_sparsity: Option<f64>,
    /// Rounds, instead of a target.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Fraction f of the remaining weights pruned per round; 0 retrains the rounds without
    /// pruning (with --rounds): the dense teacher with the pruned ones' extra training, the
    /// control that separates "pruned" from "trained longer".
    #[arg(long)]
    pub fraction: Option<f64>,
    /// Global (one threshold over all layers) or per layer.
    #[arg(long, value_enum)]
    pub scope: Option<ScopeArg>,
    /// Retraining per round: `--epochs` (0: prune only), `--lr`, ... restart every round.
    #[command(flatten)]
    pub data: RunFlags,
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

/// The resolved configuration, written to `config.json` (unknown keys of a config file are
/// refused by the overlay, `shared::cli::merge`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PruneConfig {
    /// Preset the defaults came from.
    pub profile: Profile,
    /// The checkpoint pruned.
    pub teacher: PathBuf,
    /// Data and execution settings (`image_size`: the checkpoint's).
    #[serde(flatten)]
    pub run: RunSettings,
    /// Rounds and fraction.
    pub pruning: PruningConfig,
    /// Retraining after every round (the schedule restarts each round; `epochs` 0: none).
    pub retrain: TrainConfig,
    /// Training augmentation.
    pub augment: Augment,
}

/// Retraining of a preset: quick, one epoch of the preset's recipe (converged: 8); full, prune-then-distill's
/// CIFAR-100 VGG-19 rewinding (130 epochs, lr 0.1 Nesterov, x0.1 at 39 and 84, wd 2e-4).
fn retrain_defaults(profile: Profile, dataset: DatasetKind) -> TrainConfig {
    let mut config = profiles::train_config(profile, dataset);
    config.epochs = profile.epochs(1, 130);
    if profile == Profile::Full {
        config.schedule.warmup_epochs = 0.0;
        config.schedule.decay = Decay::Step { milestones: vec![39, 84], gamma: 0.1 };
        config.optimizer = train::OptimizerConfig::Sgd { momentum: 0.9, nesterov: true, weight_decay: 2e-4 };
    }
    config
}

impl PruneConfig {
    fn defaults(profile: Profile, dataset: DatasetKind) -> Self {
        Self {
            profile,
            teacher: PathBuf::new(),
            run: RunSettings::defaults(dataset),
            pruning: PruningConfig { fraction: 0.2, rounds: 7, target_sparsity: Some(0.8), scope: Scope::Global },
            retrain: retrain_defaults(profile, dataset),
            augment: profiles::augment(profile, dataset),
        }
    }

    /// Defaults of the preset, then the config file, then the flags; checks the schedule.
    pub fn resolve(args: &PruneArgs) -> Result<Self> {
        let (file, dataset) = args.data.config_file_and_dataset(&args.common)?;
        let mut config = overlay_config(&Self::defaults(args.profile, dataset), file.as_ref())?;
        config.run.apply(dataset, &args.common, &args.data);
        if args.train.names_a_network() || config.run.image_size.is_some() {
            bail!("kd-prune prunes the teacher's architecture: --arch, --width and --image-size do not apply");
        }
        args.train.apply_schedule(&mut config.retrain);
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
            (0.0..1.0).contains(&p.fraction),
            "the fraction pruned per round must be in [0, 1) (0: retrain without pruning), got {}",
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
        ensure!(
            p.fraction > 0.0 || p.target_sparsity.is_none(),
            "--fraction 0 retrains without pruning and reaches no sparsity: give --rounds, not a target"
        );
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
}

/// Remaining fraction after `round` rounds, as it names the checkpoints (`0.640`).
fn remaining_name(fraction: f64, round: usize) -> String {
    format!("{:.3}", (1.0 - fraction).powi(round as i32))
}

/// Where round `round` of a `rounds`-round ladder puts its checkpoint:
/// `model-remaining-<f>.safetensors` with the remaining fraction to 3 decimals, unless two rounds
/// of the ladder would print alike (`--fraction 0.5 --rounds 12`, `--fraction 0.0001`): then every
/// round's name ends in its number, `model-remaining-<f>-round-<r>.safetensors`, so no round can
/// find another round's file and take it for its own. The rounds of the dense control (fraction
/// 0) are always numbered, however many there are.
pub fn round_checkpoint(out: &Path, fraction: f64, round: usize, rounds: usize) -> PathBuf {
    let name = remaining_name(fraction, round);
    let distinct = (1..=rounds).map(|r| remaining_name(fraction, r)).collect::<std::collections::BTreeSet<_>>().len();
    if distinct == rounds && fraction > 0.0 {
        out.join(format!("model-remaining-{name}.safetensors"))
    } else {
        out.join(format!("model-remaining-{name}-round-{round}.safetensors"))
    }
}

/// The masks file next to a checkpoint (`model-remaining-0.640.masks.safetensors`).
fn masks_path(weights: &Path) -> PathBuf {
    weights.with_extension("masks.safetensors")
}

/// The masks of a checkpoint: its masks file when it was pruned (hash checked), else none.
pub fn checkpoint_masks(weights: &Path, meta: &CheckpointMeta) -> Result<Masks> {
    let Some(record) = &meta.pruning else { return Ok(Masks::new()) };
    let path = sidecar_masks_path(weights, &record.masks_file)?;
    let sha = checkpoint::sha256_file(&path).with_context(|| format!("masks of {}", weights.display()))?;
    ensure!(
        sha == record.masks_sha256,
        "{}: hash {sha} differs from the sidecar's {}; the masks do not belong to these weights",
        path.display(),
        record.masks_sha256
    );
    Ok(read_masks(&path)?)
}

/// The masks file a sidecar names: a plain file name in the checkpoint's own folder (not a path
/// elsewhere on disk, not a device or folder), so that a sidecar cannot make a tool read any file.
fn sidecar_masks_path(weights: &Path, name: &str) -> Result<PathBuf> {
    let plain = Path::new(name).file_name().is_some_and(|f| f == std::ffi::OsStr::new(name));
    ensure!(
        plain && !name.is_empty(),
        "{}: its sidecar's pruning.masks_file `{name}` must be a file name next to the checkpoint",
        weights.display()
    );
    let path = weights.parent().unwrap_or(Path::new(".")).join(name);
    let is_file = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
    ensure!(is_file, "{}: the masks file of {} is missing or not a regular file", path.display(), weights.display());
    Ok(path)
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
    let device = device::resolve(&config.run.device)?;
    tracing::info!("device: {}", device.description);
    let ad_device = device.device.clone().autodiff();
    // Everything checked before the output directory is touched.
    let (teacher, teacher_meta, start_masks) = load_start(&config, &ad_device)?;
    let splits = config.run.open_splits()?;
    check_data_fits(&config, &teacher_meta, &splits)?;
    let hash = run_hash(&config, &json!({"teacher": teacher_meta.weights_sha256}))?;
    let p = &config.pruning;
    claim_ladder(&args.out, &config, &hash)?;
    let (workers, seed) = (config.run.workers, config.run.seed);
    let (train, val) = train_and_val_loaders(
        &splits,
        &teacher_meta.input,
        config.augment.clone(),
        config.retrain.batch_size,
        workers,
        seed,
    )?;
    let ladder_run = LadderRun {
        config: &config,
        hash: &hash,
        teacher: &teacher_meta,
        splits: &splits,
        train,
        val,
        device: &device,
        out: &args.out,
    };
    let (mut network, mut masks) = (teacher, start_masks);
    let mut ladder = Vec::new();
    for round in 1..=p.rounds {
        let weights = round_checkpoint(&args.out, p.fraction, round, p.rounds);
        // A finished round of this run is loaded, not redone (a kill between the weights and
        // their sidecar leaves the round unfinished: its loop state finishes it at once).
        let meta = if weights.exists() && checkpoint::sidecar_path(&weights).exists() {
            let (loaded, meta) = finished_round(&weights, round, &hash, &ad_device)?;
            (network, masks) = (loaded, checkpoint_masks(&weights, &meta)?);
            tracing::info!("round {round}/{}: done before ({})", p.rounds, weights.display());
            meta
        } else {
            (network, masks) = ladder_run.round(network, &masks, round, &weights)?;
            checkpoint::read_meta(&weights)?
        };
        ladder.push(ladder_row(round, p.fraction, &meta, &weights, &masks));
        write_ladder(&args.out.join("ladder.csv"), &ladder)?;
    }
    outln!("{}", serde_json::to_string_pretty(&json!({ "rounds": ladder }))?);
    Ok(())
}

/// The checkpoint to prune, its sidecar and masks (a pruned checkpoint continues from its own).
fn load_start(config: &PruneConfig, device: &burn::tensor::Device) -> Result<(Network, CheckpointMeta, Masks)> {
    let (teacher, meta) = checkpoint::load(&config.teacher, device)
        .with_context(|| format!("loading the checkpoint to prune, {}", config.teacher.display()))?;
    let masks = checkpoint_masks(&config.teacher, &meta)?;
    let start_rounds = meta.pruning.as_ref().map_or(0, |p| p.rounds);
    ensure!(
        start_rounds.checked_add(config.pruning.rounds).is_some(),
        "{}: its sidecar's pruning.rounds ({start_rounds}) leaves no room for {} more rounds",
        config.teacher.display(),
        config.pruning.rounds
    );
    complete_masks(&prunable_weights(&teacher)?, &masks)
        .with_context(|| format!("{}: its masks do not fit its weights", config.teacher.display()))?;
    Ok((teacher, meta, masks))
}

/// The dataset must have the checkpoint's classes and channels.
fn check_data_fits(config: &PruneConfig, meta: &CheckpointMeta, splits: &Splits) -> Result<()> {
    let input = &meta.input;
    let data_input = input_spec(config.run.dataset, &splits.train, Some(input.height))?;
    ensure!(
        splits.train.classes.len() == meta.model.num_classes && data_input.channels == input.channels,
        "{} expects {} classes of {}-channel images; {} has {} classes of {} channels",
        config.teacher.display(),
        meta.model.num_classes,
        input.channels,
        config.run.dataset,
        splits.train.classes.len(),
        data_input.channels
    );
    Ok(())
}

/// Claims the output folder: a round checkpoint of another run there (written with another
/// hash) is refused before anything is written; else `config.json` is written.
fn claim_ladder(out: &Path, config: &PruneConfig, hash: &str) -> Result<()> {
    let entries = std::fs::read_dir(out).into_iter().flatten().filter_map(|e| e.ok());
    for path in entries.map(|e| e.path()) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let round_file = name.starts_with("model-remaining-")
            && name.ends_with(".safetensors")
            && !name.ends_with(".masks.safetensors");
        if !round_file || !checkpoint::sidecar_path(&path).exists() {
            continue;
        }
        let meta = checkpoint::read_meta(&path)?;
        ensure!(
            meta.training.get("run_hash").and_then(|h| h.as_str()) == Some(hash),
            "{} was written by another pruning configuration or teacher; use another --out",
            path.display()
        );
    }
    kd_common::atomic::ensure_writable_dir(out).with_context(|| format!("output directory {}", out.display()))?;
    Ok(kd_common::atomic::write_json(&out.join("config.json"), config)?)
}

/// A round this run finished before: its hash and round number checked, then loaded.
fn finished_round(
    weights: &Path,
    round: usize,
    hash: &str,
    device: &burn::tensor::Device,
) -> Result<(Network, CheckpointMeta)> {
    let meta = checkpoint::read_meta(weights)?;
    ensure!(
        meta.training.get("run_hash").and_then(|h| h.as_str()) == Some(hash),
        "{} was written by another pruning configuration or teacher; use another --out",
        weights.display()
    );
    ensure!(
        meta.training.get("round").and_then(|r| r.as_u64()) == Some(round as u64),
        "{} holds another round than round {round}; use another --out",
        weights.display()
    );
    Ok(checkpoint::load(weights, device)?)
}

/// What every round of a ladder shares.
struct LadderRun<'a> {
    config: &'a PruneConfig,
    hash: &'a str,
    teacher: &'a CheckpointMeta,
    splits: &'a Splits,
    train: BatchLoader,
    val: Option<BatchLoader>,
    device: &'a ResolvedDevice,
    out: &'a Path,
}

impl LadderRun<'_> {
    /// Round `round`: prune the fraction of the remaining weights, retrain with the masks
    /// re-applied after every step, check the pruned weights are zero, write `weights`.
    fn round(&self, network: Network, masks: &Masks, round: usize, weights: &Path) -> Result<(Network, Masks)> {
        let (config, p) = (self.config, &self.config.pruning);
        let started = std::time::Instant::now();
        // Fraction 0: the dense control, retrained with every weight kept.
        let current = prunable_weights(&network)?;
        let masks = if p.fraction == 0.0 {
            complete_masks(&current, masks)?
        } else {
            prune_round(&current, masks, p.fraction, p.scope)?
        };
        let (kept, total) = kept_and_total(&masks);
        tracing::info!(
            "round {round}/{}: {kept} of {total} weights kept (sparsity {:.4}), selected in {:.2} s",
            p.rounds,
            1.0 - kept as f64 / total as f64,
            started.elapsed().as_secs_f64()
        );
        let ad_device = self.device.device.clone().autodiff();
        let device_masks = DeviceMasks::new(&network, masks.clone(), &ad_device)?;
        let mut network = device_masks.apply(network);
        let round_dir = self.out.join(format!("round-{round}"));
        let mut objective = Masked::new(CrossEntropy { label_smoothing: 0.0 }, device_masks);
        let (rows, resumed_after) = if config.retrain.epochs > 0 {
            let run = Run {
                config: &config.retrain,
                phases: vec![Phase::epochs(&self.train, config.retrain.epochs)],
                validation: Validation::classification_if_any(self.val.as_ref()),
                device: self.device,
                out_dir: &round_dir,
                run_hash: &format!("{}-round-{round}", self.hash),
            };
            std::fs::create_dir_all(&round_dir).map_err(|e| kd_common::Error::io(&round_dir, e))?;
            let outcome = train::fit(network, &mut objective, &run)?;
            network = outcome.model;
            (outcome.rows, outcome.resumed_after)
        } else {
            (Vec::new(), None)
        };
        let mut training = training_record(config, self.hash)?;
        training["round"] = json!(round);
        let start_rounds = self.teacher.pruning.as_ref().map_or(0, |p| p.rounds);
        let record = pruning_record(weights, &masks, start_rounds + round)?;
        let valid = network.clone().valid();
        // The pruned weights must be zero before the checkpoint exists: a rerun trusts it.
        check_zeros(&valid, &masks, weights)?;
        let trained = TrainedRun {
            network: &valid,
            spec: self.teacher.model.clone(),
            input: self.teacher.input.clone(),
            train: &self.splits.train,
            test: &self.splits.test,
            config: training,
            rows: &rows,
            resumed_after,
            references: &[],
            workers: config.run.workers,
            seed: config.run.seed,
            tool: "kd-prune",
            pruning: Some(record),
        };
        let summary = save_trained(trained, &self.device.device, weights)?;
        tracing::info!(
            "round {round}/{}: test top-1 {:.2}% in {:.0} s",
            p.rounds,
            summary["test_top1"].as_f64().unwrap_or(f64::NAN),
            started.elapsed().as_secs_f64()
        );
        Ok((network, masks))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Ladders whose remaining fractions print alike to 3 decimals (0.5^11 and 0.5^12 are both
    /// 0.000; 0.9999 and 0.9999^2 both 1.000) get one name per round; others keep the plain names.
    #[test]
    fn round_checkpoints_are_unique_per_round() {
        let out = Path::new("o");
        for (fraction, rounds) in [(0.5, 12), (0.0001, 2), (0.2, 3), (0.4, 3)] {
            let names: std::collections::BTreeSet<_> =
                (1..=rounds).map(|r| round_checkpoint(out, fraction, r, rounds)).collect();
            assert_eq!(names.len(), rounds, "fraction {fraction}, {rounds} rounds: {names:?}");
        }
        assert_eq!(round_checkpoint(out, 0.4, 2, 3), out.join("model-remaining-0.360.safetensors"));
        assert_eq!(round_checkpoint(out, 0.5, 12, 12), out.join("model-remaining-0.000-round-12.safetensors"));
        assert_eq!(round_checkpoint(out, 0.0, 1, 1), out.join("model-remaining-1.000-round-1.safetensors"));
    }

    /// A sidecar may name only a regular file next to its checkpoint.
    #[test]
    fn masks_files_stay_in_the_checkpoint_folder() {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("m.safetensors");
        std::fs::write(dir.path().join("m.masks.safetensors"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(
            sidecar_masks_path(&weights, "m.masks.safetensors").unwrap(),
            dir.path().join("m.masks.safetensors")
        );
        for name in
            ["/dev/zero", "../m.masks.safetensors", "sub/../m.masks.safetensors", "", "..", ".", "sub", "absent"]
        {
            let err = sidecar_masks_path(&weights, name).expect_err(name).to_string();
            assert!(err.contains("masks"), "{name}: {err}");
        }
    }
}

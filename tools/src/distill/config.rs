//! Command line and resolved configuration of `kd-distill`: preset defaults for the method,
//! then the config file (unknown keys rejected), then the flags.

use super::methods::{Method, MethodArgs};
use crate::shared::cli::{CommonArgs, overlay_config};
use crate::shared::profiles::{self, Profile, Role};
use crate::shared::run::{RunFlags, RunSettings};
use crate::shared::train_args::{ModelChoice, TrainArgs};
use anyhow::{Result, bail};
use clap::Parser;
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

/// Flags of every method.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub data: RunFlags,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Output directory: config.json, metrics.csv, model.safetensors + model.json, state/.
    #[arg(long, default_value = "runs/distill")]
    pub out: PathBuf,
    /// Preset of the student and its optimisation: quick, converged (quick 8x as long) or full.
    #[arg(long, value_enum, default_value_t = Profile::Quick)]
    pub profile: Profile,
    /// Start the student from this checkpoint (its architecture is used).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Teacher checkpoint(s) to measure agreement with when the method runs none (FKD; never
    /// run during training).
    #[arg(long = "reference")]
    pub references: Vec<PathBuf>,
}

/// The resolved configuration, written to `config.json`.
/// (Unknown keys of a config file are refused by the overlay, `shared::cli::merge`.)
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DistillConfig {
    /// Preset the defaults came from.
    pub profile: Profile,
    /// Data and execution settings.
    #[serde(flatten)]
    pub run: RunSettings,
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
    /// Teachers measured for agreement only (FKD).
    pub references: Vec<PathBuf>,
}

impl DistillConfig {
    fn defaults(args: &MethodArgs, profile: Profile, dataset: DatasetKind) -> Self {
        let (arch, width) = profiles::model(profile, Role::Student);
        let mut train = profiles::train_config(profile, dataset);
        args.adjust_training(&mut train);
        Self {
            profile,
            run: RunSettings::defaults(dataset),
            model: ModelChoice::new(arch, width),
            init: None,
            train,
            method: args.defaults(profile),
            augment: profiles::augment(profile, dataset),
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
            files.push(("label file", labels));
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
        let (file, dataset) = run.data.config_file_and_dataset(&run.common)?;
        let defaults = Self::defaults(args, run.profile, dataset);
        let kind = defaults.method.name();
        if let Some((path, overlay)) = &file
            && let Some(file_kind) = overlay.get("method").and_then(|m| m.get("kind")).and_then(|k| k.as_str())
            && file_kind != kind
        {
            bail!("{}: method.kind is `{file_kind}` but the command is `{kind}`", path.display());
        }
        let mut config = overlay_config(&defaults, file.as_ref())?;
        config.run.apply(dataset, &run.common, &run.data);
        if let Some(init) = &run.init {
            config.init = Some(init.clone());
        }
        run.train.apply(&mut config.model, &mut config.train);
        if !run.references.is_empty() {
            config.references = run.references.clone();
        }
        args.apply(&mut config.method)?;
        config.method.validate(config.train.epochs).map_err(anyhow::Error::msg)?;
        if !config.references.is_empty() && !config.method.teachers().is_empty() {
            bail!(
                "--reference names teachers to compare with when the method runs none (fkd); {} measures \
                 agreement with its --teacher",
                config.method.name()
            );
        }
        Ok(config)
    }
}

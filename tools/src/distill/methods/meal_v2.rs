//! MEAL V2 (Shen & Savvides, "MEAL V2: Boosting Vanilla ResNet-50 to 80%+ Top-1 Accuracy on
//! ImageNet without Tricks", 2020, §3.1): soft cross-entropy to the teachers' mean softmax
//! `p = 1/n sum_t softmax(z_t)` plus a discriminator trained jointly to tell the student's output
//! from the ensemble's; online, or from packed ensemble labels (its FKD variant). No weight decay.

use super::fkd::SoftTargets;
use super::{DistillMethod, MethodRun, Trained, set_if};
use crate::distill::crops::{CropArgs, RegionCrops};
use crate::distill::objective::{DistillObjective, Targets};
use crate::shared::profiles::Profile;
use crate::shared::teachers::Teachers;
use crate::shared::train_args::set_weight_decay;
use anyhow::Result;
use kd_common::models::Discriminator;
use kd_common::train::{Phase, TrainConfig};
use std::path::{Path, PathBuf};

/// MEAL V2.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MealV2 {
    /// Teacher checkpoints (online); with `labels` they are only used for agreement.
    pub teachers: Vec<PathBuf>,
    /// Packed ensemble labels instead of running the teachers.
    pub labels: Option<PathBuf>,
    /// Multi-crop sampling (with `labels`).
    pub crops: RegionCrops,
    /// The discriminator (null: off).
    pub discriminator: Option<DiscriminatorConfig>,
}

/// What MEAL V2's discriminator sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DiscriminatorInput {
    /// Student logits and the teachers' mean logits (the original MEAL V2).
    Logits,
    /// Student softmax and the teachers' mean softmax (MEAL V2's FKD variant; the only choice
    /// with packed labels).
    Probs,
}

/// The discriminator's options.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscriminatorConfig {
    /// Its input.
    pub input: DiscriminatorInput,
    /// ReLU after the last layer, as MEAL V2's code does (parity switch; see
    /// `kd_common::models::discriminator`).
    pub final_relu: bool,
}

/// `kd-distill meal-v2` flags.
#[derive(clap::Args, Debug)]
pub struct MealV2Flags {
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

impl DistillMethod for MealV2 {
    type Flags = MealV2Flags;
    const NAME: &'static str = "meal-v2";

    fn defaults(profile: Profile, flags: &MealV2Flags) -> Self {
        let input = if flags.labels.is_some() { DiscriminatorInput::Probs } else { DiscriminatorInput::Logits };
        Self {
            teachers: vec![],
            labels: None,
            crops: RegionCrops::defaults(profile == Profile::Quick),
            discriminator: Some(DiscriminatorConfig { input, final_relu: true }),
        }
    }

    fn adjust_training(train: &mut TrainConfig) {
        // MEAL V2 trains without weight decay (Shen & Savvides, MEAL V2, 2020, §3.1).
        set_weight_decay(train, 0.0);
    }

    fn apply(&mut self, flags: &MealV2Flags) {
        if !flags.teachers.is_empty() {
            self.teachers = flags.teachers.clone();
        }
        if flags.labels.is_some() {
            self.labels = flags.labels.clone();
        }
        self.crops.apply(&flags.crops);
        if flags.no_discriminator {
            self.discriminator = None;
        } else if let Some(d) = &mut self.discriminator {
            set_if(&mut d.input, &flags.disc_input);
            set_if(&mut d.final_relu, &flags.disc_final_relu);
        }
    }

    fn teachers(&self) -> &[PathBuf] {
        &self.teachers
    }

    fn labels(&self) -> Option<&Path> {
        self.labels.as_deref()
    }

    fn validate(&self, epochs: usize) -> Result<(), String> {
        if self.teachers.is_empty() && self.labels.is_none() {
            return Err("meal-v2 needs --teacher (online) or --labels (packed ensemble labels)".into());
        }
        if self.labels.is_some() {
            self.crops.validate(epochs)?;
            if self.discriminator.is_some_and(|d| d.input == DiscriminatorInput::Logits) {
                return Err("packed labels hold probabilities, not logits: use --disc-input probs with --labels".into());
            }
        }
        Ok(())
    }

    fn train(&self, run: &MethodRun, teachers: Teachers) -> Result<Trained> {
        let classes = run.splits.train.num_classes();
        let discriminator = self
            .discriminator
            .map(|d| Discriminator::new(classes, d.final_relu, &run.device.device.clone().autodiff()));
        let discriminator_input = self.discriminator.map_or(DiscriminatorInput::Probs, |d| d.input);
        let loss = SoftTargets { temperature: 1.0, standardize: false };
        match &self.labels {
            None => {
                let targets = Targets::Online { temperature: 1.0, standardize: false };
                let mut objective = DistillObjective { teachers, targets, loss, discriminator_input };
                let source = run.train_loader(&run.splits.train)?;
                let phases = vec![Phase::epochs(&source, run.config.train.epochs)];
                run.fit(&mut objective, discriminator, phases)
            }
            Some(path) => {
                let regions = run.region_loaders(path, &self.crops)?;
                let mut objective = DistillObjective { teachers, targets: Targets::Packed, loss, discriminator_input };
                run.fit(&mut objective, discriminator, regions.phases())
            }
        }
    }
}

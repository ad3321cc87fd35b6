//! The distillation methods of `kd-distill`, one file each. A method is a type implementing
//! [`DistillMethod`] (its configuration with defaults, its flags, the teachers or label file it
//! needs, its validation and the training it runs through the one loop), registered by one line
//! in [`methods!`] below; the macro derives the subcommands, the `method.kind` of config files
//! and every dispatch over methods, so nothing else lists them.

use super::config::{DistillConfig, RunArgs};
use super::crops::RegionCrops;
use super::objective::{DistillLoss, DistillObjective, Student, Targets};
use super::regions::{self, RegionLoaders};
use crate::shared::data::{Splits, loader, train_transform};
use crate::shared::profiles::Profile;
use crate::shared::teachers::Teachers;
use anyhow::Result;
use kd_common::checkpoint::InputSpec;
use kd_common::device::ResolvedDevice;
use kd_common::models::{Discriminator, Network};
use kd_common::train::{self, PassRow, Phase, Run, TrainConfig, Validation};
use kd_datasets::{BatchLoader, Dataset};
use std::path::{Path, PathBuf};

/// One distillation method.
pub trait DistillMethod: Clone + std::fmt::Debug + PartialEq + serde::Serialize + serde::de::DeserializeOwned {
    /// Its own flags (each optional: a flag overrides the config file only when given).
    type Flags: clap::Args + std::fmt::Debug;
    /// The subcommand and `method.kind`: the type's name in kebab-case (checked by a test).
    const NAME: &'static str;

    /// The preset's configuration (some defaults depend on flags, e.g. MEAL V2's
    /// discriminator input on `--labels`).
    fn defaults(profile: Profile, flags: &Self::Flags) -> Self;
    /// Changes the preset's training defaults (MEAL V2 trains without weight decay).
    fn adjust_training(_train: &mut TrainConfig) {}
    /// Overrides the fields whose flags were given.
    fn apply(&mut self, flags: &Self::Flags);
    /// Teacher checkpoints the method runs (and measures agreement with).
    fn teachers(&self) -> &[PathBuf];
    /// The label file, for methods trained from packed labels.
    fn labels(&self) -> Option<&Path> {
        None
    }
    /// Checks values that the types allow but the method does not.
    fn validate(&self, epochs: usize) -> Result<(), String>;
    /// Trains the student.
    fn train(&self, run: &MethodRun, teachers: Teachers) -> Result<Trained>;
}

/// A method's subcommand: the shared flags and the method's own.
#[derive(clap::Args, Debug)]
pub struct Cli<F: clap::Args> {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub flags: F,
}

/// The registry: `/// help` and `module::Type` per method.
macro_rules! methods {
    ($($(#[doc = $doc:literal])* $module:ident::$method:ident,)*) => {
        $(pub mod $module;)*

        /// One subcommand per method.
        #[derive(clap::Subcommand, Debug)]
        pub enum MethodArgs {
            $($(#[doc = $doc])* $method(Cli<<$module::$method as DistillMethod>::Flags>),)*
        }

        /// A method and its parameters, tagged by `kind` in config files.
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "kind", rename_all = "kebab-case")]
        pub enum Method {
            $($(#[doc = $doc])* $method($module::$method),)*
        }

        /// Every method's name, in registry order.
        pub const NAMES: &[&str] = &[$(<$module::$method as DistillMethod>::NAME),*];

        impl MethodArgs {
            /// The flags every method shares.
            pub fn run_args(&self) -> &RunArgs {
                match self {
                    $(Self::$method(cli) => &cli.run,)*
                }
            }

            /// The method's name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$method(_) => <$module::$method as DistillMethod>::NAME,)*
                }
            }

            /// The preset's method configuration.
            pub fn defaults(&self, profile: Profile) -> Method {
                match self {
                    $(Self::$method(cli) => Method::$method(<$module::$method as DistillMethod>::defaults(profile, &cli.flags)),)*
                }
            }

            /// The preset's training configuration changed as the method needs.
            pub fn adjust_training(&self, train: &mut TrainConfig) {
                match self {
                    $(Self::$method(_) => <$module::$method as DistillMethod>::adjust_training(train),)*
                }
            }

            /// Applies the method's flags to `method`, which must be this subcommand's method.
            pub fn apply(&self, method: &mut Method) -> Result<()> {
                match (self, method) {
                    $((Self::$method(cli), Method::$method(m)) => {
                        m.apply(&cli.flags);
                        Ok(())
                    })*
                    (args, method) => {
                        anyhow::bail!("method.kind is `{}` but the command is `{}`", method.name(), args.name())
                    }
                }
            }
        }

        impl Method {
            /// The method's name on the command line.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$method(_) => <$module::$method as DistillMethod>::NAME,)*
                }
            }

            /// Teacher checkpoints the method runs or compares with.
            pub fn teachers(&self) -> &[PathBuf] {
                match self {
                    $(Self::$method(m) => m.teachers(),)*
                }
            }

            /// The label file, for methods trained from packed labels.
            pub fn labels(&self) -> Option<&Path> {
                match self {
                    $(Self::$method(m) => m.labels(),)*
                }
            }

            /// Checks values that the types allow but the method does not.
            pub fn validate(&self, epochs: usize) -> Result<(), String> {
                match self {
                    $(Self::$method(m) => m.validate(epochs),)*
                }
            }

            /// Trains the student.
            pub fn train(&self, run: &MethodRun, teachers: Teachers) -> Result<Trained> {
                match self {
                    $(Self::$method(m) => m.train(run, teachers),)*
                }
            }
        }
    };
}

methods! {
    /// Online Hinton KD: alpha T^2 KL(p_t || p_s) + (1 - alpha) CE, teachers frozen.
    kd::Kd,
    /// FKD: soft cross-entropy on region crops rebuilt from a kd-pack-labels file, no teacher.
    fkd::Fkd,
    /// MEAL V2: soft cross-entropy to the teachers' mean softmax plus a discriminator.
    meal_v2::MealV2,
    /// SSLD: symmetric KL to the teacher on labeled + unlabeled images, then a fine-tune.
    ssld::Ssld,
    /// DKD: target-class and non-target-class KL weighted apart, plus cross-entropy.
    dkd::Dkd,
    /// DIST: inter- and intra-class Pearson-correlation losses, plus cross-entropy.
    dist::Dist,
}

/// Sets `slot` to the flag's value when the flag was given.
pub fn set_if<T: Clone>(slot: &mut T, flag: &Option<T>) {
    if let Some(value) = flag {
        *slot = value.clone();
    }
}

/// Checks a softmax temperature.
pub fn positive_temperature(t: f32) -> Result<(), String> {
    if t > 0.0 && t.is_finite() { Ok(()) } else { Err(format!("temperature must be positive, got {t}")) }
}

/// Checks a loss weight.
pub fn non_negative_weight(name: &str, w: f32) -> Result<(), String> {
    if w >= 0.0 && w.is_finite() { Ok(()) } else { Err(format!("{name} must be a finite weight >= 0, got {w}")) }
}

/// What training produced.
pub struct Trained {
    /// The student (autodiff device).
    pub network: Network,
    /// One row per pass.
    pub rows: Vec<PassRow>,
    /// The pass a killed run was resumed after.
    pub resumed_after: Option<usize>,
    /// Method-specific facts for the summary (label file, SSLD's data).
    pub data: Option<serde_json::Value>,
}

/// Everything a method trains with: the resolved run and its data, device and output folder.
pub struct MethodRun<'a> {
    /// The resolved configuration.
    pub config: &'a DistillConfig,
    /// The run hash (configuration, teachers, label file).
    pub hash: &'a str,
    /// The dataset's splits.
    pub splits: &'a Splits,
    /// The student's (and teachers') input.
    pub input: &'a InputSpec,
    /// The initial student (autodiff device).
    pub network: Network,
    /// Validation batches, if a split is held out.
    pub val: Option<&'a BatchLoader>,
    /// Teachers measured for agreement.
    pub references: &'a [Network],
    /// Where to compute.
    pub device: &'a ResolvedDevice,
    /// Output folder.
    pub out: &'a Path,
}

impl MethodRun<'_> {
    /// Shuffled, augmented training batches of `dataset`.
    pub fn train_loader(&self, dataset: &Dataset) -> Result<BatchLoader> {
        let config = self.config;
        loader(
            dataset.clone(),
            train_transform(self.input, config.augment.clone()),
            config.train.batch_size,
            true,
            config.run.workers,
            config.run.seed,
        )
    }

    /// The region-crop loaders of a label file.
    pub fn region_loaders(&self, labels: &Path, crops: &RegionCrops) -> Result<RegionLoaders> {
        let config = self.config;
        regions::region_loaders(
            labels,
            crops,
            self.splits,
            self.input,
            config.train.epochs,
            config.train.batch_size,
            config.run.workers,
            config.run.seed,
        )
    }

    /// Per-pass validation on the held-out split, with agreement to the teachers.
    pub fn validation(&self) -> Validation<'_> {
        match self.val {
            Some(source) => Validation::Classification { source, references: self.references },
            None => Validation::None,
        }
    }

    /// One run of the loop: the student (with a discriminator or not) over `phases`.
    pub fn fit<L: DistillLoss>(
        &self,
        objective: &mut DistillObjective<L>,
        discriminator: Option<Discriminator>,
        phases: Vec<Phase>,
    ) -> Result<Trained> {
        let run = Run {
            config: &self.config.train,
            phases,
            validation: self.validation(),
            device: self.device,
            out_dir: self.out,
            run_hash: self.hash,
        };
        let student = Student { network: self.network.clone(), discriminator };
        let outcome = train::fit(student, objective, &run)?;
        Ok(Trained {
            network: outcome.model.network,
            rows: outcome.rows,
            resumed_after: outcome.resumed_after,
            data: None,
        })
    }

    /// Online distillation on the training split: the teachers run on every batch at
    /// `temperature` (logits z-scored first with `standardize`) and `loss` compares.
    pub fn fit_online<L: DistillLoss>(
        &self,
        loss: L,
        temperature: f32,
        standardize: bool,
        teachers: Teachers,
    ) -> Result<Trained> {
        let mut objective = DistillObjective {
            teachers,
            targets: Targets::Online { temperature, standardize },
            loss,
            discriminator_input: meal_v2::DiscriminatorInput::Logits,
        };
        let source = self.train_loader(&self.splits.train)?;
        self.fit(&mut objective, None, vec![Phase::epochs(&source, self.config.train.epochs)])
    }
}

/// A batch of `labels` (images unused) for the loss tests.
#[cfg(test)]
pub fn labelled(labels: Vec<usize>) -> kd_datasets::Batch {
    let n = labels.len();
    kd_datasets::Batch {
        views: vec![kd_datasets::HostTensor { values: vec![0.0; n], shape: vec![n, 1, 1, 1] }],
        indices: (0..n).collect(),
        targets: kd_datasets::Targets::Labels(labels),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every registered method's name is its subcommand and its `kind` in config files.
    #[test]
    fn names_are_subcommands_and_kinds() {
        let command = super::super::config::Args::command();
        for name in NAMES {
            assert!(command.find_subcommand(name).is_some(), "no subcommand `{name}`");
        }
        assert_eq!(command.get_subcommands().count(), NAMES.len());
        for profile in [Profile::Quick, Profile::Converged, Profile::Full] {
            for name in NAMES {
                let args = <super::super::config::Args as clap::Parser>::try_parse_from(["kd-distill", name]).unwrap();
                let method = args.method.defaults(profile);
                assert_eq!(method.name(), *name);
                assert_eq!(serde_json::to_value(&method).unwrap()["kind"], *name);
                let back: Method = serde_json::from_value(serde_json::to_value(&method).unwrap()).unwrap();
                assert_eq!(back, method, "{name} round-trips through its config");
            }
        }
    }

    #[test]
    fn config_files_reject_unknown_fields() {
        let ok: Method =
            serde_json::from_str(r#"{"kind": "kd", "teachers": ["t"], "alpha": 0.9, "temperature": 4}"#).unwrap();
        assert_eq!(ok.name(), "kd");
        let err = serde_json::from_str::<Method>(
            r#"{"kind": "kd", "teachers": [], "alpha": 0.9, "temperature": 4, "beta": 1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `beta`"), "{err}");
    }
}

//! PaddleClas SSLD (Cui et al., "Beyond Self-Supervision: A Simple Yet Effective Network
//! Distillation Alternative to Improve Backbones", 2021, §3): a divergence to the teachers on
//! labeled plus unlabeled images (no ground-truth term), then a fine-tune on the labeled set at a
//! lower learning rate.

use super::{DistillMethod, MethodRun, Trained, set_if};
use crate::distill::objective::DistillLoss;
use crate::distill::ssld::assemble;
use crate::pretrain::CrossEntropy;
use crate::shared::profiles::Profile;
use crate::shared::teachers::Teachers;
use anyhow::Result;
use burn::tensor::{Device, Tensor};
use kd_common::losses::{jensen_shannon, symmetric_kl};
use kd_common::train::{self, Decay, PassRow, Phase, Run, ScheduleConfig, TrainConfig};
use kd_datasets::{Batch, DatasetKind, Split};
use std::path::PathBuf;

/// SSLD.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssld {
    /// Teacher checkpoints.
    pub teachers: Vec<PathBuf>,
    /// The divergence.
    pub divergence: Divergence,
    /// Unlabeled images mixed into the distillation stage.
    pub unlabeled: Option<UnlabeledSource>,
    /// Keep only the `k` highest-scoring unlabeled images per class (null: all).
    pub select_per_class: Option<usize>,
    /// Epochs of the fine-tune stage on the labeled set (0: none).
    pub finetune_epochs: usize,
    /// Learning rate of the fine-tune relative to the distillation learning rate.
    pub finetune_lr_scale: f64,
}

/// SSLD's divergence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Divergence {
    /// `1/2 (KL(t||s) + KL(s||t))`, what PaddleClas calls "JS".
    SymmetricKl,
    /// The true Jensen-Shannon divergence.
    JensenShannon,
}

impl DistillLoss for Divergence {
    fn loss(&self, student: Tensor<2>, teacher_probs: Tensor<2>, _batch: &Batch, _device: &Device) -> kd_common::Result<Tensor<1>> {
        Ok(match self {
            Self::SymmetricKl => symmetric_kl(student, teacher_probs),
            Self::JensenShannon => jensen_shannon(student, teacher_probs),
        })
    }
}

/// Where SSLD's unlabeled images come from; their labels, if any, are never used.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum UnlabeledSource {
    /// `count` images of the training split with their labels dropped (the labeled set shrinks
    /// by as many): a semi-supervised split of one dataset.
    TrainHoldout {
        /// Images.
        count: usize,
    },
    /// Every PNG/JPEG file under a folder, recursively.
    Folder {
        /// The folder.
        path: PathBuf,
    },
    /// A split of another dataset (resized to the student's input).
    Dataset {
        /// The dataset.
        dataset: DatasetKind,
        /// Its split.
        split: Split,
        /// Its directory (null: the standard location).
        data_dir: Option<PathBuf>,
    },
}

impl std::str::FromStr for UnlabeledSource {
    type Err = String;

    /// `train-holdout:N`, `folder:PATH`, or `DATASET:SPLIT[:DIR]` (for example `cifar10:train`).
    fn from_str(text: &str) -> Result<Self, String> {
        let (head, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("`{text}`: expected train-holdout:N, folder:PATH or DATASET:SPLIT[:DIR]"))?;
        match head {
            "train-holdout" => rest
                .parse()
                .map(|count| Self::TrainHoldout { count })
                .map_err(|_| format!("`{rest}` is not an image count")),
            "folder" => Ok(Self::Folder { path: rest.into() }),
            dataset => {
                let dataset: DatasetKind = dataset.parse().map_err(|e: kd_datasets::DataError| e.to_string())?;
                let (split, dir) = match rest.split_once(':') {
                    Some((split, dir)) => (split, Some(PathBuf::from(dir))),
                    None => (rest, None),
                };
                let split = match split {
                    "train" => Split::Train,
                    "test" => Split::Test,
                    other => return Err(format!("unknown split `{other}` (train or test)")),
                };
                Ok(Self::Dataset { dataset, split, data_dir: dir })
            }
        }
    }
}

/// `kd-distill ssld` flags.
#[derive(clap::Args, Debug)]
pub struct SsldFlags {
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

impl DistillMethod for Ssld {
    type Flags = SsldFlags;
    const NAME: &'static str = "ssld";

    fn defaults(profile: Profile, _flags: &SsldFlags) -> Self {
        Self {
            teachers: vec![],
            divergence: Divergence::SymmetricKl,
            unlabeled: None,
            select_per_class: None,
            finetune_epochs: profile.epochs(1, 30),
            finetune_lr_scale: 0.01,
        }
    }

    fn apply(&mut self, flags: &SsldFlags) {
        if !flags.teachers.is_empty() {
            self.teachers = flags.teachers.clone();
        }
        set_if(&mut self.divergence, &flags.divergence);
        if flags.unlabeled.is_some() {
            self.unlabeled = flags.unlabeled.clone();
        }
        if flags.select_per_class.is_some() {
            self.select_per_class = flags.select_per_class;
        }
        set_if(&mut self.finetune_epochs, &flags.finetune_epochs);
        set_if(&mut self.finetune_lr_scale, &flags.finetune_lr_scale);
    }

    fn teachers(&self) -> &[PathBuf] {
        &self.teachers
    }

    fn validate(&self, _epochs: usize) -> Result<(), String> {
        if self.teachers.is_empty() {
            return Err("ssld needs at least one --teacher".into());
        }
        if !(self.finetune_lr_scale.is_finite() && self.finetune_lr_scale > 0.0) {
            return Err(format!("the fine-tune learning-rate scale must be positive, got {}", self.finetune_lr_scale));
        }
        if self.select_per_class == Some(0) {
            return Err("--select-per-class must be at least 1".into());
        }
        Ok(())
    }

    fn train(&self, run: &MethodRun, teachers: Teachers) -> Result<Trained> {
        let config = run.config;
        let data = assemble(
            &run.splits.train,
            self.unlabeled.as_ref(),
            self.select_per_class,
            &teachers,
            run.input,
            config.run.workers,
            config.run.seed,
            &run.device.device,
        )?;
        let mut objective = crate::distill::objective::DistillObjective {
            teachers,
            targets: crate::distill::objective::Targets::Online { temperature: 1.0, standardize: false },
            loss: self.divergence,
            discriminator_input: super::meal_v2::DiscriminatorInput::Logits,
        };
        let source = run.train_loader(&data.distill)?;
        let distilled = run.fit(&mut objective, None, vec![Phase::epochs(&source, config.train.epochs)])?;
        let (mut rows, mut network) = (distilled.rows, distilled.network);
        if self.finetune_epochs > 0 {
            // Stage 2: cross-entropy on the labeled set at a lower learning rate, to restore the
            // labeled distribution (Cui et al., 2021, §3).
            let finetune = TrainConfig {
                epochs: self.finetune_epochs,
                schedule: ScheduleConfig {
                    lr: config.train.schedule.lr * self.finetune_lr_scale,
                    warmup_epochs: 0.0,
                    decay: Decay::Cosine,
                },
                ..config.train.clone()
            };
            let labeled = run.train_loader(&data.labeled)?;
            let stage_dir = run.out.join("finetune");
            let stage_hash = format!("{}-finetune", run.hash);
            let stage = Run {
                config: &finetune,
                phases: vec![Phase::epochs(&labeled, self.finetune_epochs)],
                validation: run.validation(),
                device: run.device,
                out_dir: &stage_dir,
                run_hash: &stage_hash,
            };
            let outcome = train::fit(network, &mut CrossEntropy { label_smoothing: 0.0 }, &stage)?;
            let (pass_offset, epoch_offset) = rows.last().map_or((0, 0), |r| (r.pass, r.epoch));
            rows.extend(outcome.rows.into_iter().map(|r| PassRow {
                pass: r.pass + pass_offset,
                epoch: r.epoch + epoch_offset,
                ..r
            }));
            network = outcome.model;
        }
        Ok(Trained { network, rows, data: Some(data.summary), ..distilled })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlabeled_sources_parse() {
        assert_eq!("train-holdout:100".parse(), Ok(UnlabeledSource::TrainHoldout { count: 100 }));
        assert_eq!("folder:/x/y".parse(), Ok(UnlabeledSource::Folder { path: "/x/y".into() }));
        assert_eq!(
            "cifar10:test:/d".parse(),
            Ok(UnlabeledSource::Dataset {
                dataset: DatasetKind::Cifar10,
                split: Split::Test,
                data_dir: Some("/d".into())
            })
        );
        assert!("cifar10:dev".parse::<UnlabeledSource>().unwrap_err().contains("unknown split"));
        assert!("nothing".parse::<UnlabeledSource>().is_err());
    }
}

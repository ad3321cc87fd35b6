//! The distillation methods of `kd-distill` as one typed configuration: an enum of loss kinds,
//! tagged by `kind`, unknown fields rejected when a config file is parsed.

use kd_datasets::{DatasetKind, Split};
use std::path::PathBuf;

/// A method and its parameters.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Method {
    /// Online Hinton KD from frozen teachers (Park & No, prune-then-distill, ECCV 2022, §4).
    Kd {
        /// Teacher checkpoints (an ensemble averages their softmax at T).
        teachers: Vec<PathBuf>,
        /// Weight of the distillation term.
        alpha: f32,
        /// Softmax temperature T.
        temperature: f32,
    },
    /// FKD: teacher-free training from a `kd-pack-labels` file (Shen & Xing, FKD, ECCV 2022, §3.2).
    Fkd {
        /// The label file.
        labels: PathBuf,
        /// Multi-crop sampling.
        crops: RegionCrops,
        /// Student temperature of the soft cross-entropy.
        temperature: f32,
    },
    /// MEAL V2: soft cross-entropy to the ensemble's mean softmax plus a jointly trained
    /// discriminator (Shen & Savvides, MEAL V2, 2020, §3.1).
    MealV2 {
        /// Teacher checkpoints (online); with `labels` they are only used for agreement.
        teachers: Vec<PathBuf>,
        /// Packed ensemble labels instead of running the teachers.
        labels: Option<PathBuf>,
        /// Multi-crop sampling (with `labels`).
        crops: RegionCrops,
        /// The discriminator (null: off).
        discriminator: Option<DiscriminatorConfig>,
    },
    /// PaddleClas SSLD: a divergence to the teacher on labeled plus unlabeled images, then a
    /// fine-tune on the labeled set (PaddleClas SSLD; Cui et al., 2021, §3).
    Ssld {
        /// Teacher checkpoints.
        teachers: Vec<PathBuf>,
        /// The divergence.
        divergence: Divergence,
        /// Unlabeled images mixed into the distillation stage.
        unlabeled: Option<UnlabeledSource>,
        /// Keep only the `k` highest-scoring unlabeled images per class (null: all).
        select_per_class: Option<usize>,
        /// Epochs of the fine-tune stage on the labeled set (0: none).
        finetune_epochs: usize,
        /// Learning rate of the fine-tune relative to the distillation learning rate.
        finetune_lr_scale: f64,
    },
}

/// FKD multi-crop sampling and epoch accounting.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionCrops {
    /// Stored crops drawn per image visit; a pass counts as this many epochs.
    pub num_crops: usize,
    /// Epochs at the end trained with one crop per image (FKD: `num_crops`).
    pub final_single_crop_epochs: usize,
    /// Label files up to this size are read into memory, larger ones chunk by chunk.
    pub memory_budget_mib: u64,
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

/// SSLD's divergence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Divergence {
    /// `1/2 (KL(t||s) + KL(s||t))`, what PaddleClas calls "JS".
    SymmetricKl,
    /// The true Jensen-Shannon divergence.
    JensenShannon,
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

impl Method {
    /// The method's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Kd { .. } => "kd",
            Self::Fkd { .. } => "fkd",
            Self::MealV2 { .. } => "meal-v2",
            Self::Ssld { .. } => "ssld",
        }
    }

    /// Teacher checkpoints the method runs or compares with.
    pub fn teachers(&self) -> &[PathBuf] {
        match self {
            Self::Kd { teachers, .. } | Self::MealV2 { teachers, .. } | Self::Ssld { teachers, .. } => teachers,
            Self::Fkd { .. } => &[],
        }
    }

    /// The label file, for methods trained from packed labels.
    pub fn labels(&self) -> Option<&PathBuf> {
        match self {
            Self::Fkd { labels, .. } => Some(labels),
            Self::MealV2 { labels, .. } => labels.as_ref(),
            _ => None,
        }
    }

    /// Checks values that the types allow but the methods do not.
    pub fn validate(&self, epochs: usize) -> Result<(), String> {
        let positive_t = |t: f32| {
            if t > 0.0 && t.is_finite() { Ok(()) } else { Err(format!("temperature must be positive, got {t}")) }
        };
        match self {
            Self::Kd { teachers, alpha, temperature } => {
                if teachers.is_empty() {
                    return Err("kd needs at least one --teacher".into());
                }
                if !(0.0..=1.0).contains(alpha) {
                    return Err(format!("alpha must be in [0, 1], got {alpha}"));
                }
                positive_t(*temperature)
            }
            Self::Fkd { crops, temperature, .. } => {
                crops.validate(epochs)?;
                positive_t(*temperature)
            }
            Self::MealV2 { teachers, labels, crops, discriminator } => {
                if teachers.is_empty() && labels.is_none() {
                    return Err("meal-v2 needs --teacher (online) or --labels (packed ensemble labels)".into());
                }
                if labels.is_some() {
                    crops.validate(epochs)?;
                    if discriminator.is_some_and(|d| d.input == DiscriminatorInput::Logits) {
                        return Err(
                            "packed labels hold probabilities, not logits: use --disc-input probs with --labels".into(),
                        );
                    }
                }
                Ok(())
            }
            Self::Ssld { teachers, finetune_lr_scale, select_per_class, .. } => {
                if teachers.is_empty() {
                    return Err("ssld needs at least one --teacher".into());
                }
                if !(finetune_lr_scale.is_finite() && *finetune_lr_scale > 0.0) {
                    return Err(format!("the fine-tune learning-rate scale must be positive, got {finetune_lr_scale}"));
                }
                if *select_per_class == Some(0) {
                    return Err("--select-per-class must be at least 1".into());
                }
                Ok(())
            }
        }
    }
}

impl RegionCrops {
    /// `(multi-crop passes, single-crop epochs)` for `epochs` epochs: as many passes of
    /// `num_crops` epochs as fit before the final single-crop epochs; what is left over is
    /// trained with single crops too, so the total is exactly `epochs`.
    pub fn plan(&self, epochs: usize) -> (usize, usize) {
        let multi = epochs.saturating_sub(self.final_single_crop_epochs) / self.num_crops;
        (multi, epochs - multi * self.num_crops)
    }

    fn validate(&self, epochs: usize) -> Result<(), String> {
        if self.num_crops == 0 {
            return Err("--num-crops must be at least 1".into());
        }
        if self.final_single_crop_epochs > epochs {
            return Err(format!(
                "{} final single-crop epochs exceed the {epochs} epochs",
                self.final_single_crop_epochs
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FKD accounting: `--epochs 300 --num_crops 4` with 4 final single-crop epochs is 74
    /// passes (296 epochs) + 4 single-crop epochs; 5 epochs with 1 final gives 1 pass + 1.
    #[test]
    fn region_plan_counts_passes_as_num_crops_epochs() {
        let crops = |m, f| RegionCrops { num_crops: m, final_single_crop_epochs: f, memory_budget_mib: 1 };
        assert_eq!(crops(4, 4).plan(300), (74, 4));
        assert_eq!(crops(4, 1).plan(5), (1, 1));
        assert_eq!(crops(4, 0).plan(6), (1, 2), "leftover epochs run single-crop");
        assert_eq!(crops(1, 0).plan(3), (3, 0));
        assert_eq!(crops(8, 2).plan(5), (0, 5));
    }

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

//! Training presets: `quick` fits a 2-core CPU in minutes, `converged` trains the same networks
//! long enough for the verdicts, `full` is the long GPU recipe.

use kd_common::models::Arch;
use kd_common::train::{Decay, OptimizerConfig, ScheduleConfig, TrainConfig};
use kd_datasets::DatasetKind;

/// A named preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Minutes on a 2-core CPU: small models, few epochs.
    Quick,
    /// The quick preset's networks, data and crops with every schedule 8x as long (40 epochs on
    /// Fashion-MNIST): the longest schedule of the student's learning curve
    /// (`scripts/learning-curve.sh`, docs/results.md), for verdicts about trained students.
    Converged,
    /// The full recipe for a GPU.
    Full,
}

/// Which network a preset trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The teacher.
    Teacher,
    /// The student (also the baseline trained without distillation).
    Student,
}

impl Profile {
    /// How many times the quick preset's schedules this preset's are (quick and converged
    /// only): the epoch counts derived from quick's (training, pruning's retraining, SSLD's
    /// fine-tuning, DKD's warm-up) are multiplied by it. FKD's final single-crop epochs are not:
    /// converged ends with FKD's own 4 (quick's 1 fits its 5 epochs).
    fn quick_multiple(self) -> Option<usize> {
        match self {
            Profile::Quick => Some(1),
            Profile::Converged => Some(8),
            Profile::Full => None,
        }
    }

    /// `quick` scaled to this preset when it is quick-sized, else `full`: the epoch count of
    /// a schedule part (e.g. SSLD's fine-tuning: 1 quick, 8 converged, 30 full).
    pub fn epochs(self, quick: usize, full: usize) -> usize {
        self.quick_multiple().map_or(full, |m| quick * m)
    }
}

/// Architecture and width of a role in a preset.
pub fn model(profile: Profile, role: Role) -> (Arch, f32) {
    match (profile, role) {
        (Profile::Quick | Profile::Converged, Role::Teacher) => (Arch::SmallCnn, 1.0),
        (Profile::Quick | Profile::Converged, Role::Student) => (Arch::SmallCnn, 0.25),
        (Profile::Full, Role::Teacher) => (Arch::ResNet(56), 1.0),
        (Profile::Full, Role::Student) => (Arch::ResNet(20), 1.0),
    }
}

/// Random-resized-crop area range of the quick preset on Fashion-MNIST/MNIST, shared by the
/// training augmentation and the FKD labels (`make`'s CROP_SCALE).
pub const QUICK_CROP_SCALE: [f32; 2] = [0.8, 1.0];

/// Training augmentation of a preset. The quick preset trains Fashion-MNIST/MNIST for a few
/// epochs only, where pad-crop-flip slows convergence more than it regularises (measured,
/// small-cnn, 4 epochs, seed 0: 88.33% test top-1 with pad-crop-flip, 90.26% without). It trains
/// every network there on FKD's crop family at the quick labels' scale instead: random-resized
/// crops of 80-100% of the area, aspect 3/4-4/3, no flip (clothes and digits face one way). So
/// the teacher has seen the crops it labels for FKD, and online KD sees the crops FKD stores.
/// Pad-crop-flip is kept for CIFAR, RRC for folders, as in the full preset.
pub fn augment(profile: Profile, kind: DatasetKind) -> kd_datasets::Augment {
    match (profile, kind) {
        (Profile::Quick | Profile::Converged, DatasetKind::FashionMnist | DatasetKind::Mnist) => {
            kd_datasets::Augment::RandomResizedCrop { scale: QUICK_CROP_SCALE, ratio: [0.75, 4.0 / 3.0], flip: false }
        }
        _ => kind.train_augment(),
    }
}

/// The optimisation recipe of a preset. Full: SGD 0.1, Nesterov momentum 0.9, weight decay
/// 5e-4, batch 128, 1 warm-up epoch then cosine, 200 epochs (the CIFAR recipe of the KD
/// literature, e.g. RepDistiller's 240 epochs at lr 0.05 and PTD's 200 at lr 0.1).
pub fn train_config(profile: Profile, kind: DatasetKind) -> TrainConfig {
    let sgd = OptimizerConfig::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 };
    match profile {
        Profile::Quick | Profile::Converged => TrainConfig {
            epochs: profile
                .epochs(if matches!(kind, DatasetKind::Cifar10 | DatasetKind::Cifar100) { 15 } else { 5 }, 200),
            batch_size: 128,
            optimizer: sgd,
            schedule: ScheduleConfig { lr: 0.1, warmup_epochs: 0.2, decay: Decay::Cosine },
            grad_clip_norm: None,
        },
        Profile::Full => TrainConfig {
            epochs: 200,
            batch_size: 128,
            optimizer: sgd,
            schedule: ScheduleConfig { lr: 0.1, warmup_epochs: 1.0, decay: Decay::Cosine },
            grad_clip_norm: None,
        },
    }
}

/// MoCo v2 pretraining in a preset. MoCo v2's ImageNet recipe is SGD lr 0.03 per 256 images,
/// momentum 0.9, wd 1e-4, cosine, 200 epochs, queue 65,536, key momentum 0.999, tau 0.2. On
/// 50,000-image datasets the queue and the momentum shrink (queue 4,096 and m 0.99, the common
/// CIFAR adaptation: the queue stays a fraction of an epoch, the key encoder keeps up with
/// short training); the quick preset trains as many epochs as the supervised one at lr 0.06
/// (twice the linearly scaled rate, for the short schedule; not tuned).
pub fn moco(profile: Profile, kind: DatasetKind) -> (crate::pretrain::moco::MocoConfig, TrainConfig) {
    let mut train = train_config(profile, kind);
    train.optimizer = OptimizerConfig::Sgd { momentum: 0.9, nesterov: false, weight_decay: 1e-4 };
    train.schedule.lr = match profile {
        Profile::Quick | Profile::Converged => 0.06,
        Profile::Full => 0.03 * train.batch_size as f64 / 256.0,
    };
    let config = match (profile, kind) {
        (_, DatasetKind::Folder) => crate::pretrain::moco::MocoConfig::new(65_536, 0.999),
        _ => crate::pretrain::moco::MocoConfig::new(4_096, 0.99),
    };
    (config, train)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The converged preset is the quick one with every schedule 8x as long (5 -> 40 epochs on
    /// Fashion-MNIST, 15 -> 120 on CIFAR), nothing else changed; full keeps its own counts.
    #[test]
    fn converged_is_quick_eight_times_as_long() {
        for kind in [DatasetKind::FashionMnist, DatasetKind::Cifar10, DatasetKind::Folder] {
            let quick = train_config(Profile::Quick, kind);
            let mut converged = train_config(Profile::Converged, kind);
            assert_eq!(converged.epochs, quick.epochs * 8);
            converged.epochs = quick.epochs;
            assert_eq!(converged, quick, "{kind:?}: only the epochs differ");
            assert_eq!(augment(Profile::Converged, kind), augment(Profile::Quick, kind));
            let (moco_quick, train_quick) = moco(Profile::Quick, kind);
            let (moco_converged, train_converged) = moco(Profile::Converged, kind);
            assert_eq!(moco_converged, moco_quick);
            assert_eq!(train_converged.epochs, train_quick.epochs * 8);
        }
        assert_eq!(train_config(Profile::Converged, DatasetKind::FashionMnist).epochs, 40);
        for role in [Role::Teacher, Role::Student] {
            assert_eq!(model(Profile::Converged, role), model(Profile::Quick, role));
        }
        assert_eq!(Profile::Quick.epochs(1, 30), 1);
        assert_eq!(Profile::Converged.epochs(1, 30), 8);
        assert_eq!(Profile::Full.epochs(1, 30), 30);
        assert_eq!(train_config(Profile::Full, DatasetKind::FashionMnist).epochs, 200);
    }
}

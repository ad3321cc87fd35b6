//! The linear probe of a frozen encoder (the MoCo protocol, He et al., CVPR 2020, §4.1; SEED's
//! `main_lincls.py`): the pooled features of the training and test images are computed once and
//! cached, then a linear classifier is trained on them with cross-entropy through the one loop
//! (MoCo's options: 100 epochs, SGD lr 30 with momentum 0.9, x0.1 at epochs 60 and 80, weight
//! decay 0, batch 256) and its test top-1 reported.

use super::features::CachedFeatures;
use super::objective::{Objective, StepOutput};
use super::optimizer::OptimizerConfig;
use super::schedule::{Decay, ScheduleConfig};
use super::trainer::{Phase, Run, TrainConfig, fit};
use super::upload;
use super::validation::Validation;
use crate::device::ResolvedDevice;
use crate::error::{Error, Result};
use crate::losses::cross_entropy_with_smoothing;
use crate::models::Network;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use kd_datasets::{Batch, FeatureSource};
use std::path::Path;

/// The probe's optimisation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearProbeConfig {
    /// Epochs over the cached features.
    pub epochs: usize,
    /// SGD learning rate (momentum 0.9).
    pub lr: f64,
    /// Epochs where the rate drops by 10x.
    pub milestones: Vec<usize>,
    /// Features per step.
    pub batch_size: usize,
    /// Weight decay.
    pub weight_decay: f32,
}

impl Default for LinearProbeConfig {
    /// MoCo's protocol.
    fn default() -> Self {
        Self { epochs: 100, lr: 30.0, milestones: vec![60, 80], batch_size: 256, weight_decay: 0.0 }
    }
}

/// Cross-entropy of a linear classifier on feature vectors (the probe's objective).
pub struct LinearCrossEntropy;

impl Objective<Linear> for LinearCrossEntropy {
    fn step(&mut self, model: &Linear, batch: &Batch, device: &Device) -> Result<StepOutput> {
        let logits = model.forward(upload::features(batch, 0, device)?);
        let loss = cross_entropy_with_smoothing(logits.clone(), upload::labels(batch, device)?, 0.0);
        Ok(StepOutput::with_logits(loss, logits))
    }

    fn network<'a>(&self, _model: &'a Linear) -> Option<&'a Network> {
        None
    }
}

/// Test top-1 (%) of a linear classifier trained on `train` (state and metrics in `out_dir`).
pub fn linear_probe(
    train: &CachedFeatures,
    test: &CachedFeatures,
    config: &LinearProbeConfig,
    device: &ResolvedDevice,
    out_dir: &Path,
    seed: u64,
) -> Result<f64> {
    if train.dim != test.dim || train.classes != test.classes {
        return Err(Error::Shape(format!(
            "train features are {}-d over {} classes, test features {}-d over {}",
            train.dim, train.classes, test.dim, test.classes
        )));
    }
    let source = FeatureSource::new(
        train.values.clone(),
        train.dim,
        train.labels.clone(),
        train.classes,
        config.batch_size,
        true,
        seed,
    )?;
    let loop_config = TrainConfig {
        epochs: config.epochs,
        batch_size: config.batch_size,
        optimizer: OptimizerConfig::Sgd { momentum: 0.9, nesterov: false, weight_decay: config.weight_decay },
        schedule: ScheduleConfig {
            lr: config.lr,
            warmup_epochs: 0.0,
            decay: Decay::Step { milestones: config.milestones.clone(), gamma: 0.1 },
        },
        grad_clip_norm: None,
    };
    let run = Run {
        config: &loop_config,
        phases: vec![Phase::epochs(&source, config.epochs)],
        validation: Validation::None,
        device,
        out_dir,
        run_hash: "linear-probe",
    };
    device.device.seed(seed);
    let probe = LinearConfig::new(train.dim, train.classes).init(&device.device.clone().autodiff());
    let probe = fit(probe, &mut LinearCrossEntropy, &run)?.model.valid();
    let rows = test.labels.len();
    let x = Tensor::<2>::from_data(TensorData::new(test.values.clone(), [rows, test.dim]), &device.device);
    let predicted: Vec<i64> = probe
        .forward(x)
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| Error::Shape(format!("{e:?}")))?;
    let correct = predicted.iter().zip(&test.labels).filter(|(p, l)| **p as usize == **l).count();
    Ok(100.0 * correct as f64 / rows as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{DeviceSpec, resolve};

    /// Three classes at the corners (4, 0), (0, 4), (-4, -4) with small offsets: linearly
    /// separable by construction, so the probe is right on every test point (100%); the test
    /// points are new offsets. With the labels of the test points rotated (0 -> 1 -> 2 -> 0), it
    /// is right on none (0%).
    #[test]
    fn separable_features_are_classified_exactly() {
        let centres = [[4.0f32, 0.0], [0.0, 4.0], [-4.0, -4.0]];
        let split = |offset: f32| {
            let mut values = Vec::new();
            let mut labels = Vec::new();
            for i in 0..30 {
                let c = i % 3;
                let wobble = ((i * 7) % 5) as f32 * 0.1 - 0.2 + offset;
                values.extend([centres[c][0] + wobble, centres[c][1] - wobble]);
                labels.push(c);
            }
            CachedFeatures { values, dim: 2, labels, classes: 3 }
        };
        let device = resolve(&DeviceSpec::Cpu).unwrap();
        let config = LinearProbeConfig { epochs: 20, lr: 0.5, milestones: vec![15], batch_size: 10, weight_decay: 0.0 };
        let (train, test) = (split(0.0), split(0.05));
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(linear_probe(&train, &test, &config, &device, dir.path(), 0).unwrap(), 100.0);
        let mut rotated = test.clone();
        rotated.labels.iter_mut().for_each(|l| *l = (*l + 1) % 3);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(linear_probe(&train, &rotated, &config, &device, dir.path(), 0).unwrap(), 0.0);
    }
}

//! Online Hinton KD from frozen teachers (Hinton, Vinyals & Dean, 2015, §2; as prune-then-distill
//! runs it, Park & No, ECCV 2022, §4):
//! `L = alpha T^2 KL(p_t || softmax(z_s / T)) + (1 - alpha) CE(z_s, y)`, `p_t` the teachers' mean
//! `softmax(z_t / T)`. With logit standardisation (Sun et al., CVPR 2024, §3.2) both sides'
//! logits are z-scored before the temperature; the cross-entropy keeps the raw logits.

use super::{DistillMethod, MethodRun, Trained, positive_temperature, set_if};
use crate::distill::objective::DistillLoss;
use crate::shared::profiles::Profile;
use crate::shared::teachers::Teachers;
use anyhow::Result;
use burn::tensor::{Device, Tensor};
use kd_common::losses::{kd_loss, standardize_logits};
use kd_common::train::upload;
use kd_datasets::Batch;
use std::path::PathBuf;

/// Online Hinton KD.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kd {
    /// Teacher checkpoints (an ensemble averages their softmax at T).
    pub teachers: Vec<PathBuf>,
    /// Weight of the distillation term.
    pub alpha: f32,
    /// Softmax temperature T.
    pub temperature: f32,
    /// Z-score the logits before the temperature (logit standardisation).
    #[serde(default)]
    pub logit_standardization: bool,
}

/// `kd-distill kd` flags.
#[derive(clap::Args, Debug)]
pub struct KdFlags {
    /// Teacher checkpoint; repeat for an ensemble (average of softmax probabilities).
    #[arg(long = "teacher")]
    pub teachers: Vec<PathBuf>,
    /// Weight of the distillation term (default 0.9; prune-then-distill's CIFAR-100 runs: 0.95).
    #[arg(long)]
    pub alpha: Option<f32>,
    /// Temperature T (default 4; prune-then-distill's CIFAR-100 runs: 10).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Z-score student and teacher logits before the temperature (Sun et al., CVPR 2024).
    #[arg(long)]
    pub logit_standardization: bool,
}

/// The loss of [`Kd`].
pub struct KdLoss {
    /// Weight of the distillation term.
    pub alpha: f32,
    /// Temperature.
    pub temperature: f32,
    /// Z-score the student's logits in the KL term (the teachers' are z-scored by the targets).
    pub standardize: bool,
}

impl DistillLoss for KdLoss {
    fn loss(&self, student: Tensor<2>, teacher_probs: Tensor<2>, batch: &Batch, device: &Device) -> kd_common::Result<Tensor<1>> {
        let labels = upload::labels(batch, device)?;
        if !self.standardize {
            return Ok(kd_loss(student, teacher_probs, labels, self.alpha, self.temperature));
        }
        // alpha T^2 KL on the standardised logits, (1 - alpha) CE on the raw ones.
        let soft = kd_loss(standardize_logits(student.clone()), teacher_probs, labels.clone(), 1.0, self.temperature);
        let hard = kd_common::losses::cross_entropy_with_smoothing(student, labels, 0.0);
        Ok(soft.mul_scalar(self.alpha).add(hard.mul_scalar(1.0 - self.alpha)))
    }
}

impl DistillMethod for Kd {
    type Flags = KdFlags;
    const NAME: &'static str = "kd";

    /// Hinton KD as the CIFAR benchmarks run it (Tian et al., CRD, ICLR 2020, §4: T 4, 0.9 on
    /// the KL term). prune-then-distill's T 10 flattens a 10-class target almost to uniform.
    fn defaults(_profile: Profile, _flags: &KdFlags) -> Self {
        Self { teachers: vec![], alpha: 0.9, temperature: 4.0, logit_standardization: false }
    }

    fn apply(&mut self, flags: &KdFlags) {
        if !flags.teachers.is_empty() {
            self.teachers = flags.teachers.clone();
        }
        set_if(&mut self.alpha, &flags.alpha);
        set_if(&mut self.temperature, &flags.temperature);
        self.logit_standardization |= flags.logit_standardization;
    }

    fn teachers(&self) -> &[PathBuf] {
        &self.teachers
    }

    fn validate(&self, _epochs: usize) -> Result<(), String> {
        if self.teachers.is_empty() {
            return Err("kd needs at least one --teacher".into());
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(format!("alpha must be in [0, 1], got {}", self.alpha));
        }
        positive_temperature(self.temperature)
    }

    fn train(&self, run: &MethodRun, teachers: Teachers) -> Result<Trained> {
        let standardize = self.logit_standardization;
        let loss = KdLoss { alpha: self.alpha, temperature: self.temperature, standardize };
        run.fit_online(loss, self.temperature, standardize, teachers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::softmax;
    use kd_common::losses::test_support::{STUDENT, TEACHER, check_gradient, value};
    use crate::distill::methods::labelled;

    /// With standardisation, against Python's `math` module on the shared inputs (labels
    /// [2, 0], T 2, alpha 0.9; z-scores with the unbiased standard deviation, the KL on them and
    /// the cross-entropy on the raw logits): 1.221639367148912. Without it the loss is
    /// `kd_loss`'s (tested there).
    #[test]
    fn standardised_kd_matches_independent_value() {
        let device = Device::default();
        let teacher = softmax(standardize_logits(value(&device, TEACHER)).div_scalar(2.0), 1);
        let loss = KdLoss { alpha: 0.9, temperature: 2.0, standardize: true };
        let value: f32 = loss.loss(value(&device, STUDENT), teacher, &labelled(vec![2, 0]), &device).unwrap().into_scalar();
        assert!((value - 1.221_639_4).abs() < 1e-5, "{value}");
    }

    #[test]
    fn standardised_gradient_matches_finite_differences() {
        check_gradient(|zs, device| {
            let teacher = softmax(standardize_logits(value(device, TEACHER)).div_scalar(2.0), 1);
            let loss = KdLoss { alpha: 0.9, temperature: 2.0, standardize: true };
            loss.loss(zs, teacher, &labelled(vec![2, 0]), device).unwrap()
        });
    }
}

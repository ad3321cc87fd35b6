//! DKD (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022, §3.2): the KD loss split
//! into a target-class term and a non-target-class term that are weighted apart,
//! `L = CE(z_s, y) + w(e) T^2 (alpha TCKD + beta NCKD)` with
//! `TCKD = KL(b_t || b_s)`, `b = [p_y, 1 - p_y]` the binary target/non-target split of
//! `p = softmax(z / T)`, and `NCKD = KL(p^_t || p^_s)`, `p^` the distribution over the non-target
//! classes alone (`p_c / (1 - p_y)`, `c != y`), both averaged over the batch. `w(e) =
//! min((e + 1) / warmup, 1)` ramps the KD term in over the first `warmup` epochs (the paper's
//! code, epoch `e` counted from 0). With logit standardisation (Sun et al., CVPR 2024, §3.2) both
//! sides' logits are z-scored before `/ T`; the cross-entropy keeps the raw logits.

use super::{DistillMethod, MethodRun, Trained, non_negative_weight, positive_temperature, set_if};
use crate::distill::objective::DistillLoss;
use crate::shared::profiles::Profile;
use crate::shared::teachers::Teachers;
use anyhow::Result;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor};
use kd_common::losses::{cross_entropy_with_smoothing, standardize_logits};
use kd_common::train::{StepInfo, upload};
use kd_datasets::Batch;
use std::path::PathBuf;

/// Decoupled KD.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dkd {
    /// Teacher checkpoints (an ensemble averages their softmax at T).
    pub teachers: Vec<PathBuf>,
    /// Weight of the target-class term TCKD.
    pub alpha: f32,
    /// Weight of the non-target-class term NCKD.
    pub beta: f32,
    /// Softmax temperature T.
    pub temperature: f32,
    /// Epochs over which the KD term's weight ramps up linearly (0: none).
    pub warmup_epochs: usize,
    /// Z-score the logits before the temperature (logit standardisation).
    #[serde(default)]
    pub logit_standardization: bool,
}

/// `kd-distill dkd` flags.
#[derive(clap::Args, Debug)]
pub struct DkdFlags {
    /// Teacher checkpoint; repeat for an ensemble (average of softmax probabilities).
    #[arg(long = "teacher")]
    pub teachers: Vec<PathBuf>,
    /// Weight of the target-class term (default 1).
    #[arg(long)]
    pub alpha: Option<f32>,
    /// Weight of the non-target-class term (default 8, the paper's CIFAR-100 value; ImageNet 0.5).
    #[arg(long)]
    pub beta: Option<f32>,
    /// Temperature T (default 4; the paper's ImageNet runs: 1).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Epochs over which the KD term ramps up (default 20 in the full preset, 1 in quick, 8 in converged).
    #[arg(long)]
    pub warmup_epochs: Option<usize>,
    /// Z-score student and teacher logits before the temperature (Sun et al., CVPR 2024).
    #[arg(long)]
    pub logit_standardization: bool,
}

/// `T^2 (alpha TCKD + beta NCKD)` of `student` logits `[B, C]` against `teacher_probs`
/// (`softmax(z_t / T)`, `[B, C]`) for the true classes `labels` `[B]`.
pub fn dkd_term(
    student: Tensor<2>,
    teacher_probs: Tensor<2>,
    labels: Tensor<1, Int>,
    alpha: f32,
    beta: f32,
    temperature: f32,
) -> Tensor<1> {
    let classes = student.dims()[1];
    let target = labels.one_hot::<2>(classes).float();
    let other = target.clone().neg().add_scalar(1.0);
    let log = |p: Tensor<2>| p.clamp_min(1e-30).log();
    let p_s = softmax(student.clone().div_scalar(temperature), 1);
    let (s_target, s_other) = (p_s.clone().mul(target.clone()).sum_dim(1), p_s.mul(other.clone()).sum_dim(1));
    let t_target = teacher_probs.clone().mul(target.clone()).sum_dim(1);
    let t_other = teacher_probs.clone().mul(other.clone()).sum_dim(1);
    let tckd = t_target.clone().mul(log(t_target).sub(log(s_target)))
        + t_other.clone().mul(log(t_other.clone()).sub(log(s_other)));
    // The non-target distributions: the teacher's renormalised, the student's as the paper's code
    // computes it (the target logit pushed to -1000 before the log-softmax).
    let q_t = teacher_probs.mul(other).div(t_other.clamp_min(1e-30));
    let log_q_s = log_softmax(student.div_scalar(temperature).sub(target.mul_scalar(1000.0)), 1);
    let nckd = q_t.clone().mul(log(q_t).sub(log_q_s)).sum_dim(1);
    let per_row = tckd.mul_scalar(alpha) + nckd.mul_scalar(beta);
    per_row.mean().mul_scalar(temperature * temperature)
}

/// The loss of [`Dkd`], with its warm-up weight.
pub struct DkdLoss {
    /// TCKD weight.
    pub alpha: f32,
    /// NCKD weight.
    pub beta: f32,
    /// Temperature.
    pub temperature: f32,
    /// Warm-up epochs.
    pub warmup_epochs: usize,
    /// Z-score the student's logits (the teachers' are z-scored by the targets).
    pub standardize: bool,
    /// The KD term's current weight `w(e)`.
    pub weight: f32,
}

impl DkdLoss {
    /// `w(e) = min((e + 1) / warmup, 1)`.
    fn warmup_weight(&self, epoch: usize) -> f32 {
        if self.warmup_epochs == 0 { 1.0 } else { ((epoch + 1) as f32 / self.warmup_epochs as f32).min(1.0) }
    }
}

impl DistillLoss for DkdLoss {
    fn loss(&self, student: Tensor<2>, teacher_probs: Tensor<2>, batch: &Batch, device: &Device) -> kd_common::Result<Tensor<1>> {
        let labels = upload::labels(batch, device)?;
        let ce = cross_entropy_with_smoothing(student.clone(), labels.clone(), 0.0);
        let student = if self.standardize { standardize_logits(student) } else { student };
        let kd = dkd_term(student, teacher_probs, labels, self.alpha, self.beta, self.temperature);
        Ok(ce + kd.mul_scalar(self.weight))
    }

    fn before_step(&mut self, info: &StepInfo) {
        self.weight = self.warmup_weight(info.epoch);
    }
}

impl DistillMethod for Dkd {
    type Flags = DkdFlags;
    const NAME: &'static str = "dkd";

    /// The paper's CIFAR-100 setting (alpha 1, beta 8, T 4, 20 warm-up epochs of 240); the quick
    /// preset's 5 epochs warm up over 1, the converged preset's 40 over 8.
    fn defaults(profile: Profile, _flags: &DkdFlags) -> Self {
        let warmup_epochs = profile.epochs(1, 20);
        Self { teachers: vec![], alpha: 1.0, beta: 8.0, temperature: 4.0, warmup_epochs, logit_standardization: false }
    }

    fn apply(&mut self, flags: &DkdFlags) {
        if !flags.teachers.is_empty() {
            self.teachers = flags.teachers.clone();
        }
        set_if(&mut self.alpha, &flags.alpha);
        set_if(&mut self.beta, &flags.beta);
        set_if(&mut self.temperature, &flags.temperature);
        set_if(&mut self.warmup_epochs, &flags.warmup_epochs);
        self.logit_standardization |= flags.logit_standardization;
    }

    fn teachers(&self) -> &[PathBuf] {
        &self.teachers
    }

    fn validate(&self, _epochs: usize) -> Result<(), String> {
        if self.teachers.is_empty() {
            return Err("dkd needs at least one --teacher".into());
        }
        non_negative_weight("alpha", self.alpha)?;
        non_negative_weight("beta", self.beta)?;
        positive_temperature(self.temperature)
    }

    fn train(&self, run: &MethodRun, teachers: Teachers) -> Result<Trained> {
        let standardize = self.logit_standardization;
        let loss = DkdLoss {
            alpha: self.alpha,
            beta: self.beta,
            temperature: self.temperature,
            warmup_epochs: self.warmup_epochs,
            standardize,
            weight: 1.0,
        };
        run.fit_online(loss, self.temperature, standardize, teachers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::methods::labelled;
    use kd_common::losses::test_support::{STUDENT, TEACHER, check_gradient, probs, value};

    fn labels(device: &Device) -> Tensor<1, Int> {
        Tensor::from_data([2i64, 0], device)
    }

    /// Computed independently with Python's `math` module on the shared inputs (labels [2, 0],
    /// T 2): per row `b = [p_y, 1 - p_y]` and the renormalised non-target probabilities, the two
    /// KLs summed over the rows and divided by 2, times T^2: TCKD 0.6292935320259014, NCKD
    /// 0.6543462091450051; alpha 1, beta 8: 5.864063205185942.
    #[test]
    fn matches_independent_values() {
        let device = Device::default();
        let term = |a, b| -> f32 {
            dkd_term(value(&device, STUDENT), probs(&device, TEACHER, 2.0), labels(&device), a, b, 2.0).into_scalar()
        };
        assert!((term(1.0, 0.0) - 0.629_293_5).abs() < 1e-5, "TCKD {}", term(1.0, 0.0));
        assert!((term(0.0, 1.0) - 0.654_346_2).abs() < 1e-5, "NCKD {}", term(0.0, 1.0));
        assert!((term(1.0, 8.0) - 5.864_063).abs() < 1e-4, "{}", term(1.0, 8.0));
    }

    /// The loss adds the cross-entropy (0.9795253391882157 on the raw logits) and ramps the DKD
    /// term in: with 4 warm-up epochs its weight is 1/4 in epoch 0 and 1 from epoch 3 on.
    #[test]
    fn warmup_ramps_the_kd_term() {
        let device = Device::default();
        let mut loss = DkdLoss { alpha: 1.0, beta: 8.0, temperature: 2.0, warmup_epochs: 4, standardize: false, weight: 1.0 };
        let at = |loss: &mut DkdLoss, epoch| -> f32 {
            loss.before_step(&StepInfo { step: 1, epoch, total_steps: 10, lr: 0.1 });
            loss.loss(value(&device, STUDENT), probs(&device, TEACHER, 2.0), &labelled(vec![2, 0]), &device)
                .unwrap()
                .into_scalar()
        };
        assert!((at(&mut loss, 0) - (0.979_525_3 + 5.864_063 / 4.0)).abs() < 1e-4);
        assert!((at(&mut loss, 3) - (0.979_525_3 + 5.864_063)).abs() < 1e-4);
        assert!((at(&mut loss, 9) - (0.979_525_3 + 5.864_063)).abs() < 1e-4);
    }

    /// With standardisation on both sides (Python, z-scores with the unbiased standard deviation):
    /// alpha 1, beta 8, T 2 gives 8.79977855317657.
    #[test]
    fn standardised_matches_independent_value() {
        let device = Device::default();
        let teacher = softmax(standardize_logits(value(&device, TEACHER)).div_scalar(2.0), 1);
        let student = standardize_logits(value(&device, STUDENT));
        let v: f32 = dkd_term(student, teacher, labels(&device), 1.0, 8.0, 2.0).into_scalar();
        assert!((v - 8.799_778).abs() < 1e-4, "{v}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(|zs, device| dkd_term(zs, probs(device, TEACHER, 2.0), labels(device), 1.0, 8.0, 2.0));
        check_gradient(|zs, device| {
            let loss = DkdLoss { alpha: 1.0, beta: 8.0, temperature: 2.0, warmup_epochs: 0, standardize: true, weight: 1.0 };
            let teacher = softmax(standardize_logits(value(device, TEACHER)).div_scalar(2.0), 1);
            loss.loss(zs, teacher, &labelled(vec![2, 0]), device).unwrap()
        });
    }
}

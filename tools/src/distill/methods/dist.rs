//! DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022, §3.3):
//! instead of matching probabilities exactly, match their relations with the Pearson correlation
//! `rho(u, v) = cov(u, v) / (std(u) std(v))`. With `Y_s = softmax(Z_s / T)`, `Y_t` the teachers'
//! `[B, C]` probabilities at T:
//! inter-class `L_inter = 1 - 1/B sum_i rho(Y_s[i, :], Y_t[i, :])` (each sample's ranking of the
//! classes), intra-class `L_intra = 1 - 1/C sum_j rho(Y_s[:, j], Y_t[:, j])` (each class's
//! ranking of the samples), and `L = CE(z_s, y) + T^2 (beta L_inter + gamma L_intra)`.
//! The intra-class term needs batches of more than one image.

use super::{DistillMethod, MethodRun, Trained, non_negative_weight, positive_temperature, set_if};
use crate::distill::objective::DistillLoss;
use crate::shared::profiles::Profile;
use crate::shared::teachers::Teachers;
use anyhow::Result;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use kd_common::losses::cross_entropy_with_smoothing;
use kd_common::train::upload;
use kd_datasets::Batch;
use std::path::PathBuf;

/// Guards the correlation of a constant row, as the paper's code does.
const EPS: f32 = 1e-8;

/// DIST.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dist {
    /// Teacher checkpoints (an ensemble averages their softmax at T).
    pub teachers: Vec<PathBuf>,
    /// Weight of the inter-class relation.
    pub beta: f32,
    /// Weight of the intra-class relation.
    pub gamma: f32,
    /// Softmax temperature T.
    pub temperature: f32,
}

/// `kd-distill dist` flags.
#[derive(clap::Args, Debug)]
pub struct DistFlags {
    /// Teacher checkpoint; repeat for an ensemble (average of softmax probabilities).
    #[arg(long = "teacher")]
    pub teachers: Vec<PathBuf>,
    /// Weight of the inter-class relation (default 1).
    #[arg(long)]
    pub beta: Option<f32>,
    /// Weight of the intra-class relation (default 1).
    #[arg(long)]
    pub gamma: Option<f32>,
    /// Temperature T (default 4; the paper's ImageNet runs: 1).
    #[arg(long)]
    pub temperature: Option<f32>,
}

/// Pearson correlation of each row of `a` with the same row of `b`, `[rows, 1]`.
fn row_correlation(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let a = a.clone().sub(a.mean_dim(1));
    let b = b.clone().sub(b.mean_dim(1));
    // sqrt(sum + EPS^2): the norm of an all-zero centred row (a uniform distribution, or a
    // one-image batch's columns) has a finite gradient, as PyTorch's `norm` gives it.
    let norm = |x: Tensor<2>| x.powi_scalar(2).sum_dim(1).add_scalar(EPS * EPS).sqrt();
    a.clone().mul(b.clone()).sum_dim(1).div(norm(a).mul(norm(b)).add_scalar(EPS))
}

/// `T^2 (beta L_inter + gamma L_intra)` of `student` logits against `teacher_probs` at T.
pub fn dist_term(student: Tensor<2>, teacher_probs: Tensor<2>, beta: f32, gamma: f32, temperature: f32) -> Tensor<1> {
    let p_s = softmax(student.div_scalar(temperature), 1);
    let inter = row_correlation(p_s.clone(), teacher_probs.clone()).mean().neg().add_scalar(1.0);
    let intra = row_correlation(p_s.transpose(), teacher_probs.transpose()).mean().neg().add_scalar(1.0);
    (inter.mul_scalar(beta) + intra.mul_scalar(gamma)).mul_scalar(temperature * temperature)
}

/// The loss of [`Dist`].
pub struct DistLoss {
    /// Inter-class weight.
    pub beta: f32,
    /// Intra-class weight.
    pub gamma: f32,
    /// Temperature.
    pub temperature: f32,
}

impl DistillLoss for DistLoss {
    fn loss(&self, student: Tensor<2>, teacher_probs: Tensor<2>, batch: &Batch, device: &Device) -> kd_common::Result<Tensor<1>> {
        let ce = cross_entropy_with_smoothing(student.clone(), upload::labels(batch, device)?, 0.0);
        Ok(ce + dist_term(student, teacher_probs, self.beta, self.gamma, self.temperature))
    }
}

impl DistillMethod for Dist {
    type Flags = DistFlags;
    const NAME: &'static str = "dist";

    fn defaults(_profile: Profile, _flags: &DistFlags) -> Self {
        Self { teachers: vec![], beta: 1.0, gamma: 1.0, temperature: 4.0 }
    }

    fn apply(&mut self, flags: &DistFlags) {
        if !flags.teachers.is_empty() {
            self.teachers = flags.teachers.clone();
        }
        set_if(&mut self.beta, &flags.beta);
        set_if(&mut self.gamma, &flags.gamma);
        set_if(&mut self.temperature, &flags.temperature);
    }

    fn teachers(&self) -> &[PathBuf] {
        &self.teachers
    }

    fn validate(&self, _epochs: usize) -> Result<(), String> {
        if self.teachers.is_empty() {
            return Err("dist needs at least one --teacher".into());
        }
        non_negative_weight("beta", self.beta)?;
        non_negative_weight("gamma", self.gamma)?;
        positive_temperature(self.temperature)
    }

    fn train(&self, run: &MethodRun, teachers: Teachers) -> Result<Trained> {
        let loss = DistLoss { beta: self.beta, gamma: self.gamma, temperature: self.temperature };
        run.fit_online(loss, self.temperature, false, teachers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::methods::labelled;
    use kd_common::losses::test_support::check_gradient_at;

    const STUDENT4: [[f32; 3]; 4] = [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0], [2.0, -1.0, 0.5], [0.3, 0.9, -0.4]];
    const TEACHER4: [[f32; 3]; 4] = [[3.0, 1.0, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 2.0], [-1.0, 2.0, 0.5]];

    fn teacher(device: &Device) -> Tensor<2> {
        softmax(Tensor::<2>::from_data(TEACHER4, device).div_scalar(2.0), 1)
    }

    /// Computed independently with Python's `math` module (softmax at T 2, the Pearson
    /// correlation as centred cosine with eps 1e-8 in the denominator, rows for inter, columns
    /// for intra): T^2 L_inter = 5.004421491101228, T^2 L_intra = 4.348048938268651;
    /// beta 1, gamma 2: 13.70051936763853.
    #[test]
    fn matches_independent_values() {
        let device = Device::default();
        let term = |b, g| -> f32 {
            dist_term(Tensor::from_data(STUDENT4, &device), teacher(&device), b, g, 2.0).into_scalar()
        };
        assert!((term(1.0, 0.0) - 5.004_421_5).abs() < 1e-4, "inter {}", term(1.0, 0.0));
        assert!((term(0.0, 1.0) - 4.348_049).abs() < 1e-4, "intra {}", term(0.0, 1.0));
        assert!((term(1.0, 2.0) - 13.700_519).abs() < 1e-3, "{}", term(1.0, 2.0));
    }

    /// A one-image batch (every column of the intra-class term constant) gives a finite loss and
    /// a finite gradient.
    #[test]
    fn a_single_image_batch_has_finite_gradients() {
        let device = Device::default().autodiff();
        let z = Tensor::<2>::from_data([[1.0f32, 2.0, 3.0]], &device).require_grad();
        let t = softmax(Tensor::<2>::from_data([[3.0f32, 1.0, 0.0]], &device), 1);
        let loss = DistLoss { beta: 1.0, gamma: 1.0, temperature: 4.0 }.loss(z.clone(), t, &labelled(vec![2]), &device);
        let loss = loss.unwrap();
        let grad: Vec<f32> = z.grad(&loss.clone().backward()).unwrap().into_data().try_to_vec().unwrap();
        assert!(loss.into_scalar::<f32>().is_finite() && grad.iter().all(|g| g.is_finite()), "{grad:?}");
    }

    /// A student whose probabilities equal the teacher's has perfect correlation: only the
    /// cross-entropy is left.
    #[test]
    fn identical_relations_cost_nothing() {
        let device = Device::default();
        let z = Tensor::<2>::from_data(TEACHER4, &device);
        let v: f32 = dist_term(z, teacher(&device), 1.0, 1.0, 2.0).into_scalar();
        assert!(v.abs() < 1e-5, "{v}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient_at(STUDENT4, |zs, device| {
            DistLoss { beta: 1.0, gamma: 2.0, temperature: 2.0 }
                .loss(zs, teacher(device), &labelled(vec![2, 0, 1, 1]), device)
                .unwrap()
        });
    }
}

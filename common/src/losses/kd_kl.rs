//! Hinton knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
//! Network", 2015, §2):
//! `L = alpha * T^2 * KL(p_t || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)`,
//! with `p_t = softmax(z_t / T)` (or an ensemble's average of them) and the KL averaged over the
//! batch. The T^2 factor keeps gradient magnitudes comparable across temperatures.
//! prune-then-distill uses alpha = 0.95, T = 10 (Park & No, prune-then-distill, ECCV 2022, §4).

use super::cross_entropy::cross_entropy_with_smoothing;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Batch-mean `KL(p_t || softmax(z_s / T))`.
///
/// # Shapes
/// - student_logits: `[B, C]`
/// - teacher_probs: `[B, C]`, rows summing to 1 (already at temperature T)
/// - output: `[1]`
pub fn kl_to_teacher(student_logits: Tensor<2>, teacher_probs: Tensor<2>, temperature: f32) -> Tensor<1> {
    let log_q = log_softmax(student_logits.div_scalar(temperature), 1);
    // p * log p with 0 * log 0 = 0.
    let log_p = teacher_probs.clone().clamp_min(1e-30).log();
    teacher_probs.mul(log_p.sub(log_q)).sum_dim(1).mean()
}

/// The full Hinton loss with weight `alpha` on the distillation term.
pub fn kd_loss(
    student_logits: Tensor<2>,
    teacher_probs: Tensor<2>,
    labels: Tensor<1, Int>,
    alpha: f32,
    temperature: f32,
) -> Tensor<1> {
    let soft =
        kl_to_teacher(student_logits.clone(), teacher_probs, temperature).mul_scalar(alpha * temperature * temperature);
    if alpha >= 1.0 {
        return soft;
    }
    soft.add(cross_entropy_with_smoothing(student_logits, labels, 0.0).mul_scalar(1.0 - alpha))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::test_support::{STUDENT, TEACHER, check_gradient, probs, value};
    use burn::tensor::Device;

    /// Expected values computed independently with Python's `math` module (see
    /// `losses::test_support` for the inputs): with z_s = [[1,2,3],[0,0,1]],
    /// z_t = [[3,1,0],[0.5,0.5,0]], y = [2, 0], T = 2, alpha = 0.9:
    /// KL = 0.29030629547471765, CE = 0.9795253391882157,
    /// loss = 0.9 * 4 * KL + 0.1 * CE = 1.1430551976278052.
    #[test]
    fn matches_independent_values() {
        let device = Device::default();
        let (zs, pt) = (value(&device, STUDENT), probs(&device, TEACHER, 2.0));
        let y = Tensor::<1, Int>::from_data([2i64, 0], &device);
        let kl: f32 = kl_to_teacher(zs.clone(), pt.clone(), 2.0).into_scalar();
        assert!((kl - 0.290_306_3).abs() < 1e-5, "{kl}");
        let loss: f32 = kd_loss(zs, pt, y, 0.9, 2.0).into_scalar();
        assert!((loss - 1.143_055_2).abs() < 1e-5, "{loss}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(|zs, device| {
            let pt = probs(device, TEACHER, 2.0);
            let y = Tensor::<1, Int>::from_data([2i64, 0], device);
            kd_loss(zs, pt, y, 0.9, 2.0)
        });
    }
}

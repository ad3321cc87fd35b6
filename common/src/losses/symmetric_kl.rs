//! Symmetric KL, the loss PaddleClas's SSLD calls "JS" (`DistillationDMLLoss`;
//! Cui et al., "Beyond Self-Supervision: A Simple Yet Effective Network Distillation
//! Alternative", 2021, §3):
//! `L = mean_b 1/2 (KL(p_t || p_s) + KL(p_s || p_t))` with `p = softmax(z)`, no temperature.
//! It is Jeffreys' divergence halved, not the Jensen-Shannon divergence (see
//! [`super::jensen_shannon`]).

use burn::tensor::Tensor;
use burn::tensor::activation::{log_softmax, softmax};

/// Batch-mean symmetric KL between student logits and teacher probabilities.
///
/// # Shapes
/// - student_logits, teacher_probs: `[B, C]`
/// - output: `[1]`
pub fn symmetric_kl(student_logits: Tensor<2>, teacher_probs: Tensor<2>) -> Tensor<1> {
    let log_s = log_softmax(student_logits.clone(), 1);
    let p_s = softmax(student_logits, 1);
    let log_t = teacher_probs.clone().clamp_min(1e-30).log();
    // KL(t||s) + KL(s||t) = sum_c (p_t - p_s) (log p_t - log p_s)
    teacher_probs.sub(p_s).mul(log_t.sub(log_s)).sum_dim(1).mean().mul_scalar(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::test_support::{STUDENT, TEACHER, check_gradient, probs, value};
    use burn::tensor::Device;

    /// Python's `math` module on the shared inputs (T = 1): 1.005721195983696.
    #[test]
    fn matches_independent_value() {
        let device = Device::default();
        let loss: f32 = symmetric_kl(value(&device, STUDENT), probs(&device, TEACHER, 1.0)).into_scalar();
        assert!((loss - 1.005_721_2).abs() < 1e-5, "{loss}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(|zs, device| symmetric_kl(zs, probs(device, TEACHER, 1.0)));
    }
}

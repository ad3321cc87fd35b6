//! The Jensen-Shannon divergence (Lin, 1991): `JS(p_t, p_s) = 1/2 KL(p_t || m) + 1/2 KL(p_s || m)`
//! with `m = (p_t + p_s) / 2`, batch-mean, in nats. Offered beside SSLD's symmetric KL, which
//! PaddleClas names "JS" although it is not this divergence.

use burn::tensor::Tensor;
use burn::tensor::activation::{log_softmax, softmax};

/// Batch-mean Jensen-Shannon divergence between student logits and teacher probabilities.
///
/// # Shapes
/// - student_logits, teacher_probs: `[B, C]`
/// - output: `[1]`
pub fn jensen_shannon(student_logits: Tensor<2>, teacher_probs: Tensor<2>) -> Tensor<1> {
    let p_s = softmax(student_logits.clone(), 1);
    let log_s = log_softmax(student_logits, 1);
    let log_t = teacher_probs.clone().clamp_min(1e-30).log();
    let m = teacher_probs.clone().add(p_s.clone()).mul_scalar(0.5);
    let log_m = m.clamp_min(1e-30).log();
    let kl_t = teacher_probs.mul(log_t.sub(log_m.clone())).sum_dim(1);
    let kl_s = p_s.mul(log_s.sub(log_m)).sum_dim(1);
    kl_t.add(kl_s).mean().mul_scalar(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::test_support::{STUDENT, TEACHER, check_gradient, probs, value};
    use burn::tensor::Device;

    /// Python's `math` module on the shared inputs (T = 1): 0.2079486597776611; it is below
    /// ln 2 and below the symmetric KL of the same pair (1.0057), as it must be.
    #[test]
    fn matches_independent_value() {
        let device = Device::default();
        let loss: f32 = jensen_shannon(value(&device, STUDENT), probs(&device, TEACHER, 1.0)).into_scalar();
        assert!((loss - 0.207_948_66).abs() < 1e-5, "{loss}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(|zs, device| jensen_shannon(zs, probs(device, TEACHER, 1.0)));
    }
}

//! Logit standardisation (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR
//! 2024, §3.2): each sample's logits are z-scored before the temperature and the softmax,
//! `Z(z) = (z - mean(z)) / (std(z) + eps)`, with the unbiased standard deviation over the classes
//! and `eps = 1e-7` as in the paper's code. The student then matches the teacher's logit
//! relations rather than their magnitude, which a smaller student may not be able to reach.

use burn::tensor::Tensor;

/// Guards the division for constant logits.
const EPS: f32 = 1e-7;

/// Z-scores every row of `[B, C]` logits (`C >= 2`).
pub fn standardize_logits(logits: Tensor<2>) -> Tensor<2> {
    let classes = logits.dims()[1];
    let centered = logits.clone().sub(logits.mean_dim(1));
    let variance = centered.clone().powi_scalar(2).sum_dim(1).div_scalar(classes.saturating_sub(1).max(1) as f32);
    centered.div(variance.sqrt().add_scalar(EPS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::test_support::{STUDENT, check_gradient, value};
    use burn::tensor::{Device, TensorData, Tolerance};

    /// Rows [1, 2, 3] and [0, 0, 1] by hand: means 2 and 1/3, unbiased standard deviations 1 and
    /// sqrt(1/3) = 0.5773503; z-scores [-1, 0, 1] and [-1/3, -1/3, 2/3] / 0.5773503 =
    /// [-0.5773503, -0.5773503, 1.1547005] (NumPy: `(z - z.mean(1, keepdims=True)) /
    /// z.std(1, ddof=1, keepdims=True)` gives the same).
    #[test]
    fn matches_hand_computed_z_scores() {
        let device = Device::default();
        let z = standardize_logits(value(&device, STUDENT));
        let expected = TensorData::from([[-1.0f32, 0.0, 1.0], [-0.577_350_3, -0.577_350_3, 1.154_700_5]]);
        z.into_data().assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-5));
    }

    /// Shifting and scaling a row changes nothing: the relation of the logits is what is kept.
    #[test]
    fn invariant_to_shift_and_scale() {
        let device = Device::default();
        let z = value(&device, STUDENT);
        let moved = z.clone().mul_scalar(3.5).add_scalar(-7.0);
        standardize_logits(moved)
            .into_data()
            .assert_approx_eq::<f32>(&standardize_logits(z).into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // A weighted sum makes every output element count.
        check_gradient(|z, device| {
            let weights = value(device, [[0.3, -1.0, 2.0], [1.5, 0.2, -0.7]]);
            standardize_logits(z).mul(weights).sum()
        });
    }
}

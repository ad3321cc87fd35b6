//! MEAL V2's discriminator loss (`loss.py discriminatorLoss`; Shen & Savvides, MEAL V2, 2020, §3.1): the discriminator
//! `D` sees the batch concatenation `[student outputs; teacher outputs]` (`2B x C`) and is scored
//! with `BCEWithLogitsLoss` against targets `[1, 0]` for the B student rows and `[0, 1]` for the
//! B teacher rows:
//! `L = -(1/4B) sum_{n,k} [y_nk log sigmoid(d_nk) + (1 - y_nk) log(1 - sigmoid(d_nk))]`,
//! the mean over all `2B x 2` entries.

use burn::tensor::activation::softplus;
use burn::tensor::{Tensor, TensorData};

/// `BCEWithLogitsLoss` (mean over every entry), in the form `softplus(x) - x y` (Burn's
/// softplus is overflow-safe, and its gradient `sigmoid(x) - y` has no kink at 0).
///
/// # Shapes
/// - logits, targets: `[N, K]`
/// - output: `[1]`
pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    softplus(logits.clone(), 1.0).sub(logits.mul(targets)).mean()
}

/// The targets `[1, 0]` x `batch` then `[0, 1]` x `batch`.
pub fn discriminator_targets(batch: usize, device: &burn::tensor::Device) -> Tensor<2> {
    let mut values = Vec::with_capacity(4 * batch);
    for row in 0..2 * batch {
        let student = row < batch;
        values.extend_from_slice(&[student as u8 as f32, !student as u8 as f32]);
    }
    Tensor::from_data(TensorData::new(values, [2 * batch, 2]), device)
}

/// MEAL V2's loss given the discriminator logits of `[student; teacher]` rows (`[2B, 2]`).
pub fn discriminator_loss(logits: Tensor<2>) -> Tensor<1> {
    let batch = logits.dims()[0] / 2;
    let targets = discriminator_targets(batch, &logits.device());
    bce_with_logits(logits, targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::test_support::{STUDENT, check_gradient, value};
    use burn::tensor::Device;

    /// Independent values (Python `math`, `-(y log s(x) + (1-y) log(1 - s(x)))` per entry, then
    /// the mean): logits [[1,2,3],[0,0,1]] against targets [[1,0,1],[0,1,0]] give
    /// (0.3132616875 + 2.1269280110 + 0.0485873516 + 0.6931471806 + 0.6931471806
    /// + 1.3132616875) / 6 = 0.8647221831.
    #[test]
    fn matches_independent_value() {
        let device = Device::default();
        let targets = Tensor::<2>::from_data([[1.0f32, 0.0, 1.0], [0.0, 1.0, 0.0]], &device);
        let loss: f32 = bce_with_logits(value(&device, STUDENT), targets).into_scalar();
        assert!((loss - 0.864_722_2).abs() < 1e-5, "{loss}");
    }

    /// Rows 0 (student, target [1,0]) and 1 (teacher, target [0,1]) of logits
    /// [[2,-1],[0.5,0.5]]: entries -log s(2) = 0.1269280110, -log(1-s(-1)) = 0.3132616875,
    /// -log(1-s(0.5)) = 0.9740769842, -log s(0.5) = 0.4740769842; mean 0.4720859167.
    #[test]
    fn discriminator_targets_student_then_teacher() {
        let device = Device::default();
        let logits = Tensor::<2>::from_data([[2.0f32, -1.0], [0.5, 0.5]], &device);
        let loss: f32 = discriminator_loss(logits).into_scalar();
        assert!((loss - 0.472_085_9).abs() < 1e-5, "{loss}");
        let targets: Vec<f32> = discriminator_targets(2, &device).into_data().try_to_vec().unwrap();
        assert_eq!(targets, vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(|z, device| {
            let targets = Tensor::<2>::from_data([[1.0f32, 0.0, 1.0], [0.0, 1.0, 0.0]], device);
            bce_with_logits(z, targets)
        });
    }
}

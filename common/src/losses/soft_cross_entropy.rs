//! Soft cross-entropy: `L = -(1/B) sum_b sum_c q_bc * log softmax(z_b / T)_c`.
//!
//! The loss of FKD region-label training (FKD §3, `Soft_CrossEntropy`) and of MEAL V2's
//! similarity term; with one-hot `q` it is ordinary cross-entropy.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

/// Mean over the batch of `-sum_c targets_c * log softmax(logits / temperature)_c`.
///
/// # Shapes
/// - logits: `[B, C]`
/// - targets: `[B, C]`, rows summing to 1
/// - output: `[1]`
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>, temperature: f32) -> Tensor<1> {
    let log_p = log_softmax(logits.div_scalar(temperature), 1);
    log_p.mul(targets).sum_dim(1).mean().neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData, Tolerance};

    /// Expected values computed independently with Python's `math` module:
    /// ```python
    /// def log_softmax(z): s = math.log(sum(math.exp(v) for v in z)); return [v - s for v in z]
    /// a = log_softmax([0.5, 1, 1.5]); b = log_softmax([0, 0, 0.5])      # z / T with T = 2
    /// loss = (-sum(q * l for q, l in zip([.1, .2, .7], a)) - sum(l / 3 for l in b)) / 2
    /// # = 1.0039898866963555; gradient d loss / d z = (softmax(z / T) - q) / (T * B)
    /// ```
    #[test]
    fn matches_independent_value_and_gradient() {
        let device = Device::default().autodiff();
        let z = Tensor::<2>::from_data([[1.0f32, 2.0, 3.0], [0.0, 0.0, 1.0]], &device).require_grad();
        let q = Tensor::<2>::from_data([[0.1f32, 0.2, 0.7], [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]], &device);
        let loss = soft_cross_entropy(z.clone(), q, 2.0);
        loss.to_data().assert_approx_eq::<f32>(&TensorData::from([1.003_989_9f32]), Tolerance::absolute(1e-5));
        let grads = loss.backward();
        let g = z.grad(&grads).unwrap();
        let p1 = [0.186_323_72f32, 0.307_195_9, 0.506_480_4];
        let p2 = [0.274_068_6f32, 0.274_068_6, 0.451_862_8];
        let expected = [
            [(p1[0] - 0.1) / 4.0, (p1[1] - 0.2) / 4.0, (p1[2] - 0.7) / 4.0],
            [(p2[0] - 1.0 / 3.0) / 4.0, (p2[1] - 1.0 / 3.0) / 4.0, (p2[2] - 1.0 / 3.0) / 4.0],
        ];
        g.to_data().assert_approx_eq::<f32>(&TensorData::from(expected), Tolerance::absolute(1e-5));
    }
}

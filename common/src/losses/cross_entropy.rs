//! Cross-entropy with label smoothing (Szegedy et al., CVPR 2016, §7):
//! `L = (1 - eps) * (-log p_y) + eps * mean_c(-log p_c)`, with `p = softmax(z)`; the target is
//! `(1 - eps) * onehot(y) + eps / C`, as in PyTorch's `cross_entropy(label_smoothing=eps)`.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean smoothed cross-entropy of `logits` `[B, C]` against class indices `labels` `[B]`.
pub fn cross_entropy_with_smoothing(logits: Tensor<2>, labels: Tensor<1, Int>, epsilon: f32) -> Tensor<1> {
    let [batch, _] = logits.dims();
    let log_p = log_softmax(logits, 1);
    let nll = log_p.clone().gather(1, labels.reshape([batch, 1])).mean().neg();
    if epsilon == 0.0 {
        return nll;
    }
    let uniform = log_p.mean().neg();
    nll.mul_scalar(1.0 - epsilon).add(uniform.mul_scalar(epsilon))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData, Tolerance};

    /// Expected values computed independently with Python's `math` module:
    /// ```python
    /// a = log_softmax([1, 2, 3]); b = log_softmax([0, 0, 1]); labels 0 and 2
    /// nll = (-a[0] - b[2]) / 2                      # 1.479525339188216
    /// uniform = (-sum(a) / 3 - sum(b) / 3) / 2      # 1.312858672521549
    /// 0.9 * nll + 0.1 * uniform                     # 1.4628586725215493
    /// ```
    #[test]
    fn matches_hand_computation_and_gradient() {
        let device = Device::default().autodiff();
        let z = Tensor::<2>::from_data([[1.0f32, 2.0, 3.0], [0.0, 0.0, 1.0]], &device).require_grad();
        let y = Tensor::<1, Int>::from_data([0i64, 2], &device);
        let plain = cross_entropy_with_smoothing(z.clone(), y.clone(), 0.0);
        plain.to_data().assert_approx_eq::<f32>(&TensorData::from([1.479_525_3f32]), Tolerance::absolute(1e-5));
        let smooth = cross_entropy_with_smoothing(z.clone(), y, 0.1);
        smooth.to_data().assert_approx_eq::<f32>(&TensorData::from([1.462_858_7f32]), Tolerance::absolute(1e-5));
        // Gradient of the plain loss: (softmax(z) - onehot(y)) / B.
        let grads = plain.backward();
        let g = z.grad(&grads).unwrap();
        let p1 = [0.090_030_57f32, 0.244_728_47, 0.665_240_96];
        let p2 = [0.211_941_56f32, 0.211_941_56, 0.576_116_9];
        let expected =
            [[(p1[0] - 1.0) / 2.0, p1[1] / 2.0, p1[2] / 2.0], [p2[0] / 2.0, p2[1] / 2.0, (p2[2] - 1.0) / 2.0]];
        g.to_data().assert_approx_eq::<f32>(&TensorData::from(expected), Tolerance::absolute(1e-5));
    }
}

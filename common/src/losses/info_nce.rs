//! InfoNCE against a queue of negatives (MoCo, He et al., CVPR 2020, §3.1, Eq. 1; MoCo v2):
//! for L2-normalised queries `q_i`, their positive keys `k_i` and queued keys `Q_j`,
//! `L = -(1/B) sum_i log( exp(q_i.k_i / tau) / (exp(q_i.k_i / tau) + sum_j exp(q_i.Q_j / tau)) )`,
//! the cross-entropy of the logits `[q_i.k_i, q_i.Q_1, ..., q_i.Q_K] / tau` with class 0.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

/// `[a_i.p_i, a_i.Q_1, ..., a_i.Q_K]` for every row: the positive's similarity first, then the
/// queue's.
///
/// # Shapes
/// - anchors, positives: `[B, D]`
/// - queue: `[K, D]`
/// - output: `[B, 1 + K]`
pub fn similarity_logits(anchors: Tensor<2>, positives: Tensor<2>, queue: Tensor<2>) -> Tensor<2> {
    let positive = (anchors.clone() * positives).sum_dim(1);
    let negatives = anchors.matmul(queue.transpose());
    Tensor::cat(vec![positive, negatives], 1)
}

/// InfoNCE of queries against their keys and a queue of negatives, temperature `tau`.
///
/// # Shapes
/// - queries, keys: `[B, D]`, rows L2-normalised
/// - queue: `[K, D]`, rows L2-normalised
/// - output: `[1]`
pub fn info_nce(queries: Tensor<2>, keys: Tensor<2>, queue: Tensor<2>, tau: f32) -> Tensor<1> {
    let logits = similarity_logits(queries, keys, queue).div_scalar(tau);
    let [b, _] = logits.dims();
    log_softmax(logits, 1).slice([0..b, 0..1]).mean().neg()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_precision::{contrastive_allowance, contrastive_gradient_allowance, finite_difference_device};
    use burn::tensor::{Device, TensorData, Tolerance};

    /// Unit vectors of the SEED and InfoNCE tests: normalise([1, 2]), normalise([-1, 0.5]) (the
    /// student / queries), normalise([2, 1]), normalise([-1, 1]) (the teacher / keys) and the
    /// queue normalise([0, 1]), normalise([1, -1]), normalise([-2, -1]).
    pub const S: [[f32; 2]; 2] = [[0.447_213_6, 0.894_427_2], [-0.894_427_2, 0.447_213_6]];
    pub const T: [[f32; 2]; 2] = [[0.894_427_2, 0.447_213_6], [-0.707_106_77, 0.707_106_77]];
    pub const Q: [[f32; 2]; 3] = [[0.0, 1.0], [0.707_106_77, -0.707_106_77], [-0.894_427_2, -0.447_213_6]];

    /// Expected value from Python's `math` module:
    /// ```python
    /// L = [[dot(a, p)] + [dot(a, q) for q in Q] for a, p in zip(S, T)]
    /// -sum(log_softmax([v / 0.2 for v in row])[0] for row in L) / 2   # 0.593357337
    /// ```
    /// Tolerance 1e-5, plus the TF32 allowance on CUDA ([`contrastive_allowance`]).
    #[test]
    fn matches_an_independent_value() {
        let device = Device::default();
        let loss =
            info_nce(Tensor::from_data(S, &device), Tensor::from_data(T, &device), Tensor::from_data(Q, &device), 0.2);
        let tolerance = Tolerance::absolute(1e-5 + contrastive_allowance(0.2) as f32);
        loss.to_data().assert_approx_eq::<f32>(&TensorData::from([0.593_357_3f32]), tolerance);
    }

    /// Autodiff on the default device against central finite differences in the queries (step
    /// 1e-3) evaluated in f32 ([`finite_difference_device`]); tolerance 2e-3 plus the TF32
    /// allowance on CUDA ([`contrastive_gradient_allowance`]). (Exact gradient from PyTorch in
    /// f64: -1.37625, 0.84534, 0.04966, -0.35448.)
    #[test]
    fn gradient_matches_finite_differences() {
        let device = Device::default();
        let fd_device = finite_difference_device();
        let ad = device.clone().autodiff();
        let q = Tensor::<2>::from_data(S, &ad).require_grad();
        let loss = info_nce(q.clone(), Tensor::from_data(T, &ad), Tensor::from_data(Q, &ad), 0.2);
        let analytic: Vec<f32> = q.grad(&loss.backward()).unwrap().into_data().try_to_vec().unwrap();
        let f = |v: [[f32; 2]; 2]| -> f32 {
            let on = |data| Tensor::from_data(data, &fd_device);
            info_nce(on(v), on(T), Tensor::from_data(Q, &fd_device), 0.2).into_scalar()
        };
        let tolerance = 2e-3 + contrastive_gradient_allowance(0.2) as f32;
        for i in 0..4 {
            let (mut plus, mut minus) = (S, S);
            plus[i / 2][i % 2] += 1e-3;
            minus[i / 2][i % 2] -= 1e-3;
            let numeric = (f(plus) - f(minus)) / 2e-3;
            assert!((numeric - analytic[i]).abs() < tolerance, "element {i}: {} vs {numeric}", analytic[i]);
        }
    }
}

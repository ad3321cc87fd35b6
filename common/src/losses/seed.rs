//! SEED's distillation loss (Fang et al., "SEED: Self-supervised Distillation for Visual
//! Representation", ICLR 2021, §3, Eq. 3-4): for L2-normalised student and teacher embeddings
//! `s_i`, `t_i` of the same view and a queue `Q` of teacher embeddings,
//! `p_T = softmax([t_i.t_i, t_i.Q_1, ..., t_i.Q_K] / tau_T)`,
//! `L = -(1/B) sum_i sum_j p_T,ij log softmax([s_i.t_i, s_i.Q_1, ..., s_i.Q_K] / tau_S)_j`.
//! As `tau_T -> 0`, `p_T` becomes one-hot on the positive (`t_i.t_i = 1` is the largest cosine)
//! and the loss becomes InfoNCE of the student against the teacher's embedding.

use super::info_nce::similarity_logits;
use super::soft_cross_entropy;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

/// SEED loss; the teacher side carries no gradient.
///
/// # Shapes
/// - student, teacher: `[B, D]`, rows L2-normalised
/// - queue: `[K, D]` teacher embeddings, rows L2-normalised
/// - output: `[1]`
pub fn seed_loss(
    student: Tensor<2>,
    teacher: Tensor<2>,
    queue: Tensor<2>,
    tau_student: f32,
    tau_teacher: f32,
) -> Tensor<1> {
    let teacher = teacher.detach();
    let target = softmax(similarity_logits(teacher.clone(), teacher.clone(), queue.clone()).div_scalar(tau_teacher), 1);
    soft_cross_entropy(similarity_logits(student, teacher, queue), target, tau_student)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::info_nce::info_nce;
    use crate::losses::info_nce::tests::{Q, S, T};
    use crate::test_precision::{contrastive_allowance, contrastive_gradient_allowance, finite_difference_device};
    use burn::tensor::{Device, TensorData, Tolerance};

    fn loss(device: &Device, s: [[f32; 2]; 2], tau_teacher: f32) -> Tensor<1> {
        seed_loss(
            Tensor::from_data(s, device),
            Tensor::from_data(T, device),
            Tensor::from_data(Q, device),
            0.2,
            tau_teacher,
        )
    }

    /// Expected values from Python's `math` module (the vectors of the InfoNCE test):
    /// ```python
    /// zs = [[dot(s, t)] + [dot(s, q) for q in Q] for s, t in zip(S, T)]
    /// zt = [[dot(t, t)] + [dot(t, q) for q in Q] for t in T]
    /// -sum(sum(p * l for p, l in zip(softmax([v / tt for v in b]), log_softmax([v / 0.2 for v in a])))
    ///      for a, b in zip(zs, zt)) / 2     # tt = 0.5: 1.583722033; tt = 1e-4: 0.593357337
    /// ```
    /// The second equals InfoNCE at tau 0.2 (the tau_T -> 0 limit), checked against
    /// [`info_nce`] too. On CUDA the tolerances add the TF32 allowances
    /// ([`contrastive_allowance`]): the student's logits (tau 0.2) move the loss by at most theirs;
    /// the teacher's (tau 0.5) move its probabilities by at most theirs in L1, weighted by the
    /// student's log-probabilities, below 10 in magnitude for these vectors.
    #[test]
    fn matches_independent_values_and_the_info_nce_limit() {
        let device = Device::default();
        let tf32 = (contrastive_allowance(0.2) + 10.0 * contrastive_allowance(0.5)) as f32;
        let tolerance = Tolerance::absolute(1e-5 + tf32);
        loss(&device, S, 0.5).to_data().assert_approx_eq::<f32>(&TensorData::from([1.583_722f32]), tolerance);
        let limit = loss(&device, S, 1e-4);
        limit.to_data().assert_approx_eq::<f32>(&TensorData::from([0.593_357_3f32]), tolerance);
        let nce =
            info_nce(Tensor::from_data(S, &device), Tensor::from_data(T, &device), Tensor::from_data(Q, &device), 0.2);
        let same_logits = Tolerance::absolute(1e-6 + 2.0 * contrastive_allowance(0.2) as f32);
        limit.to_data().assert_approx_eq::<f32>(&nce.to_data(), same_logits);
    }

    /// Autodiff in the student embedding on the default device against central finite
    /// differences (step 1e-3) evaluated in f32 ([`finite_difference_device`]); tolerance 2e-3
    /// plus the TF32 gradient allowances of both temperatures on CUDA (the teacher's moves the
    /// target probabilities, whose gradient factor is `1 / tau_S`). (Exact gradient from PyTorch in f64:
    /// -0.78938, 1.04396, -0.45836, -0.14010.)
    #[test]
    fn gradient_matches_finite_differences() {
        let device = Device::default();
        let ad = device.clone().autodiff();
        let s = Tensor::<2>::from_data(S, &ad).require_grad();
        let l = seed_loss(s.clone(), Tensor::from_data(T, &ad), Tensor::from_data(Q, &ad), 0.2, 0.5);
        let analytic: Vec<f32> = s.grad(&l.backward()).unwrap().into_data().try_to_vec().unwrap();
        let fd_device = finite_difference_device();
        let tolerance = 2e-3 + (contrastive_gradient_allowance(0.2) + contrastive_allowance(0.5) / 0.2) as f32;
        for i in 0..4 {
            let (mut plus, mut minus) = (S, S);
            plus[i / 2][i % 2] += 1e-3;
            minus[i / 2][i % 2] -= 1e-3;
            let f = |v| loss(&fd_device, v, 0.5).into_scalar::<f32>();
            let numeric = (f(plus) - f(minus)) / 2e-3;
            assert!((numeric - analytic[i]).abs() < tolerance, "element {i}: {} vs {numeric}", analytic[i]);
        }
    }
}

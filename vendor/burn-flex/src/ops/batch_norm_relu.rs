//! Training-mode batch normalisation fused with the ReLU that follows it, forward and backward,
//! for `[N, C, ...]` tensors (f32 and f64 natively, f16 and bf16 in f32): the kernels of
//! [super::batch_norm] with ReLU applied in their elementwise passes.
//!
//! Forward: the statistics of batch norm (`μ`, biased `σ²`, per channel in f64), then
//! `z = max(y, 0)` with `y = (x - μ)·scale + β` and `scale = γ/√(σ² + ε)`, in one pass: the
//! batch-norm output `y` is never stored.
//!
//! Backward: ReLU's gate `y > 0` is recomputed from `x` with the forward's own expression and
//! its own `scale` (returned by the forward for this); `g = dz` where the gate passes and 0
//! elsewhere, then batch norm's backward on `g` (Ioffe & Szegedy, "Batch Normalization", 2015,
//! §3): `∂β = Σ g`, `∂γ = Σ g·x̂`, `dx = γ/√(σ² + ε) · (g - ∂β/M - x̂·∂γ/M)`.
//!
//! Against `relu(batch_norm_train(x))` and its two backward passes this reads the activation
//! 7 times and writes it twice per layer instead of 10 and 4. Every value is the same chain of
//! operations as in that composition, so the results are bitwise the same (tested).

use super::batch_norm::{
    Activation, batch_norm_activation_train, batch_norm_activation_train_backward,
};
use crate::FlexTensor;

/// Training-mode batch norm followed by ReLU: `(z, μ, σ², scale)`, `scale = γ/√(σ² + ε)` as the
/// forward used it (the backward needs it to recompute ReLU's gate bitwise).
pub fn batch_norm_relu_train(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> [FlexTensor; 4] {
    batch_norm_activation_train(x, gamma, beta, epsilon, Activation::Relu)
}

/// Gradients `(dx, ∂γ, ∂β)` of [batch_norm_relu_train] from its input, parameters, results and
/// the output gradient `dz`.
pub fn batch_norm_relu_train_backward(
    x: &FlexTensor,
    [gamma, beta, mean, variance, scale]: [&FlexTensor; 5],
    epsilon: f64,
    output_grad: &FlexTensor,
) -> [FlexTensor; 3] {
    batch_norm_activation_train_backward(
        x,
        [gamma, mean, variance],
        epsilon,
        Some([scale, beta]),
        output_grad,
    )
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use burn_backend::DType;
    use burn_backend::ops::{ActivationOps, ModuleOps};
    use burn_std::{Bytes, Shape};

    use super::*;
    use crate::{Flex, Layout};

    /// Deterministic pseudo-random values in [-1, 1) (a 64-bit LCG, Knuth's MMIX constants).
    fn pseudo_random(len: usize, seed: u64) -> Vec<f64> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    fn tensor_of(data: &[f64], shape: &[usize], dtype: DType) -> FlexTensor {
        let layout = Layout::contiguous(Shape::from(shape.to_vec()));
        match dtype {
            DType::F64 => FlexTensor::new(Bytes::from_elems(data.to_vec()), layout, dtype),
            _ => {
                let data: Vec<f32> = data.iter().map(|&v| v as f32).collect();
                FlexTensor::new(Bytes::from_elems(data), layout, DType::F32)
            }
        }
    }

    /// The tensor's bytes, to compare bitwise.
    fn bits(t: &FlexTensor) -> Vec<u8> {
        t.to_contiguous().bytes().to_vec()
    }

    /// Output, statistics and all three gradients are bitwise those of Flex's
    /// `relu(batch_norm_train(x))` and its two backward passes, in f32 and f64, including a
    /// channel whose γ is 0 (every output 0: no gradient passes), one that is entirely
    /// negative after the shift, and a NaN.
    #[test]
    fn fused_is_bitwise_the_composition() {
        for dtype in [DType::F32, DType::F64] {
            for shape in [[3usize, 4, 5, 7], [2, 3, 1, 1], [5, 2, 8, 8]] {
                let len: usize = shape.iter().product();
                let c = shape[1];
                let mut x = pseudo_random(len, 1);
                x[len / 2] = f64::NAN;
                let mut gamma: Vec<f64> = pseudo_random(c, 2).iter().map(|v| v + 1.5).collect();
                gamma[0] = 0.0;
                let mut beta = pseudo_random(c, 3);
                beta[c - 1] = -100.0;
                let dz = pseudo_random(len, 4);
                let [x, gamma, beta, dz] = [
                    tensor_of(&x, &shape, dtype),
                    tensor_of(&gamma, &[c], dtype),
                    tensor_of(&beta, &[c], dtype),
                    tensor_of(&dz, &shape, dtype),
                ];
                let eps = 1e-5;

                let bn = Flex::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), eps);
                let z = Flex::relu(bn.output);
                let g = Flex::relu_backward(z.clone(), dz.clone());
                let back = Flex::batch_norm_train_backward(
                    x.clone(),
                    gamma.clone(),
                    bn.mean.clone(),
                    bn.variance.clone(),
                    eps,
                    g,
                );

                let [fz, mean, var, scale] = batch_norm_relu_train(&x, &gamma, &beta, eps);
                let [dx, dgamma, dbeta] = batch_norm_relu_train_backward(
                    &x,
                    [&gamma, &beta, &mean, &var, &scale],
                    eps,
                    &dz,
                );
                let case = (dtype, shape);
                assert_eq!(bits(&fz), bits(&z), "output {case:?}");
                assert_eq!(bits(&mean), bits(&bn.mean), "mean {case:?}");
                assert_eq!(bits(&var), bits(&bn.variance), "variance {case:?}");
                assert_eq!(bits(&dx), bits(&back.x_grad), "dx {case:?}");
                assert_eq!(bits(&dgamma), bits(&back.gamma_grad), "dgamma {case:?}");
                assert_eq!(bits(&dbeta), bits(&back.beta_grad), "dbeta {case:?}");
            }
        }
    }
}

//! The arithmetic of the unit tests' default device. `make test-cuda` runs them on CUDA
//! (`BURN_DEVICE=cuda`), whose matrix and convolution kernels stage f32 operands as TF32 on
//! tensor cores (cubek's `adjust_dtypes`; PyTorch's cuDNN convolutions do the same by default):
//! both operands of a product keep 10 mantissa bits, so the product is off by up to `2^-10` of
//! its magnitude, where f32 is off by `2^-24`. Tests that assert f32 tolerances on the default
//! device widen them by the bounds below on such a device, never elsewhere.
//!
//! The bounds: a logit `<a, b> / tau` of unit vectors is off by at most
//! `e = 2^-10 sum |a_i b_i| / tau <= 2^-10 / tau` (Cauchy-Schwarz). A log-softmax moves by at most
//! `2e`. Its gradient in the embeddings, `(softmax - target) · keys / tau`, moves by the change of
//! the softmax (at most `2e` in L1) over `tau`, plus the backward product's own rounding (at most
//! `2^-10` of its terms, each at most `1 / tau`): `2^-10 (2 / tau^2 + 1 / tau)`.

use burn::tensor::Device;

/// Relative error of one TF32 product: each operand rounded to 10 mantissa bits (`2^-11` each).
pub const TF32_PRODUCT_ERROR: f64 = 1.0 / 1024.0;

/// Whether the default device may multiply f32 matrices in TF32: it is CUDA (`Device::default()`
/// is CUDA whenever the `cuda` feature is compiled in, unless `BURN_DEVICE` names another).
pub fn default_device_uses_tf32() -> bool {
    format!("{:?}", Device::default()).contains("Cuda")
}

/// The device to evaluate finite differences on: the default device, or the CPU (Flex, f32) when
/// the default device rounds to TF32, whose error in a loss (about `2^-10 / tau`) would swamp
/// the difference a 1e-3 step makes.
pub fn finite_difference_device() -> Device {
    if default_device_uses_tf32() { Device::flex() } else { Device::default() }
}

/// Extra absolute error of a contrastive loss over unit vectors at temperature `tau` on the
/// default device: 0 in f32, `2 · 2^-10 / tau` in TF32 (module docs).
pub fn contrastive_allowance(tau: f64) -> f64 {
    if default_device_uses_tf32() { 2.0 * TF32_PRODUCT_ERROR / tau } else { 0.0 }
}

/// Extra absolute error of that loss's gradient in one embedding coordinate: 0 in f32,
/// `2^-10 (2 / tau^2 + 1 / tau)` in TF32 (module docs).
pub fn contrastive_gradient_allowance(tau: f64) -> f64 {
    if default_device_uses_tf32() { TF32_PRODUCT_ERROR * (2.0 / (tau * tau) + 1.0 / tau) } else { 0.0 }
}

//! The arithmetic of the unit tests' default device. `make test-cuda` runs them on CUDA
//! (`BURN_DEVICE=cuda`), whose matrix and convolution kernels stage f32 operands as TF32 on
//! tensor cores (cubek's `adjust_dtypes`; PyTorch's cuDNN convolutions do the same by default):
//! both operands of a product keep 10 mantissa bits, so the product is off by up to `2^-10` of
//! its magnitude, where f32 is off by `2^-24`. Tests that assert f32 tolerances on the default
//! device widen them by the bounds below on such a device, never elsewhere.

use burn::tensor::Device;

/// Relative error of one TF32 product: each operand rounded to 10 mantissa bits (`2^-11` each).
pub const TF32_PRODUCT_ERROR: f64 = 1.0 / 1024.0;

/// Whether the default device may multiply f32 matrices in TF32 (it is CUDA).
pub fn default_device_uses_tf32() -> bool {
    std::env::var("BURN_DEVICE").is_ok_and(|name| name.trim().to_ascii_lowercase().starts_with("cuda"))
}

/// The device to evaluate finite differences on: the default device, or the CPU (Flex, f32) when
/// the default device rounds to TF32, whose error in a loss (about `2^-10 / tau`) would swamp
/// the difference a 1e-3 step makes.
pub fn finite_difference_device() -> Device {
    if default_device_uses_tf32() { Device::flex() } else { Device::default() }
}

/// Extra absolute error of a contrastive loss or of its gradient over unit vectors at
/// temperature `tau` on the default device: 0 in f32; in TF32 each logit `<a, b> / tau` is off by
/// at most `2^-10 sum |a_i b_i| / tau <= 2^-10 / tau` (Cauchy-Schwarz), and a log-softmax moves
/// by at most twice its largest logit error.
pub fn contrastive_allowance(tau: f64) -> f64 {
    if default_device_uses_tf32() { 2.0 * TF32_PRODUCT_ERROR / tau } else { 0.0 }
}

//! Building blocks shared by the model zoo: convolution + batch norm, pooling helpers.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

/// He (Kaiming) normal initialisation with fan-out, as torchvision initialises ResNet convs.
fn kaiming_fan_out() -> Initializer {
    Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: true }
}

/// A bias-free `k x k` convolution with "same" padding for odd `k`.
pub fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, groups: usize, device: &Device) -> Conv2d {
    let pad = k / 2;
    Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_groups(groups)
        .with_bias(false)
        .with_initializer(kaiming_fan_out())
        .init(device)
}

/// Batch norm with PyTorch's defaults (eps 1e-5, momentum 0.1).
pub fn bn(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).init(device)
}

/// The classifier layer: PyTorch's default `nn.Linear` initialisation.
pub fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out).init(device)
}

/// Convolution followed by batch norm (no activation): the unit every model here repeats.
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution (`*.conv.weight`).
    pub conv: Conv2d,
    /// Its batch norm (`*.bn.weight`, `*.bn.running_mean`, ...).
    pub bn: BatchNorm,
}

impl ConvBn {
    /// A `k x k` convolution with `groups` groups and its batch norm.
    pub fn new(c_in: usize, c_out: usize, k: usize, stride: usize, groups: usize, device: &Device) -> Self {
        Self { conv: conv(c_in, c_out, k, stride, groups, device), bn: bn(c_out, device) }
    }

    /// `bn(conv(x))`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }
}

#[cfg(feature = "flex-fused")]
pub use super::batch_norm_relu::batch_norm_relu;

/// `relu(bn.forward(x))` (fused on Flex while training, with the `flex-fused` feature).
#[cfg(not(feature = "flex-fused"))]
pub fn batch_norm_relu(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    burn::tensor::activation::relu(bn.forward(x))
}

/// Global average pooling: `[B, C, H, W] -> [B, C]`.
pub fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
}

/// 2x2 max pooling with stride 2; a map already 1 pixel tall or wide is passed through, so deep
/// plans also run on small inputs (VGG's five pools on 28x28 Fashion-MNIST).
pub fn max_pool_2x2(x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if h < 2 || w < 2 {
        return x;
    }
    burn::tensor::module::max_pool2d(x, burn::tensor::ops::MaxPoolOptions::new([2, 2]))
}

/// Scales a channel count by a width multiplier, keeping at least one channel.
pub fn scaled(channels: usize, width: f32) -> usize {
    ((channels as f32 * width).round() as usize).max(1)
}

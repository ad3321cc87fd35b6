//! A small, fast CNN for quick runs on a CPU: three 3x3 conv + BN + ReLU stages (32, 64, 128
//! channels times a width multiplier) with 2x2 max pooling after the first two, global average
//! pooling and a linear classifier (about 94 k parameters at width 1 with 10 classes).
//! Tensor names: `conv1.conv.weight`, `conv2.bn.running_mean`, `fc.weight`.

use super::head::{self, Head, HeadSpec};
use super::layers::{ConvBn, global_avg_pool, max_pool_2x2, scaled};
use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Three conv stages and a linear head.
#[derive(Module, Debug)]
pub struct SmallCnn {
    conv1: ConvBn,
    conv2: ConvBn,
    conv3: ConvBn,
    fc: Option<Head>,
}

impl SmallCnn {
    /// Builds the network with widths `[32, 64, 128] * width`.
    pub fn new(
        width: f32,
        channels: Option<&[usize]>,
        in_channels: usize,
        num_classes: usize,
        head: HeadSpec,
        device: &Device,
    ) -> Self {
        let [c1, c2, c3] = match channels {
            Some(&[c1, c2, c3]) => [c1, c2, c3],
            _ => [32, 64, 128].map(|c| scaled(c, width)),
        };
        Self {
            conv1: ConvBn::new(in_channels, c1, 3, 1, 1, device),
            conv2: ConvBn::new(c1, c2, 3, 1, 1, device),
            conv3: ConvBn::new(c2, c3, 3, 1, 1, device),
            fc: head.init(c3, num_classes, device),
        }
    }

    /// Pooled embedding: `[B, C_in, H, W] -> [B, 128 * width]`.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = max_pool_2x2(relu(self.conv1.forward(x)));
        let x = max_pool_2x2(relu(self.conv2.forward(x)));
        global_avg_pool(relu(self.conv3.forward(x)))
    }

    /// Logits: `[B, C_in, H, W] -> [B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        head::apply(&self.fc, self.forward_features(x))
    }
}

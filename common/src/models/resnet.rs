//! CIFAR-style ResNet-(6n+2): He et al., "Deep Residual Learning for Image Recognition",
//! CVPR 2016, §4.2. A 3x3 stem with 16 channels, three stages of `n` basic blocks with 16, 32 and
//! 64 channels (times a width multiplier), stride 2 at the start of stages 2 and 3, global
//! average pooling and a linear classifier. ResNet-20/32/44/56/110 have n = 3/5/7/9/18.
//!
//! Shortcuts where the shape changes follow the paper's option A by default (identity on every
//! second pixel, zero-padded channels: no parameters, 0.27 M parameters for ResNet-20); option B
//! (`shortcut = "conv"`: 1x1 convolution + BN, torchvision's `downsample.0/1`) is available.
//! Tensor names follow torchvision: `conv1.weight`, `layer1.0.bn1.running_mean`, `fc.weight`.

use super::head::{self, Head, HeadSpec};
use super::layers::{batch_norm_relu, bn, conv, global_avg_pool, scaled};
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, s};

/// How a block's shortcut changes resolution and width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Shortcut {
    /// Option A: subsample by 2 and zero-pad the new channels (parameter-free, the paper's CIFAR choice).
    #[default]
    Pad,
    /// Option B: 1x1 strided convolution + batch norm.
    Conv,
}

/// One part of a projection shortcut; a `Vec` of them gives torchvision's `downsample.0` (conv)
/// and `downsample.1` (batch norm) names.
#[derive(Module, Debug)]
pub enum DownsamplePart {
    /// The 1x1 convolution.
    Conv(Conv2d),
    /// Its batch norm.
    Norm(BatchNorm),
}

/// Two 3x3 convolutions with a residual connection.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    /// Projection shortcut (option B); empty for identity or option A.
    downsample: Vec<DownsamplePart>,
    /// Stride of the block (2 where a stage starts, else 1).
    stride: usize,
    /// Channels added by zero padding in an option-A shortcut.
    pad_channels: usize,
}

impl BasicBlock {
    fn new(c_in: usize, inner: usize, c_out: usize, stride: usize, shortcut: Shortcut, device: &Device) -> Self {
        let reshaped = stride != 1 || c_in != c_out;
        let downsample = if reshaped && shortcut == Shortcut::Conv {
            vec![DownsamplePart::Conv(conv(c_in, c_out, 1, stride, 1, device)), DownsamplePart::Norm(bn(c_out, device))]
        } else {
            Vec::new()
        };
        let pad_channels = if reshaped && shortcut == Shortcut::Pad { c_out - c_in.min(c_out) } else { 0 };
        Self {
            conv1: conv(c_in, inner, 3, stride, 1, device),
            bn1: bn(inner, device),
            conv2: conv(inner, c_out, 3, 1, 1, device),
            bn2: bn(c_out, device),
            downsample,
            stride,
            pad_channels,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = batch_norm_relu(&self.bn1, self.conv1.forward(x.clone()));
        let out = self.bn2.forward(self.conv2.forward(out));
        relu(out + self.shortcut(x))
    }

    fn shortcut(&self, x: Tensor<4>) -> Tensor<4> {
        if !self.downsample.is_empty() {
            return self.downsample.iter().fold(x, |x, part| match part {
                DownsamplePart::Conv(conv) => conv.forward(x),
                DownsamplePart::Norm(norm) => norm.forward(x),
            });
        }
        let x = if self.stride > 1 { x.slice(s![.., .., ..;self.stride, ..;self.stride]) } else { x };
        if self.pad_channels == 0 {
            return x;
        }
        // [B, C, H, W] -> [B, C + pad, H, W], half of the zeros before, half after (option A).
        let [b, _, h, w] = x.dims();
        let before = self.pad_channels / 2;
        let after = self.pad_channels - before;
        let device = x.device();
        Tensor::cat(vec![Tensor::zeros([b, before, h, w], &device), x, Tensor::zeros([b, after, h, w], &device)], 1)
    }
}

/// CIFAR ResNet with `blocks_per_stage` basic blocks in each of its three stages.
#[derive(Module, Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    layer1: Vec<BasicBlock>,
    layer2: Vec<BasicBlock>,
    layer3: Vec<BasicBlock>,
    fc: Option<Head>,
}

impl ResNet {
    /// Builds ResNet-(6n+2) with `n = blocks_per_stage`.
    #[allow(clippy::too_many_arguments)] // the spec's fields, spelled out
    pub fn new(
        blocks_per_stage: usize,
        width: f32,
        channels: Option<&[usize]>,
        shortcut: Shortcut,
        in_channels: usize,
        num_classes: usize,
        head: HeadSpec,
        device: &Device,
    ) -> Self {
        // A plan gives the three stage widths, optionally followed by the inner width (conv1's
        // output) of every block; see `ModelSpec::channels`.
        let widths = match channels {
            Some(c) => [c[0], c[1], c[2]],
            None => [16, 32, 64].map(|c| scaled(c, width)),
        };
        let inner = |stage: usize, block: usize| {
            channels.and_then(|c| c.get(3 + stage * blocks_per_stage + block).copied()).unwrap_or(widths[stage])
        };
        let stage = |index: usize, c_in: usize, stride: usize| {
            let c_out = widths[index];
            (0..blocks_per_stage)
                .map(|i| {
                    let (c_in, stride) = if i == 0 { (c_in, stride) } else { (c_out, 1) };
                    BasicBlock::new(c_in, inner(index, i), c_out, stride, shortcut, device)
                })
                .collect::<Vec<_>>()
        };
        Self {
            conv1: conv(in_channels, widths[0], 3, 1, 1, device),
            bn1: bn(widths[0], device),
            layer1: stage(0, widths[0], 1),
            layer2: stage(1, widths[0], 2),
            layer3: stage(2, widths[1], 2),
            fc: head.init(widths[2], num_classes, device),
        }
    }

    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = batch_norm_relu(&self.bn1, self.conv1.forward(x));
        let x = self.layer1.iter().chain(&self.layer2).chain(&self.layer3).fold(x, |x, b| b.forward(x));
        global_avg_pool(x)
    }

    /// Logits: `[B, C_in, H, W] -> [B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        head::apply(&self.fc, self.forward_features(x))
    }
}

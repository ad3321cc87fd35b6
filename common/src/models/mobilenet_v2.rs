//! MobileNetV2 (Sandler et al., CVPR 2018, Table 2) adapted to small inputs as in the CIFAR
//! literature: the stem and the second stage keep stride 1, so 32x32 maps reach 4x4 at the end
//! instead of 1x1. Inverted residual blocks: 1x1 expansion (ReLU6), 3x3 depthwise (ReLU6),
//! 1x1 linear projection; a residual connection when stride is 1 and widths match.
//! Tensor names: `features.0.conv.weight`, `features.{i}.expand.bn.weight`,
//! `features.{i}.depthwise.conv.weight`, `features.{i}.project.conv.weight`, `head.conv.weight`,
//! `classifier.weight`.

use super::head::{self, Head, HeadSpec};
use super::layers::{ConvBn, global_avg_pool, scaled};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// Expansion, depthwise and projection of one inverted residual block.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// 1x1 expansion; empty when the expansion factor is 1.
    expand: Vec<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl InvertedResidual {
    fn new(c_in: usize, c_out: usize, stride: usize, expansion: usize, device: &Device) -> Self {
        let hidden = c_in * expansion;
        Self {
            expand: if expansion == 1 { Vec::new() } else { vec![ConvBn::new(c_in, hidden, 1, 1, 1, device)] },
            depthwise: ConvBn::new(hidden, hidden, 3, stride, hidden, device),
            project: ConvBn::new(hidden, c_out, 1, 1, 1, device),
            residual: stride == 1 && c_in == c_out,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = self.expand.iter().fold(x.clone(), |x, unit| relu6(unit.forward(x)));
        let out = self.project.forward(relu6(self.depthwise.forward(out)));
        if self.residual { out + x } else { out }
    }
}

/// MobileNetV2 for small images.
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    stem: ConvBn,
    features: Vec<InvertedResidual>,
    head: ConvBn,
    classifier: Option<Head>,
}

impl MobileNetV2 {
    /// Builds the network with channel widths scaled by `width` (the paper's multiplier).
    pub fn new(
        width: f32,
        channels: Option<&[usize]>,
        in_channels: usize,
        num_classes: usize,
        head: HeadSpec,
        device: &Device,
    ) -> Self {
        // (expansion t, channels c, repeats n, stride s) of Table 2, CIFAR strides.
        const STAGES: [(usize, usize, usize, usize); 7] =
            [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];
        // A plan gives the stem, the seven stages and the last 1x1 convolution.
        let planned = |i: usize, default: usize| channels.map_or(default, |c| c[i]);
        let stem_width = planned(0, scaled(32, width));
        let mut c_in = stem_width;
        let mut features = Vec::new();
        for (stage, (t, c, n, s)) in STAGES.into_iter().enumerate() {
            let c_out = planned(stage + 1, scaled(c, width));
            for i in 0..n {
                features.push(InvertedResidual::new(c_in, c_out, if i == 0 { s } else { 1 }, t, device));
                c_in = c_out;
            }
        }
        let head_width = planned(8, if width > 1.0 { scaled(1280, width) } else { 1280 });
        Self {
            stem: ConvBn::new(in_channels, stem_width, 3, 1, 1, device),
            features,
            head: ConvBn::new(c_in, head_width, 1, 1, 1, device),
            classifier: head.init(head_width, num_classes, device),
        }
    }

    /// Pooled embedding: `[B, C_in, H, W] -> [B, 1280]`.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu6(self.stem.forward(x));
        let x = self.features.iter().fold(x, |x, block| block.forward(x));
        global_avg_pool(relu6(self.head.forward(x)))
    }

    /// Logits: `[B, C_in, H, W] -> [B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        head::apply(&self.classifier, self.forward_features(x))
    }
}

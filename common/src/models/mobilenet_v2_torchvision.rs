//! MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
//! CVPR 2018, §3.3, §4 and Table 2) as `torchvision.models.MobileNetV2` builds it for 224 px
//! inputs: a stride-2 3x3 stem of 32 channels, seventeen inverted residual blocks (1x1 expansion,
//! 3x3 depthwise, linear 1x1 projection; ReLU6 everywhere but the projection; a residual where
//! stride is 1 and widths match), a 1x1 convolution to 1280 channels, global average pooling,
//! dropout 0.2 and the classifier. Widths are `make_divisible(c * width, 8)`; the last
//! convolution widens with the multiplier only above 1.
//!
//! Tensor names are torchvision's: `features.0.0.weight` (stem), `features.1.conv.0.0.weight`,
//! `features.2.conv.3.running_var`, `features.18.1.bias`, `classifier.1.weight`.

use super::head::HeadSpec;
use super::layers::{bn, conv, global_avg_pool};
use super::sequential::{
    self, Activation, ClassifierLayer, Layer, adjust_channels, conv_norm_activation, forward_classifier, make_divisible,
};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// (expansion t, channels c, repeats n, stride s) of Table 2 after the stem.
const SETTING: [(usize, usize, usize, usize); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

/// torchvision's `mobilenetv2.InvertedResidual`.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// `[expand CNA,] depthwise CNA, 1x1 projection, batch norm`: the names `conv.{k}`.
    conv: Vec<Layer>,
    use_res_connect: bool,
}

impl InvertedResidual {
    fn new(c_in: usize, c_out: usize, stride: usize, expand_ratio: usize, device: &Device) -> Self {
        let hidden = c_in * expand_ratio;
        let mut conv_layers = Vec::new();
        if expand_ratio != 1 {
            conv_layers.push(Layer::Sequence(conv_norm_activation(c_in, hidden, 1, 1, 1, Activation::Relu6, device)));
        }
        conv_layers.push(Layer::Sequence(conv_norm_activation(
            hidden,
            hidden,
            3,
            stride,
            hidden,
            Activation::Relu6,
            device,
        )));
        conv_layers.push(Layer::Conv(conv(hidden, c_out, 1, 1, 1, device)));
        conv_layers.push(Layer::Norm(bn(c_out, device)));
        Self { conv: conv_layers, use_res_connect: stride == 1 && c_in == c_out }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = sequential::forward(&self.conv, x.clone());
        if self.use_res_connect { out + x } else { out }
    }
}

/// One entry of `features`: a `Conv2dNormActivation` (stem, last convolution) or a block.
#[derive(Module, Debug)]
pub enum Feature {
    /// `Conv2dNormActivation`.
    Conv(Vec<Layer>),
    /// `InvertedResidual`.
    Block(InvertedResidual),
}

impl Feature {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Conv(layers) => sequential::forward(layers, x),
            Self::Block(block) => block.forward(x),
        }
    }
}

/// `torchvision.models.MobileNetV2`.
#[derive(Module, Debug)]
pub struct TorchvisionMobileNetV2 {
    features: Vec<Feature>,
    /// `[Dropout(0.2), head]`; empty without a head.
    classifier: Vec<ClassifierLayer>,
}

impl TorchvisionMobileNetV2 {
    /// torchvision's `MobileNetV2(width_mult = width)` with `in_channels` input channels and the
    /// kdkit `head` after the pooled 1280-wide (at width <= 1) embedding.
    pub fn new(width: f32, in_channels: usize, num_classes: usize, head: HeadSpec, device: &Device) -> Self {
        let mut c_in = adjust_channels(32, width);
        let last_channel = make_divisible(1280.0 * f64::from(width.max(1.0)), 8);
        let mut features =
            vec![Feature::Conv(conv_norm_activation(in_channels, c_in, 3, 2, 1, Activation::Relu6, device))];
        for (t, c, n, s) in SETTING {
            let c_out = adjust_channels(c, width);
            for i in 0..n {
                features.push(Feature::Block(InvertedResidual::new(
                    c_in,
                    c_out,
                    if i == 0 { s } else { 1 },
                    t,
                    device,
                )));
                c_in = c_out;
            }
        }
        features.push(Feature::Conv(conv_norm_activation(c_in, last_channel, 1, 1, 1, Activation::Relu6, device)));
        let classifier = sequential::dropout_and_head(&head, last_channel, num_classes, 0.2, device);
        Self { features, classifier }
    }

    /// Pooled output of the last 1x1 convolution: `[B, C_in, H, W] -> [B, 1280]`.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        global_avg_pool(self.features.iter().fold(x, |x, feature| feature.forward(x)))
    }

    /// Dropout and the head on the embedding: `[B, C_in, H, W] -> [B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        forward_classifier(&self.classifier, self.forward_features(x), true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::trainable_params;
    use super::*;
    use crate::models::sequential::pytorch_names;

    /// torchvision's documented `num_params` of `mobilenet_v2` (MobileNet_V2_Weights.IMAGENET1K_V1):
    /// 3,504,872 at width 1 with 1000 classes.
    #[test]
    fn parameter_count_matches_torchvision() {
        let net = TorchvisionMobileNetV2::new(1.0, 3, 1000, HeadSpec::Classifier, &Device::flex());
        assert_eq!(trainable_params(&net), 3_504_872);
    }

    #[test]
    fn tensor_names_match_torchvision() {
        let net = TorchvisionMobileNetV2::new(0.25, 3, 10, HeadSpec::Classifier, &Device::flex());
        let names = pytorch_names(&net);
        let bn = |prefix: &str| ["weight", "bias", "running_mean", "running_var"].map(|p| format!("{prefix}.{p}"));
        let mut first_blocks: Vec<String> = vec!["features.1.conv.0.0.weight".into()];
        first_blocks.extend(bn("features.1.conv.0.1"));
        first_blocks.push("features.1.conv.1.weight".into());
        first_blocks.extend(bn("features.1.conv.2"));
        for k in 0..2 {
            first_blocks.push(format!("features.2.conv.{k}.0.weight"));
            first_blocks.extend(bn(&format!("features.2.conv.{k}.1")));
        }
        first_blocks.push("features.2.conv.2.weight".into());
        first_blocks.extend(bn("features.2.conv.3"));
        let mut got: Vec<String> =
            names.iter().filter(|n| n.starts_with("features.1.") || n.starts_with("features.2.")).cloned().collect();
        got.sort();
        first_blocks.sort();
        assert_eq!(got, first_blocks);
        for expected in
            ["features.0.0.weight", "features.0.1.running_mean", "features.18.0.weight", "features.18.1.bias"]
                .into_iter()
                .chain(["classifier.1.weight", "classifier.1.bias"])
        {
            assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("features.19")));
    }

    #[test]
    fn pytorch_names_round_trip() {
        let device = Device::flex();
        let build = || TorchvisionMobileNetV2::new(0.25, 3, 4, HeadSpec::Classifier, &device);
        let x = Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &device);
        sequential::assert_pytorch_round_trip(&build(), build(), |net| net.forward(x.clone()));
    }

    #[test]
    fn forward_shapes() {
        let device = Device::flex();
        let net = TorchvisionMobileNetV2::new(0.25, 3, 7, HeadSpec::Classifier, &device);
        let x = Tensor::<4>::zeros([2, 3, 64, 64], &device);
        assert_eq!(net.forward(x.clone()).dims(), [2, 7]);
        assert_eq!(net.forward_features(x.clone()).dims(), [2, 1280]);
        let encoder = TorchvisionMobileNetV2::new(0.25, 3, 7, HeadSpec::None, &device);
        assert_eq!(encoder.forward(x).dims(), [2, 1280]);
        // Above width 1 the last convolution widens too: make_divisible(1280 * 1.4, 8) = 1792.
        let wide = TorchvisionMobileNetV2::new(1.4, 3, 7, HeadSpec::None, &device);
        assert_eq!(wide.forward(Tensor::<4>::zeros([1, 3, 32, 32], &device)).dims(), [1, 1792]);
    }
}

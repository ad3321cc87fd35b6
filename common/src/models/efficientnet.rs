//! EfficientNet-B0 (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
//! Networks", ICML 2019, §4 and Table 1) as torchvision's `efficientnet_b0` builds it
//! (`_efficientnet_conf("efficientnet_b0", width_mult, depth_mult=1.0)`): a stride-2 3x3 stem of
//! 32 channels with SiLU, seven stages of MBConv blocks (1x1 expansion when the expanded width
//! differs from the input, k x k depthwise, squeeze-and-excitation to `max(1, input / 4)`
//! channels with SiLU and sigmoid gates, linear 1x1 projection; a residual with stochastic depth
//! where stride is 1 and widths match, its rate growing linearly from 0 to 0.2 over the
//! sixteen blocks), a 1x1 convolution to four times the last stage's width, global average
//! pooling, dropout 0.2 and the classifier. Widths are `make_divisible(c * width, 8)`; the stage
//! depths are those of B0.
//!
//! Tensor names are torchvision's: `features.0.0.weight`, `features.1.0.block.1.fc1.bias`,
//! `features.2.0.block.0.1.running_mean`, `features.8.0.weight`, `classifier.1.weight`.

use super::head::HeadSpec;
use super::layers::global_avg_pool;
use super::sequential::{
    self, Activation, ClassifierLayer, Layer, adjust_channels, conv_norm_activation, forward_classifier,
};
use super::squeeze_excitation::{ScaleActivation, SqueezeExcitation};
use super::stochastic_depth::StochasticDepth;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// (expand ratio, kernel, stride, input channels, output channels, layers) of B0's stages.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

/// torchvision's `stochastic_depth_prob` of every EfficientNet.
const STOCHASTIC_DEPTH: f64 = 0.2;

/// torchvision's `efficientnet.MBConv`.
#[derive(Module, Debug)]
pub struct MBConv {
    /// `[expand CNA,] depthwise CNA, SqueezeExcitation, project CNA`: the names `block.{k}`.
    block: Vec<Layer>,
    stochastic_depth: StochasticDepth,
    use_res_connect: bool,
}

impl MBConv {
    #[allow(clippy::too_many_arguments)] // one MBConvConfig, spelled out
    fn new(
        c_in: usize,
        c_out: usize,
        expand_ratio: usize,
        kernel: usize,
        stride: usize,
        stochastic_depth: f64,
        device: &Device,
    ) -> Self {
        let expanded = adjust_channels(c_in, expand_ratio as f32);
        let mut block = Vec::new();
        if expanded != c_in {
            block.push(Layer::Sequence(conv_norm_activation(c_in, expanded, 1, 1, 1, Activation::Silu, device)));
        }
        block.push(Layer::Sequence(conv_norm_activation(
            expanded,
            expanded,
            kernel,
            stride,
            expanded,
            Activation::Silu,
            device,
        )));
        block.push(Layer::SqueezeExcitation(SqueezeExcitation::new(
            expanded,
            (c_in / 4).max(1),
            Activation::Silu,
            ScaleActivation::Sigmoid,
            device,
        )));
        block.push(Layer::Sequence(conv_norm_activation(expanded, c_out, 1, 1, 1, Activation::Identity, device)));
        Self {
            block,
            stochastic_depth: StochasticDepth::new(stochastic_depth),
            use_res_connect: stride == 1 && c_in == c_out,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = sequential::forward(&self.block, x.clone());
        if self.use_res_connect { self.stochastic_depth.forward(out) + x } else { out }
    }
}

/// One entry of `features`: a `Conv2dNormActivation` (stem, last convolution) or a stage.
#[derive(Module, Debug)]
pub enum Feature {
    /// `Conv2dNormActivation`.
    Conv(Vec<Layer>),
    /// A stage: `nn.Sequential` of `MBConv`s.
    Stage(Vec<MBConv>),
}

impl Feature {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Conv(layers) => sequential::forward(layers, x),
            Self::Stage(blocks) => blocks.iter().fold(x, |x, block| block.forward(x)),
        }
    }
}

/// torchvision's `EfficientNet` in its B0 configuration.
#[derive(Module, Debug)]
pub struct EfficientNet {
    features: Vec<Feature>,
    /// `[Dropout(0.2), head]`; empty without a head.
    classifier: Vec<ClassifierLayer>,
}

impl EfficientNet {
    /// `efficientnet_b0` with `width_mult = width`, `in_channels` input channels and the kdkit
    /// `head` after the pooled embedding (1280 wide at width 1).
    pub fn new(width: f32, in_channels: usize, num_classes: usize, head: HeadSpec, device: &Device) -> Self {
        let adjust = |c| adjust_channels(c, width);
        let stem_width = adjust(STAGES[0].3);
        let mut features =
            vec![Feature::Conv(conv_norm_activation(in_channels, stem_width, 3, 2, 1, Activation::Silu, device))];
        let total_blocks: usize = STAGES.iter().map(|stage| stage.5).sum();
        let mut block_id = 0;
        for (expand_ratio, kernel, stride, c_in, c_out, layers) in STAGES {
            let (mut c_in, c_out) = (adjust(c_in), adjust(c_out));
            let mut stage = Vec::new();
            for i in 0..layers {
                let sd_prob = STOCHASTIC_DEPTH * block_id as f64 / total_blocks as f64;
                let stride = if i == 0 { stride } else { 1 };
                stage.push(MBConv::new(c_in, c_out, expand_ratio, kernel, stride, sd_prob, device));
                c_in = c_out;
                block_id += 1;
            }
            features.push(Feature::Stage(stage));
        }
        let lastconv_in = adjust(STAGES[STAGES.len() - 1].4);
        let lastconv_out = 4 * lastconv_in;
        features.push(Feature::Conv(conv_norm_activation(
            lastconv_in,
            lastconv_out,
            1,
            1,
            1,
            Activation::Silu,
            device,
        )));
        let classifier = sequential::dropout_and_head(&head, lastconv_out, num_classes, 0.2, device);
        Self { features, classifier }
    }

    /// Pooled output of the last 1x1 convolution: `[B, C_in, H, W] -> [B, 1280]` at width 1.
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

    /// torchvision's documented `num_params` of `efficientnet_b0`
    /// (EfficientNet_B0_Weights.IMAGENET1K_V1) at width 1 with 1000 classes.
    #[test]
    fn parameter_count_matches_torchvision() {
        let net = EfficientNet::new(1.0, 3, 1000, HeadSpec::Classifier, &Device::flex());
        assert_eq!(trainable_params(&net), 5_288_548);
    }

    #[test]
    fn tensor_names_match_torchvision() {
        let net = EfficientNet::new(1.0, 3, 10, HeadSpec::Classifier, &Device::flex());
        let names = pytorch_names(&net);
        let bn = |prefix: &str| ["weight", "bias", "running_mean", "running_var"].map(|p| format!("{prefix}.{p}"));
        // Stage 1 (expand ratio 1): depthwise CNA, SE, project CNA.
        let mut expected: Vec<String> = vec!["features.1.0.block.0.0.weight".into()];
        expected.extend(bn("features.1.0.block.0.1"));
        expected
            .extend(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"].map(|p| format!("features.1.0.block.1.{p}")));
        expected.push("features.1.0.block.2.0.weight".into());
        expected.extend(bn("features.1.0.block.2.1"));
        expected.sort();
        let mut got: Vec<String> = names.iter().filter(|n| n.starts_with("features.1.")).cloned().collect();
        got.sort();
        assert_eq!(got, expected);
        for expected in ["features.0.0.weight", "features.2.0.block.0.0.weight", "features.2.1.block.2.fc2.bias"]
            .into_iter()
            .chain(["features.6.3.block.3.1.running_var", "features.8.0.weight", "features.8.1.bias"])
            .chain(["classifier.1.weight", "classifier.1.bias"])
        {
            assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("features.9") || n.starts_with("features.6.4")));
    }

    /// torchvision: block `i` of 16 drops with probability 0.2 i / 16; only blocks with a
    /// residual use it.
    #[test]
    fn stochastic_depth_grows_linearly() {
        let net = EfficientNet::new(1.0, 3, 10, HeadSpec::Classifier, &Device::flex());
        let probs: Vec<f64> = net
            .features
            .iter()
            .filter_map(|f| match f {
                Feature::Stage(blocks) => Some(blocks.iter().map(|b| b.stochastic_depth.prob())),
                Feature::Conv(_) => None,
            })
            .flatten()
            .collect();
        assert_eq!(probs.len(), 16);
        for (i, p) in probs.iter().enumerate() {
            assert!((p - 0.2 * i as f64 / 16.0).abs() < 1e-12, "{i}: {p}");
        }
    }

    #[test]
    fn forward_shapes() {
        let device = Device::flex();
        let net = EfficientNet::new(0.25, 3, 7, HeadSpec::Classifier, &device);
        let x = Tensor::<4>::zeros([2, 3, 64, 64], &device);
        assert_eq!(net.forward(x.clone()).dims(), [2, 7]);
        // 4 * make_divisible(320 / 4, 8) = 320.
        assert_eq!(net.forward_features(x.clone()).dims(), [2, 320]);
        assert_eq!(EfficientNet::new(0.25, 3, 7, HeadSpec::None, &device).forward(x).dims(), [2, 320]);
    }

    #[test]
    fn pytorch_names_round_trip() {
        let device = Device::flex();
        let build = || EfficientNet::new(0.25, 3, 4, HeadSpec::Classifier, &device);
        let x = Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &device);
        sequential::assert_pytorch_round_trip(&build(), build(), |net| net.forward(x.clone()));
    }

    /// In training on an autodiff device the network still runs (stochastic depth and dropout
    /// active) and keeps its shapes.
    #[test]
    fn trains_on_autodiff() {
        let device = Device::flex().autodiff();
        let net = EfficientNet::new(0.25, 3, 5, HeadSpec::Classifier, &device);
        let x = Tensor::<4>::ones([4, 3, 32, 32], &device);
        assert_eq!(net.forward(x).dims(), [4, 5]);
    }
}

//! MobileNetV3 Large and Small (Howard et al., "Searching for MobileNetV3", ICCV 2019, §5 and
//! Tables 1 and 2) as `torchvision.models.MobileNetV3` builds them (`_mobilenet_v3_conf`, no
//! reduced tail, no dilation): a stride-2 3x3 stem of 16 channels with hard swish, the table's
//! bottleneck blocks (1x1 expansion when the expanded width differs from the input, k x k
//! depthwise, squeeze-and-excitation with hard-sigmoid gates where the table says SE, linear 1x1
//! projection; ReLU or hard swish per row; a residual where stride is 1 and widths match), a 1x1
//! convolution to six times the last block's width, global average pooling, then
//! `Linear -> Hardswish -> Dropout(0.2) -> Linear`. Batch norm as torchvision's: eps 1e-3
//! (timm's `mobilenetv3_large_100` uses 1e-5: the epsilon is a parameter), momentum 0.01. Widths are `make_divisible(c * width, 8)`, the hidden classifier width too.
//!
//! Tensor names are torchvision's: `features.0.0.weight`, `features.1.block.0.0.weight`,
//! `features.4.block.2.fc1.bias` (Large), `features.16.1.running_var` (Large),
//! `classifier.0.weight`, `classifier.3.weight`.

use super::head::HeadSpec;
use super::layers::global_avg_pool;
use super::sequential::{
    self, Activation, ClassifierLayer, Layer, adjust_channels, forward_classifier, make_divisible,
};
use super::squeeze_excitation::{ScaleActivation, SqueezeExcitation};
use burn::module::{Module, Param};
use burn::nn::activation::HardSwish;
use burn::nn::{BatchNormConfig, Initializer, LinearConfig};
use burn::tensor::{Device, Tensor};

/// Which of the paper's two networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MobileNetV3Size {
    /// MobileNetV3-Large (Table 1), 1280-wide classifier.
    Large,
    /// MobileNetV3-Small (Table 2), 1024-wide classifier.
    Small,
}

/// One bottleneck row: input, kernel, expanded and output widths, squeeze-and-excitation,
/// hard swish (`"HS"`) rather than ReLU (`"RE"`), stride.
type Row = (usize, usize, usize, usize, bool, bool, usize);

/// torchvision's `mobilenet_v3_large` setting (Table 1).
const LARGE: [Row; 15] = [
    (16, 3, 16, 16, false, false, 1),
    (16, 3, 64, 24, false, false, 2),
    (24, 3, 72, 24, false, false, 1),
    (24, 5, 72, 40, true, false, 2),
    (40, 5, 120, 40, true, false, 1),
    (40, 5, 120, 40, true, false, 1),
    (40, 3, 240, 80, false, true, 2),
    (80, 3, 200, 80, false, true, 1),
    (80, 3, 184, 80, false, true, 1),
    (80, 3, 184, 80, false, true, 1),
    (80, 3, 480, 112, true, true, 1),
    (112, 3, 672, 112, true, true, 1),
    (112, 5, 672, 160, true, true, 2),
    (160, 5, 960, 160, true, true, 1),
    (160, 5, 960, 160, true, true, 1),
];

/// torchvision's `mobilenet_v3_small` setting (Table 2).
const SMALL: [Row; 11] = [
    (16, 3, 16, 16, true, false, 2),
    (16, 3, 72, 24, false, false, 2),
    (24, 3, 88, 24, false, false, 1),
    (24, 5, 96, 40, true, true, 2),
    (40, 5, 240, 40, true, true, 1),
    (40, 5, 240, 40, true, true, 1),
    (40, 5, 120, 48, true, true, 1),
    (48, 5, 144, 48, true, true, 1),
    (48, 5, 288, 96, true, true, 2),
    (96, 5, 576, 96, true, true, 1),
    (96, 5, 576, 96, true, true, 1),
];

/// torchvision's batch-norm epsilon for MobileNetV3 (`partial(nn.BatchNorm2d, eps=0.001)`).
pub const TORCHVISION_NORM_EPS: f64 = 1e-3;

/// Whether each block (`features.1`, `features.2`, ...) of the network at `width` has a 1x1
/// expansion (its expanded width differs from its input's) and a squeeze-excitation: what
/// other layouts' names depend on.
pub fn block_parts(size: MobileNetV3Size, width: f32) -> Vec<(bool, bool)> {
    rows(size).0.iter().map(|r| (adjust_channels(r.2, width) != adjust_channels(r.0, width), r.4)).collect()
}

fn rows(size: MobileNetV3Size) -> (&'static [Row], usize) {
    match size {
        MobileNetV3Size::Large => (&LARGE, 1280),
        MobileNetV3Size::Small => (&SMALL, 1024),
    }
}

/// torchvision's `Conv2dNormActivation` with MobileNetV3's batch norm (momentum 0.01).
struct Cna {
    norm_eps: f64,
}

impl Cna {
    fn layers(
        &self,
        (c_in, c_out): (usize, usize),
        k: usize,
        stride: usize,
        groups: usize,
        activation: Activation,
        device: &Device,
    ) -> Vec<Layer> {
        let mut layers = sequential::conv_norm_activation(c_in, c_out, k, stride, groups, activation, device);
        let norm = BatchNormConfig::new(c_out).with_epsilon(self.norm_eps).with_momentum(0.01);
        layers[1] = Layer::Norm(norm.init(device));
        layers
    }
}

/// torchvision's `mobilenetv3.InvertedResidual`.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// `[expand CNA,] depthwise CNA, [SqueezeExcitation,] project CNA`: the names `block.{k}`.
    block: Vec<Layer>,
    use_res_connect: bool,
}

impl InvertedResidual {
    /// The block of one (already width-adjusted) row.
    fn new(row: Row, cna: &Cna, device: &Device) -> Self {
        let (c_in, k, expanded, c_out, use_se, use_hs, stride) = row;
        let activation = if use_hs { Activation::HardSwish } else { Activation::Relu };
        let mut block = Vec::new();
        if expanded != c_in {
            block.push(Layer::Sequence(cna.layers((c_in, expanded), 1, 1, 1, activation, device)));
        }
        block.push(Layer::Sequence(cna.layers((expanded, expanded), k, stride, expanded, activation, device)));
        if use_se {
            let squeeze = make_divisible((expanded / 4) as f64, 8);
            block.push(Layer::SqueezeExcitation(SqueezeExcitation::new(
                expanded,
                squeeze,
                Activation::Relu,
                ScaleActivation::HardSigmoid,
                device,
            )));
        }
        block.push(Layer::Sequence(cna.layers((expanded, c_out), 1, 1, 1, Activation::Identity, device)));
        Self { block, use_res_connect: stride == 1 && c_in == c_out }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = sequential::forward(&self.block, x.clone());
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

/// `torchvision.models.MobileNetV3`.
#[derive(Module, Debug)]
pub struct MobileNetV3 {
    features: Vec<Feature>,
    /// `[Linear, Hardswish, Dropout(0.2), head]`; the first two only without a head.
    classifier: Vec<ClassifierLayer>,
}

impl MobileNetV3 {
    /// torchvision's `mobilenet_v3_large` / `mobilenet_v3_small` with `width_mult = width`,
    /// batch-norm epsilon `norm_eps` (torchvision's: [`TORCHVISION_NORM_EPS`]), `in_channels`
    /// input channels and the kdkit `head` in place of the last linear layer.
    pub fn new(
        size: MobileNetV3Size,
        width: f32,
        norm_eps: f64,
        in_channels: usize,
        num_classes: usize,
        head: HeadSpec,
        device: &Device,
    ) -> Self {
        let cna = Cna { norm_eps };
        let (rows, last_channel) = rows(size);
        let last_channel = adjust_channels(last_channel, width);
        let adjust = |c| adjust_channels(c, width);
        let stem_width = adjust(rows[0].0);
        let mut features =
            vec![Feature::Conv(cna.layers((in_channels, stem_width), 3, 2, 1, Activation::HardSwish, device))];
        for &(c_in, k, expanded, c_out, use_se, use_hs, stride) in rows {
            let row = (adjust(c_in), k, adjust(expanded), adjust(c_out), use_se, use_hs, stride);
            features.push(Feature::Block(InvertedResidual::new(row, &cna, device)));
        }
        let lastconv_in = adjust(rows[rows.len() - 1].3);
        let lastconv_out = 6 * lastconv_in;
        features.push(Feature::Conv(cna.layers((lastconv_in, lastconv_out), 1, 1, 1, Activation::HardSwish, device)));
        // torchvision initialises its linear layers with N(0, 0.01) weights and zero bias.
        let mut hidden = LinearConfig::new(lastconv_out, last_channel)
            .with_initializer(Initializer::Normal { mean: 0.0, std: 0.01 })
            .init(device);
        hidden.bias = Some(Param::from_tensor(Tensor::zeros([last_channel], device)));
        let mut classifier = vec![ClassifierLayer::Linear(hidden), ClassifierLayer::HardSwish(HardSwish::new())];
        if let Some(head) = head.init(last_channel, num_classes, device) {
            classifier.extend([ClassifierLayer::dropout(0.2), ClassifierLayer::Head(head)]);
        }
        Self { features, classifier }
    }

    /// The pooled last convolution through `classifier.0` and its hard swish:
    /// `[B, C_in, H, W] -> [B, 1280]` (Large) or `[B, 1024]` (Small) at width 1.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        let pooled = global_avg_pool(self.features.iter().fold(x, |x, feature| feature.forward(x)));
        forward_classifier(&self.classifier[..2], pooled, false)
    }

    /// Dropout and the head on the embedding: `[B, C_in, H, W] -> [B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        forward_classifier(&self.classifier[2..], self.forward_features(x), true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::trainable_params;
    use super::*;
    use crate::models::sequential::pytorch_names;

    fn build(size: MobileNetV3Size, width: f32, classes: usize) -> MobileNetV3 {
        MobileNetV3::new(size, width, TORCHVISION_NORM_EPS, 3, classes, HeadSpec::Classifier, &Device::flex())
    }

    /// torchvision's documented `num_params` (MobileNet_V3_Large_Weights.IMAGENET1K_V1 and
    /// MobileNet_V3_Small_Weights.IMAGENET1K_V1) at width 1 with 1000 classes.
    #[test]
    fn parameter_counts_match_torchvision() {
        assert_eq!(trainable_params(&build(MobileNetV3Size::Large, 1.0, 1000)), 5_483_032);
        assert_eq!(trainable_params(&build(MobileNetV3Size::Small, 1.0, 1000)), 2_542_856);
    }

    #[test]
    fn tensor_names_match_torchvision() {
        let bn = |prefix: &str| ["weight", "bias", "running_mean", "running_var"].map(|p| format!("{prefix}.{p}"));
        let names_of = |net: &MobileNetV3, prefix: &str| {
            let mut names: Vec<String> = pytorch_names(net).into_iter().filter(|n| n.starts_with(prefix)).collect();
            names.sort();
            names
        };
        // Large: block 1 has no expansion (16 -> 16) and no SE; block 4 expands and has SE.
        let large = build(MobileNetV3Size::Large, 0.25, 10);
        let mut expected = Vec::new();
        for k in 0..2 {
            expected.push(format!("features.1.block.{k}.0.weight"));
            expected.extend(bn(&format!("features.1.block.{k}.1")));
        }
        expected.sort();
        assert_eq!(names_of(&large, "features.1."), expected);
        let mut expected = vec![
            "features.4.block.2.fc1.weight".to_string(),
            "features.4.block.2.fc1.bias".into(),
            "features.4.block.2.fc2.weight".into(),
            "features.4.block.2.fc2.bias".into(),
        ];
        for k in [0, 1, 3] {
            expected.push(format!("features.4.block.{k}.0.weight"));
            expected.extend(bn(&format!("features.4.block.{k}.1")));
        }
        expected.sort();
        assert_eq!(names_of(&large, "features.4."), expected);
        let names = pytorch_names(&large);
        for expected in ["features.0.0.weight", "features.0.1.running_var", "features.2.block.1.0.weight"]
            .into_iter()
            .chain(["features.16.0.weight", "features.16.1.bias", "classifier.0.weight", "classifier.3.weight"])
        {
            assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("features.17") || n.starts_with("classifier.1")));
        // Small: block 1 has SE but no expansion.
        let small = build(MobileNetV3Size::Small, 1.0, 10);
        let names = pytorch_names(&small);
        for expected in ["features.1.block.1.fc1.bias", "features.1.block.2.0.weight", "features.12.1.running_mean"] {
            assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("features.1.block.3") || n.starts_with("features.13")));
    }

    /// torchvision 0.14: `mobilenet_v3_large().features[1].block` holds depthwise + projection,
    /// `features[2]` expansion + depthwise + projection, `features[4]` an SE too; at
    /// `width_mult=0.125` `features[2].block` has two modules (8 -> 8: no expansion).
    #[test]
    fn block_parts_follow_torchvision() {
        let large = block_parts(MobileNetV3Size::Large, 1.0);
        assert_eq!((large.len(), large[0], large[1], large[3]), (15, (false, false), (true, false), (true, true)));
        assert_eq!(block_parts(MobileNetV3Size::Large, 0.125)[1], (false, false));
        let small = block_parts(MobileNetV3Size::Small, 1.0);
        assert_eq!((small.len(), small[0], small[1]), (11, (false, true), (true, false)));
    }

    #[test]
    fn pytorch_names_round_trip() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &device);
        for size in [MobileNetV3Size::Large, MobileNetV3Size::Small] {
            let build = || build(size, 0.25, 4);
            sequential::assert_pytorch_round_trip(&build(), build(), |net| net.forward(x.clone()));
        }
    }

    #[test]
    fn forward_shapes() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([2, 3, 64, 64], &device);
        for (size, embedding) in [(MobileNetV3Size::Large, 320), (MobileNetV3Size::Small, 256)] {
            let net = build(size, 0.25, 7);
            assert_eq!(net.forward(x.clone()).dims(), [2, 7]);
            assert_eq!(net.forward_features(x.clone()).dims(), [2, embedding]);
            let encoder = MobileNetV3::new(size, 0.25, TORCHVISION_NORM_EPS, 3, 7, HeadSpec::None, &device);
            assert_eq!(encoder.forward(x.clone()).dims(), [2, embedding]);
        }
    }
}

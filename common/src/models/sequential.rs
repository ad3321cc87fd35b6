//! torchvision's `nn.Sequential` as Burn modules: a `Vec` of [`Layer`]s whose indices are the
//! parameter names' indices, so `features.0.1.running_mean` (torchvision's
//! `Conv2dNormActivation`: conv at 0, batch norm at 1, activation at 2) loads without renames.
//! Layers without parameters (activations, pooling, dropout) keep their place in the list and
//! therefore the indices of the layers after them.

use super::head::Head;
use super::layers::{bn, conv};
use super::squeeze_excitation::SqueezeExcitation;
use burn::module::Module;
use burn::nn::activation::{HardSwish, Relu6, SiLU};
use burn::nn::conv::Conv2d;
use burn::nn::pool::AvgPool2d;
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Identity, Linear, Relu};
use burn::tensor::{Device, Tensor};

/// One entry of a 4-D (feature map) sequential block.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // a handful per block; boxing would change the module tree
pub enum Layer {
    /// `nn.Conv2d`.
    Conv(Conv2d),
    /// `nn.BatchNorm2d`.
    Norm(BatchNorm),
    /// `nn.ReLU`.
    Relu(Relu),
    /// `nn.ReLU6`.
    Relu6(Relu6),
    /// `nn.Hardswish`: `x relu6(x + 3) / 6`.
    HardSwish(HardSwish),
    /// `nn.SiLU`: `x sigmoid(x)`.
    Silu(SiLU),
    /// `nn.AvgPool2d` (the ResNet-D shortcut).
    AvgPool(AvgPool2d),
    /// `nn.Identity` (a placeholder that keeps the indices of the layers after it).
    Identity(Identity),
    /// A nested `nn.Sequential`: a `Conv2dNormActivation` inside a block, so that its layers are
    /// named `block.0.0.weight`, `block.0.1.running_mean`.
    Sequence(Vec<Layer>),
    /// `torchvision.ops.SqueezeExcitation` (`block.2.fc1.weight`).
    SqueezeExcitation(SqueezeExcitation),
}

/// The activation closing a [`conv_norm_activation`] block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// None (a linear projection).
    Identity,
    /// ReLU.
    Relu,
    /// ReLU6 (MobileNetV2).
    Relu6,
    /// Hard swish (MobileNetV3).
    HardSwish,
    /// SiLU / swish (EfficientNet).
    Silu,
}

impl Activation {
    /// The activation as a sequential entry, `None` for the identity.
    pub fn layer(self) -> Option<Layer> {
        match self {
            Self::Identity => None,
            Self::Relu => Some(Layer::Relu(Relu::new())),
            Self::Relu6 => Some(Layer::Relu6(Relu6::new())),
            Self::HardSwish => Some(Layer::HardSwish(HardSwish::new())),
            Self::Silu => Some(Layer::Silu(SiLU::new())),
        }
    }

    /// The activation applied to `x`.
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Identity => x,
            Self::Relu => burn::tensor::activation::relu(x),
            Self::Relu6 => burn::tensor::activation::relu6(x),
            Self::HardSwish => burn::tensor::activation::hard_swish(x),
            Self::Silu => burn::tensor::activation::silu(x),
        }
    }
}

impl Layer {
    /// The layer applied to `x`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Conv(conv) => conv.forward(x),
            Self::Norm(norm) => norm.forward(x),
            Self::Relu(_) => burn::tensor::activation::relu(x),
            Self::Relu6(_) => burn::tensor::activation::relu6(x),
            Self::HardSwish(_) => burn::tensor::activation::hard_swish(x),
            Self::Silu(_) => burn::tensor::activation::silu(x),
            Self::AvgPool(pool) => pool.forward(x),
            Self::Identity(_) => x,
            Self::Sequence(layers) => forward(layers, x),
            Self::SqueezeExcitation(se) => se.forward(x),
        }
    }
}

/// `x` through every layer in order.
pub fn forward(layers: &[Layer], x: Tensor<4>) -> Tensor<4> {
    layers.iter().fold(x, |x, layer| layer.forward(x))
}

/// torchvision's `Conv2dNormActivation`: a bias-free `k x k` convolution with padding
/// `(k - 1) / 2`, batch norm, then the activation (names `.0`, `.1`).
pub fn conv_norm_activation(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    groups: usize,
    activation: Activation,
    device: &Device,
) -> Vec<Layer> {
    let mut layers = vec![Layer::Conv(conv(c_in, c_out, k, stride, groups, device)), Layer::Norm(bn(c_out, device))];
    layers.extend(activation.layer());
    layers
}

/// torchvision's `_make_divisible` (from the TensorFlow MobileNet code): `v` rounded to the
/// nearest multiple of `divisor`, at least `divisor`, and never more than 10% below `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut rounded = ((v + d / 2.0) / d).floor().max(1.0) * d;
    if rounded < 0.9 * v {
        rounded += d;
    }
    (rounded as usize).max(divisor)
}

/// torchvision's `adjust_channels` of MobileNetV3 and EfficientNet (and MobileNetV2's width
/// rule): `make_divisible(channels * width, 8)`. The `f32` multiplier is read as the decimal it
/// was written as (`1.4`, not `1.39999997...`), so that rounding ties fall as in Python.
pub fn adjust_channels(channels: usize, width: f32) -> usize {
    let width = (f64::from(width) * 1e6).round() / 1e6;
    make_divisible(channels as f64 * width, 8)
}

/// One entry of a classifier (`[B, D]`) sequential: torchvision's `classifier` blocks.
#[derive(Module, Debug)]
pub enum ClassifierLayer {
    /// `nn.Dropout`.
    Dropout(Dropout),
    /// `nn.Linear` (MobileNetV3's hidden layer).
    Linear(Linear),
    /// `nn.Hardswish`.
    HardSwish(HardSwish),
    /// The network's head (classifier, projection or none): the last entry.
    Head(Head),
}

impl ClassifierLayer {
    /// `nn.Dropout(p)`; identity outside training.
    pub fn dropout(p: f64) -> Self {
        Self::Dropout(DropoutConfig::new(p).init())
    }

    /// The layer applied to `x`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Dropout(dropout) => dropout.forward(x),
            Self::Linear(linear) => linear.forward(x),
            Self::HardSwish(_) => burn::tensor::activation::hard_swish(x),
            Self::Head(head) => head.forward(x),
        }
    }
}

/// torchvision's `classifier = [Dropout(p), Linear]` with kdkit's head as the linear layer
/// (`classifier.1.*`); empty for a network without a head.
pub fn dropout_and_head(
    head: &super::head::HeadSpec,
    dim: usize,
    num_classes: usize,
    p: f64,
    device: &Device,
) -> Vec<ClassifierLayer> {
    match head.init(dim, num_classes, device) {
        Some(head) => vec![ClassifierLayer::dropout(p), ClassifierLayer::Head(head)],
        None => Vec::new(),
    }
}

/// Splits a classifier sequential at its head: the layers before it give the embedding
/// (`forward_features`), the head the output.
pub fn forward_classifier(layers: &[ClassifierLayer], x: Tensor<2>, with_head: bool) -> Tensor<2> {
    layers
        .iter()
        .filter(|layer| with_head || !matches!(layer, ClassifierLayer::Head(_)))
        .fold(x, |x, layer| layer.forward(x))
}

/// The PyTorch state-dict names of a module's tensors as checkpoints write them (enum variants
/// skipped, batch norm's `gamma`/`beta` as `weight`/`bias`).
#[cfg(test)]
pub(crate) fn pytorch_names<M: burn::store::ModuleSnapshot>(module: &M) -> Vec<String> {
    module.collect(None, Some(Box::new(burn::store::BurnToPyTorchAdapter)), true).into_iter().map(|t| t.name).collect()
}

/// Copies `source`'s tensors into `target` through PyTorch names, as a checkpoint round trip
/// does, checks that every tensor found its place, and that both then give the same output.
#[cfg(test)]
pub(crate) fn assert_pytorch_round_trip<M: Module>(source: &M, mut target: M, forward: impl Fn(&M) -> Tensor<2>) {
    use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter};
    let tensors = source.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let result = target.apply(tensors, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    assert!(result.errors.is_empty() && result.missing.is_empty() && result.unused.is_empty(), "{result:?}");
    assert!(!result.applied.is_empty());
    let tolerance = burn::tensor::Tolerance::absolute(1e-5);
    forward(&source.valid()).into_data().assert_approx_eq::<f32>(&forward(&target.valid()).into_data(), tolerance);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from torchvision 0.14's `_make_divisible` (run by hand): 32 * 0.5 = 16 -> 16,
    /// 24 * 0.75 = 18 -> 24 (16 is < 90% of 18), 1280 * 1.4 = 1792 -> 1792, 10 -> 16 (up: 8 is < 90% of 10),
    /// 3 -> 8 (at least the divisor), 96 // 4 = 24 -> 24, 240 / 4 = 60 -> 64.
    #[test]
    fn make_divisible_matches_torchvision() {
        for (v, want) in [(16.0, 16), (18.0, 24), (1792.0, 1792), (10.0, 16), (3.0, 8), (24.0, 24), (60.0, 64)] {
            assert_eq!(make_divisible(v, 8), want, "{v}");
        }
    }
}

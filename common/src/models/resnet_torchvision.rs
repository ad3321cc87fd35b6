//! The ImageNet ResNets (He et al., CVPR 2016, §3.3 and Table 1) as torchvision's
//! `torchvision.models.resnet.ResNet` builds them: `BasicBlock` (two 3x3 convolutions; ResNet-18
//! and -34) or `Bottleneck` (1x1, 3x3, 1x1 with expansion 4; ResNet-50, -101, -152, the stride on
//! the 3x3 convolution as torchvision's "ResNet v1.5"), projection shortcuts (`downsample.0/1`)
//! where the shape changes, `zero_init_residual` (the last batch norm of every block starts at
//! zero, Goyal et al. 2017 §5.1).
//!
//! Stems: `imagenet` (7x7/2 convolution and 3x3/2 max pool), `cifar` (3x3/1 convolution and no
//! pool: the CIFAR ResNet-18 of prune-then-distill and most CIFAR distillation code), and the
//! ResNet-D stem (He et al., "Bag of Tricks", CVPR 2019, §4.1: three 3x3 convolutions, widths
//! 32, 32, 64) that comes with ResNet-D's average-pool shortcut (2x2 average pool, then a
//! stride-1 1x1 convolution), as timm's `resnet50d` and PaddleClas' `ResNet50_vd`.
//!
//! Tensor names are torchvision's (`conv1.weight`, `layer1.0.bn2.running_var`,
//! `layer2.0.downsample.0.weight`, `fc.weight`); ResNet-D's are timm's (`conv1.0.weight` ...
//! `conv1.6.weight`, `layer2.0.downsample.1.weight`).

use super::head::{self, Head, HeadSpec};
use super::layers::{batch_norm_relu, bn, conv, global_avg_pool, scaled};
use super::sequential::{self, Layer};
use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Identity, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// The first layers of an ImageNet ResNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stem {
    /// 7x7/2 convolution, batch norm, ReLU, 3x3/2 max pool: 224 px in, 56 px into `layer1`.
    #[default]
    Imagenet,
    /// 3x3/1 convolution, batch norm, ReLU, no pool: 32 px in, 32 px into `layer1`.
    Cifar,
}

/// The depths torchvision builds and their blocks per stage (Table 1).
pub const DEPTHS: [(usize, [usize; 4]); 5] =
    [(18, [2, 2, 2, 2]), (34, [3, 4, 6, 3]), (50, [3, 4, 6, 3]), (101, [3, 4, 23, 3]), (152, [3, 8, 36, 3])];

/// Blocks per stage of ResNet-`depth`, `None` for depths torchvision does not build.
pub fn blocks_per_stage(depth: usize) -> Option<[usize; 4]> {
    DEPTHS.iter().find(|(d, _)| *d == depth).map(|(_, blocks)| *blocks)
}

/// Bottleneck blocks (expansion 4) from ResNet-50 on, basic blocks below.
pub fn is_bottleneck(depth: usize) -> bool {
    depth >= 50
}

/// Output width of a block per unit of its `planes` (torchvision's `expansion`).
pub fn expansion(depth: usize) -> usize {
    if is_bottleneck(depth) { 4 } else { 1 }
}

/// How a torchvision ResNet is shaped.
#[derive(Clone, Copy, Debug)]
pub struct ResNetShape<'a> {
    /// 18, 34, 50, 101 or 152.
    pub depth: usize,
    /// The ResNet-D stem and shortcut.
    pub variant_d: bool,
    /// Stem when not ResNet-D.
    pub stem: Stem,
    /// Width multiplier of every channel count.
    pub width: f32,
    /// `ModelSpec::channels`: stem width, the four stages' output widths, then optionally the
    /// inner width (`planes`) of every block in order.
    pub channels: Option<&'a [usize]>,
    /// Start every block's last batch-norm scale at zero.
    pub zero_init_residual: bool,
}

/// The stem convolution: one convolution, or ResNet-D's three (`conv1.0`, `conv1.3`,
/// `conv1.6` with batch norms at 1 and 4).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per network; boxing would change the module tree
pub enum StemConv {
    /// torchvision's `conv1`.
    Single(Conv2d),
    /// ResNet-D's `conv1` sequential.
    Deep(Vec<Layer>),
}

/// A basic block (`conv3` absent) or a bottleneck block, with its shortcut.
#[derive(Module, Debug)]
pub struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Option<Conv2d>,
    bn3: Option<BatchNorm>,
    /// Projection shortcut; empty for the identity.
    downsample: Vec<Layer>,
}

impl Block {
    fn new(c_in: usize, planes: usize, c_out: usize, stride: usize, shape: &ResNetShape, device: &Device) -> Self {
        let bottleneck = is_bottleneck(shape.depth);
        let downsample = if stride != 1 || c_in != c_out {
            let mut layers = Vec::new();
            if shape.variant_d {
                // timm's `downsample_avg`: the pool takes the stride, the convolution none.
                layers.push(if stride > 1 {
                    Layer::AvgPool(
                        AvgPool2dConfig::new([2, 2])
                            .with_strides([stride, stride])
                            .with_ceil_mode(true)
                            .with_count_include_pad(false)
                            .init(),
                    )
                } else {
                    Layer::Identity(Identity::new())
                });
                layers.push(Layer::Conv(conv(c_in, c_out, 1, 1, 1, device)));
            } else {
                layers.push(Layer::Conv(conv(c_in, c_out, 1, stride, 1, device)));
            }
            layers.push(Layer::Norm(bn(c_out, device)));
            layers
        } else {
            Vec::new()
        };
        let mut block = if bottleneck {
            Self {
                conv1: conv(c_in, planes, 1, 1, 1, device),
                bn1: bn(planes, device),
                conv2: conv(planes, planes, 3, stride, 1, device),
                bn2: bn(planes, device),
                conv3: Some(conv(planes, c_out, 1, 1, 1, device)),
                bn3: Some(bn(c_out, device)),
                downsample,
            }
        } else {
            Self {
                conv1: conv(c_in, planes, 3, stride, 1, device),
                bn1: bn(planes, device),
                conv2: conv(planes, c_out, 3, 1, 1, device),
                bn2: bn(c_out, device),
                conv3: None,
                bn3: None,
                downsample,
            }
        };
        if shape.zero_init_residual {
            let last = block.bn3.as_mut().unwrap_or(&mut block.bn2);
            let c = last.gamma.dims()[0];
            last.gamma = Param::from_tensor(Tensor::zeros([c], device));
        }
        block
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut =
            if self.downsample.is_empty() { x.clone() } else { sequential::forward(&self.downsample, x.clone()) };
        let out = batch_norm_relu(&self.bn1, self.conv1.forward(x));
        let out = match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => bn3.forward(conv3.forward(batch_norm_relu(&self.bn2, self.conv2.forward(out)))),
            _ => self.bn2.forward(self.conv2.forward(out)),
        };
        relu(out + shortcut)
    }
}

/// torchvision's ResNet (and timm's ResNet-D).
#[derive(Module, Debug)]
pub struct TorchvisionResNet {
    conv1: StemConv,
    bn1: BatchNorm,
    maxpool: Option<MaxPool2d>,
    layer1: Vec<Block>,
    layer2: Vec<Block>,
    layer3: Vec<Block>,
    layer4: Vec<Block>,
    fc: Option<Head>,
}

impl TorchvisionResNet {
    /// Builds the network; `shape.depth` must be one of [`DEPTHS`] and a `channels` plan the
    /// length [`plan_lengths`] gives (checked by `ModelSpec::validate`).
    pub fn new(shape: &ResNetShape, in_channels: usize, num_classes: usize, head: HeadSpec, device: &Device) -> Self {
        let blocks = blocks_per_stage(shape.depth).expect("depth checked by ModelSpec::validate");
        let expansion = expansion(shape.depth);
        let planes = [64, 128, 256, 512].map(|p| scaled(p, shape.width));
        let (stem_width, outputs) = match shape.channels {
            Some(c) => (c[0], [c[1], c[2], c[3], c[4]]),
            None => (scaled(64, shape.width), planes.map(|p| p * expansion)),
        };
        let mut inner = shape.channels.map(|c| c[5..].iter().copied()).into_iter().flatten();
        let conv1 = if shape.variant_d {
            // The deep stem's inner convolutions are half its output wide (32 and 64 at width 1).
            let half = if shape.channels.is_some() { stem_width.div_ceil(2) } else { scaled(32, shape.width) };
            let mut layers =
                sequential::conv_norm_activation(in_channels, half, 3, 2, 1, sequential::Activation::Relu, device);
            layers.extend(sequential::conv_norm_activation(half, half, 3, 1, 1, sequential::Activation::Relu, device));
            layers.push(Layer::Conv(conv(half, stem_width, 3, 1, 1, device)));
            StemConv::Deep(layers)
        } else if shape.stem == Stem::Cifar {
            StemConv::Single(conv(in_channels, stem_width, 3, 1, 1, device))
        } else {
            StemConv::Single(conv(in_channels, stem_width, 7, 2, 1, device))
        };
        let pooled = shape.variant_d || shape.stem == Stem::Imagenet;
        let maxpool = pooled.then(|| {
            MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init()
        });
        let mut c_in = stem_width;
        let mut stages: Vec<Vec<Block>> = Vec::with_capacity(4);
        for (stage, &n) in blocks.iter().enumerate() {
            let stride = if stage == 0 { 1 } else { 2 };
            let c_out = outputs[stage];
            let layer = (0..n)
                .map(|i| {
                    let p = inner.next().unwrap_or(planes[stage]);
                    let block = Block::new(c_in, p, c_out, if i == 0 { stride } else { 1 }, shape, device);
                    c_in = c_out;
                    block
                })
                .collect();
            stages.push(layer);
        }
        let [layer1, layer2, layer3, layer4]: [Vec<Block>; 4] = stages.try_into().expect("four stages");
        Self {
            conv1,
            bn1: bn(stem_width, device),
            maxpool,
            layer1,
            layer2,
            layer3,
            layer4,
            fc: head.init(c_in, num_classes, device),
        }
    }

    /// Pooled embedding: `[B, C_in, H, W] -> [B, 512 * expansion * width]`.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = match &self.conv1 {
            StemConv::Single(conv) => conv.forward(x),
            StemConv::Deep(layers) => sequential::forward(layers, x),
        };
        let x = batch_norm_relu(&self.bn1, x);
        let x = match &self.maxpool {
            Some(pool) => pool.forward(x),
            None => x,
        };
        let x =
            self.layer1.iter().chain(&self.layer2).chain(&self.layer3).chain(&self.layer4).fold(x, |x, b| b.forward(x));
        global_avg_pool(x)
    }

    /// Logits: `[B, C_in, H, W] -> [B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        head::apply(&self.fc, self.forward_features(x))
    }
}

/// The lengths a `channels` plan of ResNet-`depth` may have: stem and four stage widths (5),
/// or those and every block's inner width.
pub fn plan_lengths(depth: usize) -> [usize; 2] {
    let blocks: usize = blocks_per_stage(depth).map_or(0, |b| b.iter().sum());
    [5, 5 + blocks]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::trainable_params;

    fn build(depth: usize, variant_d: bool, stem: Stem, classes: usize) -> TorchvisionResNet {
        let shape = ResNetShape { depth, variant_d, stem, width: 1.0, channels: None, zero_init_residual: false };
        TorchvisionResNet::new(&shape, 3, classes, HeadSpec::Classifier, &Device::flex())
    }

    /// `sum(p.numel() for p in torchvision.models.resnetN().parameters())` as torchvision's model
    /// documentation lists it ("num_params"): 11,689,512 / 21,797,672 / 25,557,032; timm's
    /// `resnet50d` model card: 25,576,264 (the deep stem's 3x3 convolutions 864 + 9,216 +
    /// 18,432 and their batch norms replace the 7x7 convolution's 9,408).
    #[test]
    fn parameter_counts_match_torchvision_and_timm() {
        assert_eq!(trainable_params(&build(18, false, Stem::Imagenet, 1000)), 11_689_512);
        assert_eq!(trainable_params(&build(34, false, Stem::Imagenet, 1000)), 21_797_672);
        assert_eq!(trainable_params(&build(50, false, Stem::Imagenet, 1000)), 25_557_032);
        assert_eq!(trainable_params(&build(50, true, Stem::Imagenet, 1000)), 25_576_264);
        // The CIFAR stem: a 3x3 instead of a 7x7 convolution, 64 * 3 * (49 - 9) fewer weights, and
        // a 10-class head: 11,689,512 - 7,680 - 513,000 + 5,130 = 11,173,962 (the 11.17 M of the
        // CIFAR ResNet-18 of the KD literature).
        assert_eq!(trainable_params(&build(18, false, Stem::Cifar, 10)), 11_173_962);
    }

    /// Spatial sizes: an ImageNet stem divides by 32 before the pool, the CIFAR stem by 8.
    #[test]
    fn forward_shapes() {
        let device = Device::flex();
        for (depth, d, stem, side) in
            [(18, false, Stem::Cifar, 16), (50, true, Stem::Imagenet, 64), (34, false, Stem::Imagenet, 40)]
        {
            let shape =
                ResNetShape { depth, variant_d: d, stem, width: 0.125, channels: None, zero_init_residual: true };
            let net = TorchvisionResNet::new(&shape, 3, 5, HeadSpec::Classifier, &device);
            let x = Tensor::<4>::ones([2, 3, side, side], &device);
            assert_eq!(net.forward(x.clone()).dims(), [2, 5]);
            assert_eq!(net.forward_features(x).dims(), [2, 64 * expansion(depth)]);
        }
    }
}

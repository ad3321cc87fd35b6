//! The model zoo: every network takes its input channels and class count, and exposes the pooled
//! embedding (`forward_features`) besides the logits (`forward`).

#[cfg(feature = "flex-fused")]
mod batch_norm_relu;
pub mod discriminator;
pub mod efficientnet;
pub mod float32;
#[cfg(test)]
mod grouped_conv_check;
pub mod head;
mod layers;
pub mod mobilenet_v2;
pub mod mobilenet_v2_torchvision;
pub mod mobilenet_v3;
pub mod resnet;
pub mod resnet_torchvision;
pub mod sequential;
pub mod small_cnn;
pub mod squeeze_excitation;
pub mod stochastic_depth;
pub mod vgg;

pub use discriminator::Discriminator;
pub use efficientnet::EfficientNet;
pub use head::{Head, HeadSpec};
pub use mobilenet_v2::MobileNetV2;
pub use mobilenet_v2_torchvision::TorchvisionMobileNetV2;
pub use mobilenet_v3::{MobileNetV3, MobileNetV3Size};
pub use resnet::{ResNet, Shortcut};
pub use resnet_torchvision::{ResNetShape, Stem, TorchvisionResNet};
pub use small_cnn::SmallCnn;
pub use vgg::{PlanItem, Vgg};

use crate::error::{Error, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use std::fmt;
use std::str::FromStr;

/// The widest layer a spec may ask for: a 3x3 convolution of this width in and out has 38 M
/// weights, so a hostile sidecar cannot make kdkit allocate without bound.
pub const MAX_CHANNELS: usize = 2048;

/// The largest width multiplier of the ImageNet families: ResNet's 512-channel stage at 4x is
/// [`MAX_CHANNELS`] wide.
pub const IMAGENET_MAX_WIDTH: f32 = 4.0;

/// Architecture names as written on the command line and in checkpoint sidecars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Arch {
    /// CIFAR ResNet-(6n+2) with n blocks per stage: 20, 32, 44, 56, 110.
    ResNet(usize),
    /// torchvision's ImageNet ResNet-18/34/50/101/152 (any [`Stem`]).
    TorchvisionResNet(usize),
    /// ResNet-D (timm `resnet50d`, PaddleClas `ResNet50_vd`): deep stem, average-pool shortcut.
    ResNetD(usize),
    /// VGG-BN 11/13/16/19, or a custom plan (depth 0).
    Vgg(usize),
    /// MobileNetV2 for small inputs (kdkit's CIFAR adaptation).
    MobileNetV2,
    /// torchvision's MobileNetV2 (224 px).
    TorchvisionMobileNetV2,
    /// torchvision's MobileNetV3-Large.
    MobileNetV3Large,
    /// torchvision's MobileNetV3-Small.
    MobileNetV3Small,
    /// torchvision's EfficientNet-B0.
    EfficientNetB0,
    /// The small three-stage CNN.
    SmallCnn,
}

/// One line of `kd-import --list`: a canonical name, what it is, the other names it accepts.
pub struct ArchInfo {
    /// The name kdkit writes.
    pub name: &'static str,
    /// Paper and implementation followed.
    pub description: &'static str,
    /// Other accepted spellings (torchvision's and timm's model names).
    pub aliases: &'static [&'static str],
}

impl Arch {
    /// Every architecture name accepted by [`FromStr`] (canonical spellings).
    pub const NAMES: &'static [&'static str] = &[
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet18d",
        "resnet34d",
        "resnet50d",
        "resnet101d",
        "resnet152d",
        "vgg11",
        "vgg13",
        "vgg16",
        "vgg19",
        "vgg-custom",
        "mobilenetv2",
        "mobilenet-v2",
        "mobilenet-v3-large",
        "mobilenet-v3-small",
        "efficientnet-b0",
        "small-cnn",
    ];

    /// The architectures with their descriptions and aliases, for `--list`.
    pub const INFO: &'static [ArchInfo] = &[
        ArchInfo {
            name: "resnet20, resnet32, resnet44, resnet56, resnet110, cifar-resnet<6n+2>",
            description: "CIFAR ResNet-(6n+2) (He et al. 2016 §4.2), 16-32-64 channels, option A or B shortcuts",
            aliases: &[],
        },
        ArchInfo {
            name: "resnet18, resnet34, resnet50, resnet101, resnet152",
            description: "torchvision ResNet (v1.5: stride on the 3x3); stem imagenet (7x7 + max pool) or cifar (3x3)",
            aliases: &["timm resnet18 ... resnet152"],
        },
        ArchInfo {
            name: "resnet18d, resnet34d, resnet50d, resnet101d, resnet152d",
            description: "ResNet-D (He et al. 2019 §4.1): deep stem, average-pool shortcut; timm names",
            aliases: &["ResNet50_vd (PaddleClas)"],
        },
        ArchInfo {
            name: "vgg11, vgg13, vgg16, vgg19, vgg-custom",
            description: "VGG with batch norm, CIFAR layout (one linear classifier)",
            aliases: &[],
        },
        ArchInfo {
            name: "mobilenetv2",
            description: "MobileNetV2 adapted to 32 px inputs (stride-1 stem), kdkit names",
            aliases: &[],
        },
        ArchInfo {
            name: "mobilenet-v2",
            description: "torchvision MobileNetV2 (Sandler et al. 2018), 224 px",
            aliases: &["mobilenet_v2"],
        },
        ArchInfo {
            name: "mobilenet-v3-large",
            description: "torchvision MobileNetV3-Large (Howard et al. 2019)",
            aliases: &["mobilenet_v3_large", "mobilenetv3_large_100"],
        },
        ArchInfo {
            name: "mobilenet-v3-small",
            description: "torchvision MobileNetV3-Small (Howard et al. 2019)",
            aliases: &["mobilenet_v3_small", "mobilenetv3_small_100"],
        },
        ArchInfo {
            name: "efficientnet-b0",
            description: "torchvision EfficientNet-B0 (Tan & Le 2019), stochastic depth 0.2",
            aliases: &["efficientnet_b0"],
        },
        ArchInfo { name: "small-cnn", description: "three 3x3 conv stages, for quick CPU runs", aliases: &[] },
    ];

    /// The name of the head's tensors (`fc`, `classifier.1`, ...): what `--new-head` replaces.
    pub fn head_name(self) -> &'static str {
        match self {
            Self::ResNet(_) | Self::TorchvisionResNet(_) | Self::ResNetD(_) | Self::SmallCnn => "fc",
            Self::Vgg(_) | Self::MobileNetV2 => "classifier",
            Self::TorchvisionMobileNetV2 | Self::EfficientNetB0 => "classifier.1",
            Self::MobileNetV3Large | Self::MobileNetV3Small => "classifier.3",
        }
    }

    /// True for the ImageNet families (224 px input, ImageNet normalisation by default).
    pub fn is_imagenet_family(self) -> bool {
        matches!(
            self,
            Self::TorchvisionResNet(_)
                | Self::ResNetD(_)
                | Self::TorchvisionMobileNetV2
                | Self::MobileNetV3Large
                | Self::MobileNetV3Small
                | Self::EfficientNetB0
        )
    }
}

impl FromStr for Arch {
    type Err = Error;
    fn from_str(name: &str) -> Result<Self> {
        let unknown =
            || Error::InvalidModel(format!("unknown architecture `{name}`; known: {}", Arch::NAMES.join(", ")));
        let cifar_depth = |depth: usize| (8..=1202).contains(&depth) && (depth - 2).is_multiple_of(6);
        match name {
            "mobilenetv2" => Ok(Self::MobileNetV2),
            "mobilenet-v2" | "mobilenet_v2" => Ok(Self::TorchvisionMobileNetV2),
            "mobilenet-v3-large" | "mobilenet_v3_large" | "mobilenetv3_large_100" | "mobilenetv3-large" => {
                Ok(Self::MobileNetV3Large)
            }
            "mobilenet-v3-small" | "mobilenet_v3_small" | "mobilenetv3_small_100" | "mobilenetv3-small" => {
                Ok(Self::MobileNetV3Small)
            }
            "efficientnet-b0" | "efficientnet_b0" => Ok(Self::EfficientNetB0),
            "small-cnn" => Ok(Self::SmallCnn),
            "vgg-custom" => Ok(Self::Vgg(0)),
            _ => {
                // torchvision's depths win over the CIFAR ResNets' (50 and 152 are both); the
                // CIFAR ones are always reachable as `cifar-resnet<depth>`.
                if let Some(depth) = name.strip_prefix("cifar-resnet").and_then(|d| d.parse::<usize>().ok()) {
                    if cifar_depth(depth) {
                        return Ok(Self::ResNet(depth));
                    }
                } else if let Some(depth) =
                    name.strip_prefix("resnet").and_then(|d| d.strip_suffix('d')).and_then(|d| d.parse::<usize>().ok())
                {
                    if resnet_torchvision::blocks_per_stage(depth).is_some() {
                        return Ok(Self::ResNetD(depth));
                    }
                } else if let Some(depth) = name.strip_prefix("resnet").and_then(|d| d.parse::<usize>().ok()) {
                    if resnet_torchvision::blocks_per_stage(depth).is_some() {
                        return Ok(Self::TorchvisionResNet(depth));
                    }
                    if cifar_depth(depth) {
                        return Ok(Self::ResNet(depth));
                    }
                } else if let Some(depth) = name.strip_prefix("vgg").and_then(|d| d.parse::<usize>().ok())
                    && vgg::standard_plan(depth).is_some()
                {
                    return Ok(Self::Vgg(depth));
                }
                Err(unknown())
            }
        }
    }
}

impl TryFrom<String> for Arch {
    type Error = Error;
    fn try_from(name: String) -> Result<Self> {
        name.parse()
    }
}

impl From<Arch> for String {
    fn from(arch: Arch) -> String {
        arch.to_string()
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ResNet(depth) if resnet_torchvision::blocks_per_stage(*depth).is_some() => {
                write!(f, "cifar-resnet{depth}")
            }
            Self::ResNet(depth) => write!(f, "resnet{depth}"),
            Self::TorchvisionResNet(depth) => write!(f, "resnet{depth}"),
            Self::ResNetD(depth) => write!(f, "resnet{depth}d"),
            Self::Vgg(0) => write!(f, "vgg-custom"),
            Self::Vgg(depth) => write!(f, "vgg{depth}"),
            Self::MobileNetV2 => write!(f, "mobilenetv2"),
            Self::TorchvisionMobileNetV2 => write!(f, "mobilenet-v2"),
            Self::MobileNetV3Large => write!(f, "mobilenet-v3-large"),
            Self::MobileNetV3Small => write!(f, "mobilenet-v3-small"),
            Self::EfficientNetB0 => write!(f, "efficientnet-b0"),
            Self::SmallCnn => write!(f, "small-cnn"),
        }
    }
}

fn default_width() -> f32 {
    1.0
}

/// Whether `value` is its type's default (serde's `skip_serializing_if` for optional fields).
pub fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Everything needed to rebuild a network: stored in every checkpoint sidecar.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Architecture.
    pub arch: Arch,
    /// Channel width multiplier (ResNet, MobileNetV2, small CNN).
    #[serde(default = "default_width")]
    pub width: f32,
    /// CIFAR ResNet shortcut type.
    #[serde(default)]
    pub shortcut: Shortcut,
    /// Stem of a torchvision ResNet (`imagenet` or `cifar`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub stem: Stem,
    /// torchvision's `zero_init_residual`: every residual block's last batch-norm scale starts
    /// at zero (initialisation only).
    #[serde(default, skip_serializing_if = "is_default")]
    pub zero_init_residual: bool,
    /// Batch-norm epsilon of MobileNetV3 where it is not torchvision's 1e-3 (timm's
    /// `mobilenetv3_large_100` uses 1e-5); the other families use their source's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_eps: Option<f64>,
    /// VGG channel plan; required for `vgg-custom`, filled in for standard depths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<PlanItem>>,
    /// Per-stage channel counts replacing the width multiplier's (a student shaped by a pruned
    /// teacher). torchvision ResNet / ResNet-D: the stem width and the four stages' output
    /// widths, optionally followed by every block's inner width (`planes`). CIFAR ResNet: the three stage widths, optionally followed by the inner width
    /// (`conv1`'s output) of every block in order (3 + 3n values; residual additions force one
    /// width per stage, the inner width is free); small CNN: its three convolutions;
    /// MobileNetV2: the stem, the seven stages of Table 2 and the last 1x1 convolution (9).
    /// VGG uses `plan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<usize>>,
    /// What follows the pooled embedding (default: a classifier of `num_classes`).
    #[serde(default, skip_serializing_if = "HeadSpec::is_classifier")]
    pub head: HeadSpec,
    /// Input channels (1 for Fashion-MNIST, 3 for CIFAR).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
}

impl ModelSpec {
    /// A spec with default width and shortcut; the plan of a standard VGG is filled in.
    pub fn new(arch: Arch, in_channels: usize, num_classes: usize) -> Self {
        let plan = match arch {
            Arch::Vgg(depth) if depth > 0 => vgg::standard_plan(depth),
            _ => None,
        };
        Self {
            arch,
            width: 1.0,
            shortcut: Shortcut::Pad,
            stem: Stem::Imagenet,
            zero_init_residual: false,
            norm_eps: None,
            plan,
            channels: None,
            head: HeadSpec::Classifier,
            in_channels,
            num_classes,
        }
    }

    /// Checks that the spec describes a network that can be built: sizes, the channel plan's
    /// length and widths, the head.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidModel(m));
        if self.in_channels == 0 || self.in_channels > 4096 {
            return bad(format!("input channels must be between 1 and 4096, got {}", self.in_channels));
        }
        match self.head {
            HeadSpec::Classifier if self.num_classes < 2 || self.num_classes > 1 << 17 => {
                return bad(format!("a classifier needs between 2 and 131072 classes, got {}", self.num_classes));
            }
            HeadSpec::Projection { hidden, out } if hidden == 0 || out == 0 || hidden > 1 << 14 || out > 1 << 14 => {
                return bad(format!("projection head widths must be between 1 and 16384, got {hidden} and {out}"));
            }
            _ => {}
        }
        if !(self.width.is_finite() && self.width > 0.0 && self.width <= 16.0) {
            return bad(format!("width multiplier must be in (0, 16], got {}", self.width));
        }
        // The ImageNet families are 16-32 times wider than the CIFAR ones at width 1: at most 4,
        // so their widest 3x3 convolution (ResNet's 512 x width) stays within MAX_CHANNELS.
        if self.arch.is_imagenet_family() && self.width > IMAGENET_MAX_WIDTH {
            return bad(format!(
                "{} takes a width multiplier of at most {IMAGENET_MAX_WIDTH}, got {}",
                self.arch, self.width
            ));
        }
        if let Some(channels) = &self.channels {
            let expected: Vec<usize> = match self.arch {
                Arch::ResNet(depth) => vec![3, 3 + 3 * ((depth - 2) / 6)],
                Arch::TorchvisionResNet(depth) | Arch::ResNetD(depth) => {
                    resnet_torchvision::plan_lengths(depth).to_vec()
                }
                Arch::SmallCnn => vec![3],
                Arch::MobileNetV2 => vec![9],
                Arch::Vgg(_) => return bad("VGG takes a `plan`, not `channels`".into()),
                Arch::TorchvisionMobileNetV2
                | Arch::MobileNetV3Large
                | Arch::MobileNetV3Small
                | Arch::EfficientNetB0 => {
                    return bad(format!("{} takes no channel plan (only a width multiplier)", self.arch));
                }
            };
            if !expected.contains(&channels.len()) {
                return bad(format!("{} takes {expected:?} channel counts, got {}", self.arch, channels.len()));
            }
            if let Some(c) = channels.iter().find(|&&c| c == 0 || c > MAX_CHANNELS) {
                return bad(format!("channel counts must be between 1 and {MAX_CHANNELS}, got {c}"));
            }
            if matches!(self.arch, Arch::ResNet(_))
                && self.shortcut == Shortcut::Pad
                && (channels[1] < channels[0] || channels[2] < channels[1])
            {
                return bad(format!(
                    "option-A (pad) shortcuts cannot narrow a stage: {:?}; use shortcut = \"conv\"",
                    &channels[..3]
                ));
            }
        }
        if self.stem != Stem::Imagenet && !matches!(self.arch, Arch::TorchvisionResNet(_)) {
            return bad(format!("a {:?} stem applies to resnet18 ... resnet152 only, not {}", self.stem, self.arch));
        }
        if self.zero_init_residual && !matches!(self.arch, Arch::TorchvisionResNet(_) | Arch::ResNetD(_)) {
            return bad(format!("zero_init_residual applies to the torchvision ResNets, not {}", self.arch));
        }
        if let Some(eps) = self.norm_eps {
            if !matches!(self.arch, Arch::MobileNetV3Large | Arch::MobileNetV3Small) {
                return bad(format!("norm_eps applies to the MobileNetV3s, not {}", self.arch));
            }
            if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
                return bad(format!("norm_eps must be in (0, 1), got {eps}"));
            }
        }
        if let Some(plan) = &self.plan {
            if !matches!(self.arch, Arch::Vgg(_)) {
                return bad(format!("{} takes no VGG plan", self.arch));
            }
            if let Some(c) = plan.iter().find_map(|p| match p {
                PlanItem::Conv(c) if *c == 0 || *c > MAX_CHANNELS => Some(*c),
                _ => None,
            }) {
                return bad(format!("VGG plan widths must be between 1 and {MAX_CHANNELS}, got {c}"));
            }
        }
        Ok(())
    }

    /// Checks the spec and builds the network with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> Result<Network> {
        self.validate()?;
        let channels = self.channels.as_deref();
        Ok(match self.arch {
            Arch::ResNet(depth) => Network::ResNet(ResNet::new(
                (depth - 2) / 6,
                self.width,
                channels,
                self.shortcut,
                self.in_channels,
                self.num_classes,
                self.head,
                device,
            )),
            Arch::TorchvisionResNet(depth) | Arch::ResNetD(depth) => {
                let shape = ResNetShape {
                    depth,
                    variant_d: matches!(self.arch, Arch::ResNetD(_)),
                    stem: self.stem,
                    width: self.width,
                    channels,
                    zero_init_residual: self.zero_init_residual,
                };
                Network::TorchvisionResNet(TorchvisionResNet::new(
                    &shape,
                    self.in_channels,
                    self.num_classes,
                    self.head,
                    device,
                ))
            }
            Arch::TorchvisionMobileNetV2 => Network::TorchvisionMobileNetV2(TorchvisionMobileNetV2::new(
                self.width,
                self.in_channels,
                self.num_classes,
                self.head,
                device,
            )),
            Arch::MobileNetV3Large | Arch::MobileNetV3Small => {
                let size =
                    if self.arch == Arch::MobileNetV3Large { MobileNetV3Size::Large } else { MobileNetV3Size::Small };
                Network::MobileNetV3(MobileNetV3::new(
                    size,
                    self.width,
                    self.norm_eps.unwrap_or(mobilenet_v3::TORCHVISION_NORM_EPS),
                    self.in_channels,
                    self.num_classes,
                    self.head,
                    device,
                ))
            }
            Arch::EfficientNetB0 => Network::EfficientNet(EfficientNet::new(
                self.width,
                self.in_channels,
                self.num_classes,
                self.head,
                device,
            )),
            Arch::Vgg(_) => {
                let plan = self.plan.as_ref().ok_or_else(|| Error::InvalidModel("vgg-custom needs a plan".into()))?;
                let plan = vgg::scaled_plan(plan, self.width);
                Network::Vgg(Vgg::new(&plan, self.in_channels, self.num_classes, self.head, device)?)
            }
            Arch::MobileNetV2 => Network::MobileNetV2(MobileNetV2::new(
                self.width,
                channels,
                self.in_channels,
                self.num_classes,
                self.head,
                device,
            )),
            Arch::SmallCnn => Network::SmallCnn(SmallCnn::new(
                self.width,
                channels,
                self.in_channels,
                self.num_classes,
                self.head,
                device,
            )),
        })
    }
}

/// Any network of the zoo.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per model; boxing would change the module tree
pub enum Network {
    /// CIFAR ResNet.
    ResNet(ResNet),
    /// torchvision ResNet or ResNet-D.
    TorchvisionResNet(TorchvisionResNet),
    /// VGG-BN from a plan.
    Vgg(Vgg),
    /// MobileNetV2 for small inputs.
    MobileNetV2(MobileNetV2),
    /// torchvision MobileNetV2.
    TorchvisionMobileNetV2(TorchvisionMobileNetV2),
    /// torchvision MobileNetV3 (Large or Small).
    MobileNetV3(MobileNetV3),
    /// torchvision EfficientNet-B0.
    EfficientNet(EfficientNet),
    /// Small CNN.
    SmallCnn(SmallCnn),
}

/// Number of trainable parameters (weights, biases, BN scale and shift); BN running statistics
/// are buffers and are not counted, as in PyTorch's `sum(p.numel() for p in model.parameters())`.
pub fn trainable_params<M: Module>(module: &M) -> usize {
    struct Counter(usize, Vec<String>);
    impl burn::module::ModuleVisitor for Counter {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let is_buffer = self.1.last().is_some_and(|n| n.starts_with("running_"));
            if !is_buffer {
                self.0 += param.shape().num_elements();
            }
        }
    }
    let mut counter = Counter(0, Vec::new());
    module.visit(&mut counter);
    counter.0
}

impl Network {
    /// The head's output: logits `[B, classes]` for a classifier, the projection for a
    /// projection head, the embedding for a feature-only network.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Self::ResNet(m) => m.forward(x),
            Self::TorchvisionResNet(m) => m.forward(x),
            Self::Vgg(m) => m.forward(x),
            Self::MobileNetV2(m) => m.forward(x),
            Self::TorchvisionMobileNetV2(m) => m.forward(x),
            Self::MobileNetV3(m) => m.forward(x),
            Self::EfficientNet(m) => m.forward(x),
            Self::SmallCnn(m) => m.forward(x),
        }
    }

    /// Pooled embedding before the classifier: `[B, C_in, H, W] -> [B, D]`.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Self::ResNet(m) => m.forward_features(x),
            Self::TorchvisionResNet(m) => m.forward_features(x),
            Self::Vgg(m) => m.forward_features(x),
            Self::MobileNetV2(m) => m.forward_features(x),
            Self::TorchvisionMobileNetV2(m) => m.forward_features(x),
            Self::MobileNetV3(m) => m.forward_features(x),
            Self::EfficientNet(m) => m.forward_features(x),
            Self::SmallCnn(m) => m.forward_features(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Structure, not numerics: these tests build networks on the CPU backend (the backends'
    /// numerics are covered by the loss tests and the end-to-end tests on wgpu).
    fn cpu() -> Device {
        Device::flex()
    }

    fn params(name: &str, classes: usize) -> usize {
        let spec = ModelSpec::new(name.parse().unwrap(), 3, classes);
        trainable_params(&spec.init(&cpu()).unwrap())
    }

    /// Published counts (He et al. 2016, §4.2: ResNet-20 0.27 M, ResNet-56 0.85 M, ResNet-110
    /// 1.7 M). Exact values by hand for option A, 3 input channels, 10 classes (conv weights +
    /// BN gamma/beta + fc; running statistics are buffers, not parameters):
    /// ResNet-20: stem 432 + 32; stage 1: 3 x (2*2304 + 64) = 14,016; stage 2:
    /// (4608 + 9216 + 128) plus 2 x (2*9216 + 128) = 51,072; stage 3: (18432 + 36864 + 256) plus
    /// 2 x (2*36864 + 256) = 203,520; fc 650; total 269,722. ResNet-56 (9 blocks a stage) the same way: 853,018.
    #[test]
    fn resnet_parameter_counts_match_the_paper() {
        assert_eq!(params("resnet20", 10), 269_722);
        assert_eq!(params("resnet56", 10), 853_018);
        let r110 = params("resnet110", 10) as f64;
        assert!((r110 / 1.7e6 - 1.0).abs() < 0.02, "{r110}");
    }

    /// VGG-11-BN: each bias-free 3x3 conv has 9*c_in*c_out weights and its BN 2*c_out; the head
    /// is a 512 -> 10 linear layer.
    #[test]
    fn vgg11_parameter_count() {
        let convs: [(usize, usize); 8] =
            [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)];
        let expected: usize = convs.iter().map(|(i, o)| 9 * i * o + 2 * o).sum::<usize>() + 512 * 10 + 10;
        assert_eq!(params("vgg11", 10), expected);
    }

    /// A sidecar asking for a 16x-wide ResNet-152 (billions of weights) is refused before
    /// anything is built; width 4 is the limit.
    #[test]
    fn imagenet_families_have_a_width_bound() {
        for arch in ["resnet152", "resnet50d", "efficientnet-b0", "mobilenet-v3-large"] {
            let mut spec = ModelSpec::new(arch.parse().unwrap(), 3, 10);
            spec.width = 16.0;
            let error = spec.validate().unwrap_err().to_string();
            assert!(error.contains("at most 4"), "{arch}: {error}");
            spec.width = 4.0;
            spec.validate().unwrap();
        }
    }

    #[test]
    fn every_arch_runs_forward_and_features() {
        let device = cpu();
        for name in Arch::NAMES.iter().filter(|n| !n.contains("custom") && !n.contains("110")) {
            let mut spec = ModelSpec::new(name.parse().unwrap(), 1, 7);
            spec.width = 0.25;
            let net = spec.init(&device).unwrap();
            let x = Tensor::<4>::zeros([2, 1, 12, 12], &device);
            assert_eq!(net.forward(x.clone()).dims(), [2, 7], "{name}");
            assert_eq!(net.forward_features(x).dims()[0], 2, "{name}");
        }
    }

    /// Channel plans: ResNet-8 with stage widths 4, 8, 8 and inner widths 2, 3, 5 has
    /// stem 9*1*4 + 2*4, block 1: 9*4*2 + 4 + 9*2*4 + 8, block 2: 9*4*3 + 6 + 9*3*8 + 16,
    /// block 3: 9*8*5 + 10 + 9*5*8 + 16, fc 8*3 + 3 (by hand).
    #[test]
    fn channel_plans_and_heads() {
        let device = cpu();
        let mut spec = ModelSpec::new(Arch::ResNet(8), 1, 3);
        spec.channels = Some(vec![4, 8, 8, 2, 3, 5]);
        let expected = (36 + 8) + (72 + 4 + 72 + 8) + (108 + 6 + 216 + 16) + (360 + 10 + 360 + 16) + 27;
        assert_eq!(trainable_params(&spec.init(&device).unwrap()), expected);
        spec.channels = Some(vec![8, 4, 8]);
        assert!(spec.init(&device).unwrap_err().to_string().contains("cannot narrow"));
        spec.channels = Some(vec![8, 4]);
        assert!(spec.init(&device).unwrap_err().to_string().contains("channel counts"));

        let mut encoder = ModelSpec::new(Arch::SmallCnn, 1, 0);
        encoder.channels = Some(vec![4, 8, 16]);
        encoder.head = HeadSpec::None;
        let x = Tensor::<4>::zeros([2, 1, 8, 8], &device);
        assert_eq!(encoder.init(&device).unwrap().forward(x.clone()).dims(), [2, 16]);
        encoder.head = HeadSpec::Projection { hidden: 16, out: 5 };
        assert_eq!(encoder.init(&device).unwrap().forward(x).dims(), [2, 5]);
        let mut mobile = ModelSpec::new(Arch::MobileNetV2, 1, 3);
        mobile.channels = Some(vec![4, 4, 6, 8, 8, 12, 16, 16, 32]);
        let x = Tensor::<4>::zeros([1, 1, 8, 8], &device);
        assert_eq!(mobile.init(&device).unwrap().forward_features(x).dims(), [1, 32]);
    }

    #[test]
    fn arch_names_round_trip_and_reject_unknown() {
        for name in Arch::NAMES {
            assert_eq!(name.parse::<Arch>().unwrap().to_string(), *name);
        }
        assert!("resnet21".parse::<Arch>().is_err());
        assert!("vgg12".parse::<Arch>().is_err());
    }

    #[test]
    fn vgg_custom_plan_from_json() {
        let spec: ModelSpec =
            serde_json::from_str(r#"{"arch":"vgg-custom","plan":[8,"M",16,"M"],"in_channels":1,"num_classes":3}"#)
                .unwrap();
        let net = spec.init(&cpu()).unwrap();
        // 9*1*8 + 2*8 + 9*8*16 + 2*16 + 16*3 + 3
        assert_eq!(trainable_params(&net), 72 + 16 + 1152 + 32 + 48 + 3);
    }
}

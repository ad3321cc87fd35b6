//! Flags that choose the trained network and its optimisation, shared by `kd-pretrain` and
//! `kd-distill`, and how they override a resolved configuration.

use kd_common::models::{Arch, ModelSpec, PlanItem, Shortcut, Stem, is_default};
use kd_common::train::{OptimizerConfig, TrainConfig};

/// Network and optimisation flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrainArgs {
    /// Architecture (overrides the preset; `kd-import --list` prints them all): resnet18/34/50/
    /// 101/152, resnet50d, mobilenet-v2, mobilenet-v3-large/-small, efficientnet-b0; the CIFAR
    /// resnet20/32/44/56/110, vgg11/13/16/19, vgg-custom, mobilenetv2, small-cnn.
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
    /// Channel width multiplier.
    #[arg(long)]
    pub width: Option<f32>,
    /// Stem of a torchvision ResNet: imagenet (7x7/2 + max pool) or cifar (3x3/1, no pool).
    #[arg(long, value_parser = parse_stem)]
    pub stem: Option<Stem>,
    /// Start every residual block's last batch-norm scale at zero (torchvision ResNets).
    #[arg(long)]
    pub zero_init_residual: bool,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size (images, or crops for region-label training).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimizer: sgd (Nesterov, momentum 0.9) or adamw.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f32>,
}

/// `--optimizer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerArg {
    /// SGD with Nesterov momentum 0.9, weight decay 5e-4.
    Sgd,
    /// AdamW, weight decay 0.05.
    Adamw,
}

fn parse_arch(text: &str) -> Result<Arch, String> {
    text.parse().map_err(|e: kd_common::Error| e.to_string())
}

fn parse_stem(text: &str) -> Result<Stem, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| format!("unknown stem `{text}`: imagenet or cifar"))
}

/// The network to build, without the data-dependent input channels and classes.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelChoice {
    /// Architecture.
    pub arch: Arch,
    /// Width multiplier.
    pub width: f32,
    /// ResNet shortcut.
    pub shortcut: Shortcut,
    /// VGG plan (vgg-custom).
    pub plan: Option<Vec<PlanItem>>,
    /// Per-stage channel counts instead of the width multiplier (see `ModelSpec::channels`).
    #[serde(default)]
    pub channels: Option<Vec<usize>>,
    /// Stem of a torchvision ResNet.
    #[serde(default, skip_serializing_if = "is_default")]
    pub stem: Stem,
    /// torchvision's `zero_init_residual`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub zero_init_residual: bool,
    /// MobileNetV3's batch-norm epsilon where it is not torchvision's (an imported timm network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_eps: Option<f64>,
}

impl ModelChoice {
    /// A choice of architecture with default shortcut and no plans.
    pub fn new(arch: Arch, width: f32) -> Self {
        Self {
            arch,
            width,
            shortcut: Shortcut::Pad,
            plan: None,
            channels: None,
            stem: Stem::Imagenet,
            zero_init_residual: false,
            norm_eps: None,
        }
    }

    /// The choice recorded from a built network's spec.
    pub fn from_spec(spec: &ModelSpec) -> Self {
        Self {
            arch: spec.arch,
            width: spec.width,
            shortcut: spec.shortcut,
            plan: spec.plan.clone(),
            channels: spec.channels.clone(),
            stem: spec.stem,
            zero_init_residual: spec.zero_init_residual,
            norm_eps: spec.norm_eps,
        }
    }

    /// The network for `in_channels` inputs and `classes` classes.
    pub fn spec(&self, in_channels: usize, classes: usize) -> ModelSpec {
        let mut spec = ModelSpec::new(self.arch, in_channels, classes);
        spec.width = self.width;
        spec.shortcut = self.shortcut;
        if self.plan.is_some() {
            spec.plan = self.plan.clone();
        }
        spec.channels = self.channels.clone();
        spec.stem = self.stem;
        spec.zero_init_residual = self.zero_init_residual;
        spec.norm_eps = self.norm_eps;
        spec
    }

    /// Checks the choice before any data is read (sizes that depend on the data aside).
    pub fn validate(&self) -> kd_common::Result<()> {
        self.spec(1, 2).validate()
    }
}

impl TrainArgs {
    /// Applies the flags that were given to the network and its optimisation.
    pub fn apply(&self, model: &mut ModelChoice, train: &mut TrainConfig) {
        if let Some(arch) = self.arch {
            model.arch = arch;
        }
        if let Some(width) = self.width {
            model.width = width;
        }
        if let Some(stem) = self.stem {
            model.stem = stem;
        }
        if self.zero_init_residual {
            model.zero_init_residual = true;
        }
        self.apply_schedule(train);
    }

    /// Whether a flag that chooses the network was given.
    pub fn names_a_network(&self) -> bool {
        self.arch.is_some() || self.width.is_some() || self.stem.is_some() || self.zero_init_residual
    }

    /// Applies the flags that were given to the optimisation only.
    pub fn apply_schedule(&self, train: &mut TrainConfig) {
        if let Some(epochs) = self.epochs {
            train.epochs = epochs;
        }
        if let Some(batch) = self.batch_size {
            train.batch_size = batch;
        }
        if let Some(lr) = self.lr {
            train.schedule.lr = lr;
        }
        if let Some(name) = self.optimizer {
            train.optimizer = match name {
                OptimizerArg::Adamw => OptimizerConfig::Adamw { betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.05 },
                OptimizerArg::Sgd => OptimizerConfig::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 },
            };
        }
        if let Some(wd) = self.weight_decay {
            set_weight_decay(train, wd);
        }
    }
}

/// Sets the optimizer's weight decay.
pub fn set_weight_decay(train: &mut TrainConfig, wd: f32) {
    match &mut train.optimizer {
        OptimizerConfig::Sgd { weight_decay, .. } | OptimizerConfig::Adamw { weight_decay, .. } => *weight_decay = wd,
    }
}

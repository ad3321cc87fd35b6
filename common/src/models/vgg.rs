//! VGG with batch norm (Simonyan & Zisserman, ICLR 2015; BN as in torchvision's `vgg*_bn`),
//! built from an explicit per-layer channel plan so that pruning can shape students from plans
//! (prune-then-distill §3: a student whose layer widths follow the pruned teacher's non-zeros).
//!
//! A plan is a list of channel counts and `"M"` (2x2 max pooling), for example VGG-11:
//! `[64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]`. The CIFAR head of
//! prune-then-distill follows: global average pooling and one linear layer. Pools on maps that
//! are already 1 pixel wide are skipped, so every plan also runs on 28x28 inputs.
//! Tensor names: `features.{i}.conv.weight`, `features.{i}.bn.running_var`, `classifier.weight`.

use super::head::{self, Head, HeadSpec};
use super::layers::{ConvBn, batch_norm_relu, global_avg_pool, max_pool_2x2};
use crate::error::{Error, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// One entry of a VGG plan: a 3x3 convolution with this many output channels, or `"M"`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum PlanItem {
    /// A 3x3 conv + BN + ReLU with this many output channels.
    Conv(usize),
    /// `"M"`: 2x2 max pooling.
    Pool(PoolMarker),
}

/// The string `"M"` in a plan.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PoolMarker {
    /// Max pooling.
    M,
}

/// `plan` with every convolution's width multiplied by `width` (rounded, at least 1): the width
/// multiplier of a VGG. 1 leaves the plan as it is.
pub fn scaled_plan(plan: &[PlanItem], width: f32) -> Vec<PlanItem> {
    plan.iter()
        .map(|item| match item {
            PlanItem::Conv(c) if width != 1.0 => PlanItem::Conv(((*c as f32 * width).round() as usize).max(1)),
            other => other.clone(),
        })
        .collect()
}

/// The standard plans of VGG-11/13/16/19 (torchvision's configurations A, B, D, E).
pub fn standard_plan(depth: usize) -> Option<Vec<PlanItem>> {
    const M: i64 = -1;
    let plan: &[i64] = match depth {
        11 => &[64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
        13 => &[64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
        16 => &[64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M],
        19 => &[64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M],
        _ => return None,
    };
    Some(
        plan.iter().map(|&c| if c == M { PlanItem::Pool(PoolMarker::M) } else { PlanItem::Conv(c as usize) }).collect(),
    )
}

/// One element of `features`: a conv + BN + ReLU, or a max pool.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // a handful per network; boxing would change the module tree
pub enum VggLayer {
    /// 3x3 conv, BN, ReLU.
    Conv(ConvBn),
    /// Max pooling (no parameters) with this kernel size and stride (always 2).
    Pool(usize),
}

/// VGG-BN from a plan.
#[derive(Module, Debug)]
pub struct Vgg {
    features: Vec<VggLayer>,
    classifier: Option<Head>,
}

impl Vgg {
    /// Builds the network of `plan`, which must contain at least one convolution.
    pub fn new(
        plan: &[PlanItem],
        in_channels: usize,
        num_classes: usize,
        head: HeadSpec,
        device: &Device,
    ) -> Result<Self> {
        let mut c_in = in_channels;
        let mut features = Vec::with_capacity(plan.len());
        for item in plan {
            features.push(match item {
                PlanItem::Conv(0) => return Err(Error::InvalidModel("a VGG plan layer has 0 channels".into())),
                PlanItem::Conv(c) => {
                    let layer = VggLayer::Conv(ConvBn::new(c_in, *c, 3, 1, 1, device));
                    c_in = *c;
                    layer
                }
                PlanItem::Pool(_) => VggLayer::Pool(2),
            });
        }
        if c_in == in_channels && !plan.iter().any(|p| matches!(p, PlanItem::Conv(_))) {
            return Err(Error::InvalidModel("a VGG plan needs at least one convolution".into()));
        }
        Ok(Self { features, classifier: head.init(c_in, num_classes, device) })
    }

    /// Pooled embedding: `[B, C_in, H, W] -> [B, last plan width]`.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.features.iter().fold(x, |x, layer| match layer {
            VggLayer::Conv(unit) => batch_norm_relu(&unit.bn, unit.conv.forward(x)),
            VggLayer::Pool(_) => max_pool_2x2(x),
        });
        global_avg_pool(x)
    }

    /// Logits: `[B, C_in, H, W] -> [B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        head::apply(&self.classifier, self.forward_features(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VGG-11 at width 0.25: 64 -> 16 ... 512 -> 128 (by hand), pools where they were; width 1
    /// leaves the plan alone; a tiny width keeps at least one channel.
    #[test]
    fn width_scales_every_convolution() {
        let plan = standard_plan(11).unwrap();
        let quarter = scaled_plan(&plan, 0.25);
        let widths: Vec<usize> =
            quarter.iter().filter_map(|p| if let PlanItem::Conv(c) = p { Some(*c) } else { None }).collect();
        assert_eq!(widths, vec![16, 32, 64, 64, 128, 128, 128, 128]);
        assert_eq!(quarter.len(), plan.len());
        assert_eq!(scaled_plan(&plan, 1.0), plan);
        assert!(scaled_plan(&plan, 0.001).iter().all(|p| !matches!(p, PlanItem::Conv(0))));
    }
}

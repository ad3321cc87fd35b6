//! Key layouts of foreign checkpoints and the renames that bring them to kdkit's names
//! (torchvision's, and timm's for ResNet-D, which torchvision does not build).

use kd_common::models::mobilenet_v3::{self, MobileNetV3Size};
use kd_common::models::{Arch, ModelSpec};

/// `--layout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// torchvision's names with every compatible rename below, then timm's names for the
    /// architecture: the first reading that fits the architecture is taken.
    Auto,
    /// torchvision-style names (`conv1`, `layer1.0.bn1`, `downsample.0`, `fc`,
    /// `features.1.conv.0.0`), kdkit's own; timm's ResNets use them too.
    Torchvision,
    /// The CIFAR ResNets of the KD literature (RepDistiller, mdistiller, the option-A ResNets
    /// of many repositories): classifier `linear.*`, projection shortcut `shortcut.0/1`.
    CifarResnet,
    /// MoCo v1/v2 and SEED training checkpoints: the query encoder `encoder_q.*` (the key
    /// encoder and the queue are left out), MoCo v2's MLP head `fc.0`/`fc.2`.
    Moco,
    /// timm's names: `efficientnet_b0`, `mobilenetv3_large_100`, `mobilenetv3_small_100`
    /// (`conv_stem`, `bn1`, `blocks.i.j.conv_dw`, `se.conv_reduce`, `conv_head`, `classifier`;
    /// MobileNetV3's batch norm with timm's eps 1e-5); timm's ResNets and ResNet-Ds need none.
    Timm,
}

/// Key renames `(regex, replacement)`, applied in order.
pub type Renames = Vec<(String, String)>;

/// One way to read a file: its key renames and what the layout implies for the network.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    /// Renames to kdkit's (torchvision's) names.
    pub renames: Renames,
    /// MobileNetV3's batch-norm epsilon where the layout's source differs from torchvision.
    pub norm_eps: Option<f64>,
}

impl Reading {
    fn renames(renames: Renames) -> Self {
        Self { renames, norm_eps: None }
    }

    /// The spec this reading builds: `spec` with the layout's batch-norm epsilon.
    pub fn spec(&self, spec: &ModelSpec) -> ModelSpec {
        ModelSpec { norm_eps: self.norm_eps.or(spec.norm_eps), ..spec.clone() }
    }
}

/// timm's batch-norm epsilon (PyTorch's default), where torchvision's MobileNetV3 uses 1e-3.
const TIMM_NORM_EPS: f64 = 1e-5;

/// Names in a file that no architecture reads and that are left out without complaint: MoCo's
/// key encoder and queue, BatchNorm's batch counters.
pub const IGNORED: [&str; 4] = ["^encoder_k\\.", "^queue$", "^queue_ptr$", "num_batches_tracked$"];

fn pairs(list: &[(&str, &str)]) -> Renames {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

impl Layout {
    /// The readings to try for the network `spec`, in order.
    pub fn readings(self, spec: &ModelSpec) -> Vec<Reading> {
        let data_parallel = pairs(&[("^module\\.", "")]);
        let cifar = pairs(&[("^linear\\.", "fc."), ("\\.shortcut\\.", ".downsample.")]);
        let moco = pairs(&[("^encoder_q\\.", ""), ("^fc\\.2\\.", "fc.1.")]);
        let with = |parts: &[&Renames]| parts.iter().flat_map(|p| p.iter().cloned()).collect::<Renames>();
        let timm_reading = || {
            let timm = timm(spec);
            Reading { renames: with(&[&data_parallel, &timm.renames]), ..timm }
        };
        match self {
            Self::Torchvision => vec![Reading::renames(data_parallel)],
            Self::CifarResnet => vec![Reading::renames(with(&[&data_parallel, &cifar]))],
            Self::Moco => vec![Reading::renames(with(&[&data_parallel, &moco]))],
            Self::Timm => vec![timm_reading()],
            Self::Auto => {
                let mut readings = vec![Reading::renames(with(&[&data_parallel, &cifar, &moco]))];
                if timm(spec) != Reading::default() {
                    readings.push(timm_reading());
                }
                readings
            }
        }
    }
}

/// timm's reading of the network `spec`; no renames where timm's names are torchvision's.
fn timm(spec: &ModelSpec) -> Reading {
    let mobilenet_v3 = |size| Reading { renames: timm_mobilenet_v3(size, spec.width), norm_eps: Some(TIMM_NORM_EPS) };
    match spec.arch {
        Arch::EfficientNetB0 => Reading::renames(timm_efficientnet()),
        Arch::MobileNetV3Large => mobilenet_v3(MobileNetV3Size::Large),
        Arch::MobileNetV3Small => mobilenet_v3(MobileNetV3Size::Small),
        _ => Reading::default(),
    }
}

/// timm `mobilenetv3_large_100` / `mobilenetv3_small_100` (`_gen_mobilenet_v3`'s `arch_def`):
/// timm's stages hold 1, 2, 3, 4, 2, 3 blocks (Large) or 1, 2, 3, 2, 3 (Small), in order
/// torchvision's `features.1`, `features.2`, ...; a block without expansion is a
/// `DepthwiseSeparableConv` (depthwise, squeeze-excitation, projection), the others
/// `InvertedResidual`s; the last stage is the 1x1 `ConvBnAct` (`features.16` / `features.12`);
/// `conv_head` (a 1x1 convolution with bias on the pooled map) is `classifier.0`.
fn timm_mobilenet_v3(size: MobileNetV3Size, width: f32) -> Renames {
    let stages: &[usize] = match size {
        MobileNetV3Size::Large => &[1, 2, 3, 4, 2, 3],
        MobileNetV3Size::Small => &[1, 2, 3, 2, 3],
    };
    let parts = mobilenet_v3::block_parts(size, width);
    debug_assert_eq!(stages.iter().sum::<usize>(), parts.len());
    // `classifier` first: `conv_head` becomes `classifier.0` after it.
    let mut renames = pairs(&[
        ("^classifier\\.", "classifier.3."),
        ("^conv_head\\.", "classifier.0."),
        ("^conv_stem\\.", "features.0.0."),
        ("^bn1\\.", "features.0.1."),
    ]);
    let mut feature = 1;
    for (stage, &blocks) in stages.iter().enumerate() {
        for block in 0..blocks {
            let (expands, squeezes) = parts[feature - 1];
            // The block's modules `block.{k}` in order, each as (timm name, torchvision name).
            type Module = &'static [(&'static str, &'static str)];
            let mut modules: Vec<Module> = if expands {
                vec![&[("conv_pw", "0"), ("bn1", "1")], &[("conv_dw", "0"), ("bn2", "1")]]
            } else {
                vec![&[("conv_dw", "0"), ("bn1", "1")]]
            };
            if squeezes {
                modules.push(&[("se\\.conv_reduce", "fc1"), ("se\\.conv_expand", "fc2")]);
            }
            modules.push(if expands { &[("conv_pwl", "0"), ("bn3", "1")] } else { &[("conv_pw", "0"), ("bn2", "1")] });
            for (k, module) in modules.iter().enumerate() {
                for (timm, torchvision) in module.iter() {
                    renames.push((
                        format!("^blocks\\.{stage}\\.{block}\\.{timm}\\."),
                        format!("features.{feature}.block.{k}.{torchvision}."),
                    ));
                }
            }
            feature += 1;
        }
    }
    let last = stages.len();
    renames.extend([
        (format!("^blocks\\.{last}\\.0\\.conv\\."), format!("features.{feature}.0.")),
        (format!("^blocks\\.{last}\\.0\\.bn1\\."), format!("features.{feature}.1.")),
    ]);
    renames
}

/// timm `efficientnet_b0`: timm stage `s` is torchvision's `features.{s + 1}`; its first stage
/// is a `DepthwiseSeparableConv` (depthwise, squeeze-excitation, projection), the others
/// `InvertedResidual`s (expansion, depthwise, squeeze-excitation, projection).
fn timm_efficientnet() -> Renames {
    let mut renames =
        pairs(&[("^conv_stem\\.", "features.0.0."), ("^bn1\\.", "features.0.1."), ("^conv_head\\.", "features.8.0.")]);
    renames.extend(pairs(&[("^bn2\\.", "features.8.1."), ("^classifier\\.", "classifier.1.")]));
    let separable = [
        ("conv_dw", "0.0"),
        ("bn1", "0.1"),
        ("se\\.conv_reduce", "1.fc1"),
        ("se\\.conv_expand", "1.fc2"),
        ("conv_pw", "2.0"),
        ("bn2", "2.1"),
    ];
    let inverted = [
        ("conv_pw", "0.0"),
        ("bn1", "0.1"),
        ("conv_dw", "1.0"),
        ("bn2", "1.1"),
        ("se\\.conv_reduce", "2.fc1"),
        ("se\\.conv_expand", "2.fc2"),
        ("conv_pwl", "3.0"),
        ("bn3", "3.1"),
    ];
    for stage in 0..7 {
        let parts: &[(&str, &str)] = if stage == 0 { &separable } else { &inverted };
        for (timm, torchvision) in parts {
            renames.push((
                format!("^blocks\\.{stage}\\.(\\d+)\\.{timm}\\."),
                format!("features.{}.${{1}}.block.{torchvision}.", stage + 1),
            ));
        }
    }
    renames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(renames: &Renames, name: &str) -> String {
        renames.iter().fold(name.to_string(), |n, (from, to)| regex::Regex::new(from).unwrap().replace(&n, to).into())
    }

    /// timm keys of `efficientnet_b0` (from timm's `EfficientNet` module tree) land on
    /// torchvision's (from `torchvision.models.efficientnet_b0().state_dict()`).
    #[test]
    fn timm_efficientnet_names_become_torchvision_names() {
        let renames = timm_efficientnet();
        for (timm, torchvision) in [
            ("conv_stem.weight", "features.0.0.weight"),
            ("bn1.running_var", "features.0.1.running_var"),
            ("blocks.0.0.conv_dw.weight", "features.1.0.block.0.0.weight"),
            ("blocks.0.0.se.conv_expand.bias", "features.1.0.block.1.fc2.bias"),
            ("blocks.0.0.bn2.bias", "features.1.0.block.2.1.bias"),
            ("blocks.5.3.conv_pwl.weight", "features.6.3.block.3.0.weight"),
            ("blocks.1.1.bn1.weight", "features.2.1.block.0.1.weight"),
            ("conv_head.weight", "features.8.0.weight"),
            ("bn2.weight", "features.8.1.weight"),
            ("classifier.bias", "classifier.1.bias"),
        ] {
            assert_eq!(apply(&renames, timm), torchvision, "{timm}");
        }
    }

    /// timm keys of `mobilenetv3_large_100` / `mobilenetv3_small_100` (from timm's
    /// `MobileNetV3` module tree: `_gen_mobilenet_v3`'s `arch_def`) land on torchvision's (from
    /// `torchvision.models.mobilenet_v3_large().state_dict()`), and the reading asks for timm's
    /// batch-norm epsilon. The full key sets are checked by the zoo fixtures.
    #[test]
    fn timm_mobilenet_v3_names_become_torchvision_names() {
        for (arch, pairs) in [
            (
                Arch::MobileNetV3Large,
                &[
                    ("conv_stem.weight", "features.0.0.weight"),
                    ("bn1.running_var", "features.0.1.running_var"),
                    ("blocks.0.0.conv_dw.weight", "features.1.block.0.0.weight"),
                    ("blocks.0.0.bn2.bias", "features.1.block.1.1.bias"),
                    ("blocks.1.0.conv_pw.weight", "features.2.block.0.0.weight"),
                    ("blocks.1.1.conv_pwl.weight", "features.3.block.2.0.weight"),
                    ("blocks.2.0.se.conv_reduce.weight", "features.4.block.2.fc1.weight"),
                    ("blocks.2.2.bn3.running_mean", "features.6.block.3.1.running_mean"),
                    ("blocks.3.3.conv_pwl.weight", "features.10.block.2.0.weight"),
                    ("blocks.4.1.se.conv_expand.bias", "features.12.block.2.fc2.bias"),
                    ("blocks.5.2.bn3.weight", "features.15.block.3.1.weight"),
                    ("blocks.6.0.conv.weight", "features.16.0.weight"),
                    ("blocks.6.0.bn1.running_var", "features.16.1.running_var"),
                    ("conv_head.weight", "classifier.0.weight"),
                    ("conv_head.bias", "classifier.0.bias"),
                    ("classifier.weight", "classifier.3.weight"),
                ][..],
            ),
            (
                Arch::MobileNetV3Small,
                &[
                    ("blocks.0.0.conv_dw.weight", "features.1.block.0.0.weight"),
                    ("blocks.0.0.se.conv_reduce.weight", "features.1.block.1.fc1.weight"),
                    ("blocks.0.0.conv_pw.weight", "features.1.block.2.0.weight"),
                    ("blocks.1.1.conv_pwl.weight", "features.3.block.2.0.weight"),
                    ("blocks.4.2.conv_pwl.weight", "features.11.block.3.0.weight"),
                    ("blocks.5.0.conv.weight", "features.12.0.weight"),
                    ("classifier.bias", "classifier.3.bias"),
                ][..],
            ),
        ] {
            let spec = ModelSpec::new(arch, 3, 1000);
            let reading = &Layout::Timm.readings(&spec)[0];
            assert_eq!(reading.spec(&spec).norm_eps, Some(1e-5));
            for (timm, torchvision) in pairs {
                assert_eq!(apply(&reading.renames, timm), *torchvision, "{arch} {timm}");
            }
            // The data-parallel prefix goes first.
            assert_eq!(apply(&reading.renames, "module.conv_stem.weight"), "features.0.0.weight");
            // Auto tries torchvision's names first, then timm's.
            let auto = Layout::Auto.readings(&spec);
            assert_eq!((auto.len(), auto[0].norm_eps, &auto[1]), (2, None, reading));
        }
    }

    /// A MoCo v2 checkpoint's query encoder and MLP head under DataParallel's prefix.
    #[test]
    fn moco_names() {
        let renames = &Layout::Moco.readings(&ModelSpec::new(Arch::TorchvisionResNet(50), 3, 1000))[0].renames;
        assert_eq!(apply(renames, "module.encoder_q.layer1.0.conv1.weight"), "layer1.0.conv1.weight");
        assert_eq!(apply(renames, "module.encoder_q.fc.2.bias"), "fc.1.bias");
        assert_eq!(apply(renames, "module.encoder_q.fc.0.weight"), "fc.0.weight");
        assert!(regex::Regex::new(IGNORED[0]).unwrap().is_match(&apply(renames, "module.encoder_k.conv1.weight")));
    }
}

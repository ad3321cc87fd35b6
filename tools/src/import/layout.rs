//! Key layouts of foreign checkpoints and the renames that bring them to kdkit's names
//! (torchvision's, and timm's for ResNet-D, which torchvision does not build).

use kd_common::models::Arch;

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
    /// timm's names: `efficientnet_b0` (`conv_stem`, `bn1`, `blocks.i.j.conv_dw`,
    /// `se.conv_reduce`, `conv_head`, `classifier`); timm's ResNets and ResNet-Ds need none.
    Timm,
}

/// Key renames `(regex, replacement)`, applied in order.
pub type Renames = Vec<(String, String)>;

/// Names in a file that no architecture reads and that are left out without complaint: MoCo's
/// key encoder and queue, BatchNorm's batch counters.
pub const IGNORED: [&str; 4] = ["^encoder_k\\.", "^queue$", "^queue_ptr$", "num_batches_tracked$"];

fn pairs(list: &[(&str, &str)]) -> Renames {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

impl Layout {
    /// The readings to try for `arch`, each a list of renames applied in order.
    pub fn readings(self, arch: Arch) -> Vec<Renames> {
        let data_parallel = pairs(&[("^module\\.", "")]);
        let cifar = pairs(&[("^linear\\.", "fc."), ("\\.shortcut\\.", ".downsample.")]);
        let moco = pairs(&[("^encoder_q\\.", ""), ("^fc\\.2\\.", "fc.1.")]);
        let with = |parts: &[&Renames]| parts.iter().flat_map(|p| p.iter().cloned()).collect::<Renames>();
        match self {
            Self::Torchvision => vec![data_parallel],
            Self::CifarResnet => vec![with(&[&data_parallel, &cifar])],
            Self::Moco => vec![with(&[&data_parallel, &moco])],
            Self::Timm => vec![with(&[&data_parallel, &timm(arch)])],
            Self::Auto => {
                let mut readings = vec![with(&[&data_parallel, &cifar, &moco])];
                let timm = timm(arch);
                if !timm.is_empty() {
                    readings.push(with(&[&data_parallel, &timm]));
                }
                readings
            }
        }
    }
}

/// timm's names of `arch` renamed to torchvision's; empty where they are the same.
fn timm(arch: Arch) -> Renames {
    match arch {
        Arch::EfficientNetB0 => timm_efficientnet(),
        _ => Vec::new(),
    }
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

    /// A MoCo v2 checkpoint's query encoder and MLP head under DataParallel's prefix.
    #[test]
    fn moco_names() {
        let renames = &Layout::Moco.readings(Arch::TorchvisionResNet(50))[0];
        assert_eq!(apply(renames, "module.encoder_q.layer1.0.conv1.weight"), "layer1.0.conv1.weight");
        assert_eq!(apply(renames, "module.encoder_q.fc.2.bias"), "fc.1.bias");
        assert_eq!(apply(renames, "module.encoder_q.fc.0.weight"), "fc.0.weight");
        assert!(regex::Regex::new(IGNORED[0]).unwrap().is_match(&apply(renames, "module.encoder_k.conv1.weight")));
    }
}

//! Key layouts of foreign checkpoints and the renames that bring them to kdkit's
//! torchvision-style names.

/// `--layout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// Every rename below (they never conflict).
    Auto,
    /// torchvision-style names (`conv1`, `layer1.0.bn1`, `downsample.0`, `fc`), kdkit's own.
    Torchvision,
    /// The CIFAR ResNets of the KD literature (RepDistiller, mdistiller, the option-A ResNets
    /// of many repositories): classifier `linear.*`, projection shortcut `shortcut.0/1`.
    CifarResnet,
}

impl Layout {
    /// `(regex, replacement)` pairs, applied in order.
    pub fn renames(self) -> Vec<(String, String)> {
        let data_parallel = ("^module\\.".to_string(), String::new());
        let cifar =
            [("^linear\\.".to_string(), "fc.".to_string()), ("\\.shortcut\\.".to_string(), ".downsample.".to_string())];
        match self {
            Self::Torchvision => vec![data_parallel],
            Self::CifarResnet | Self::Auto => {
                let mut renames = vec![data_parallel];
                renames.extend(cifar);
                renames
            }
        }
    }
}

//! The datasets kdkit knows by name: where they live by default, how to open their splits, their
//! normalisation statistics and their standard training augmentation.

use crate::cifar::{self, Cifar};
use crate::dataset::{Dataset, Storage};
use crate::error::{DataError, Result};
use crate::transforms::Augment;
use crate::{folder, idx};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A dataset name as given to `--dataset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// Fashion-MNIST (Xiao et al., 2017), IDX files; Debian package `dataset-fashion-mnist`.
    FashionMnist,
    /// MNIST, IDX files.
    Mnist,
    /// CIFAR-10 binary version.
    Cifar10,
    /// CIFAR-100 binary version.
    Cifar100,
    /// An image folder: `train/<class>/` and `val/<class>/` (ImageNet layout), `train.txt` and
    /// `val.txt` file lists of `path label` lines (with `classes.txt`), or `<class>/` alone.
    Folder,
}

/// Which split to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// The training split.
    Train,
    /// The test split (for a folder: `val/`, or the held-out part of a flat folder).
    Test,
}

impl FromStr for DatasetKind {
    type Err = DataError;
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "fashion-mnist" => Ok(Self::FashionMnist),
            "mnist" => Ok(Self::Mnist),
            "cifar10" => Ok(Self::Cifar10),
            "cifar100" => Ok(Self::Cifar100),
            "folder" => Ok(Self::Folder),
            _ => Err(DataError::Invalid(format!(
                "unknown dataset `{name}`; known: fashion-mnist, mnist, cifar10, cifar100, folder"
            ))),
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FashionMnist => "fashion-mnist",
            Self::Mnist => "mnist",
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
            Self::Folder => "folder",
        })
    }
}

const FASHION_CLASSES: [&str; 10] =
    ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"];
const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Per-dataset facts.
/// Seed of the shuffle that holds a flat image folder's test split out (fixed: the split must
/// not change with a run's seed, or runs over several seeds would be tested on different images).
pub const FOLDER_SPLIT_SEED: u64 = 0;

impl DatasetKind {
    /// `(channels, side, classes)` of the fixed-size datasets (not folders).
    pub fn known_shape(self) -> Option<(usize, usize, usize)> {
        match self {
            Self::FashionMnist | Self::Mnist => Some((1, 28, 10)),
            Self::Cifar10 => Some((3, 32, 10)),
            Self::Cifar100 => Some((3, 32, 100)),
            Self::Folder => None,
        }
    }

    /// Class names known without reading the data (CIFAR-100: the class indices).
    pub fn class_names(self) -> Option<Vec<String>> {
        let owned = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        match self {
            Self::FashionMnist => Some(owned(&FASHION_CLASSES)),
            Self::Cifar10 => Some(owned(&CIFAR10_CLASSES)),
            Self::Mnist => Some((0..10).map(|c| c.to_string()).collect()),
            Self::Cifar100 => Some((0..100).map(|c| c.to_string()).collect()),
            Self::Folder => None,
        }
    }

    /// Where the data is looked for when `--data-dir` is not given.
    pub fn default_root(self) -> Option<PathBuf> {
        match self {
            Self::FashionMnist => Some("/usr/share/datasets/fashion-mnist".into()),
            Self::Mnist => Some("/usr/share/datasets/mnist".into()),
            Self::Cifar10 => Some("data/cifar-10-batches-bin".into()),
            Self::Cifar100 => Some("data/cifar-100-binary".into()),
            Self::Folder => None,
        }
    }

    /// Per-channel mean and standard deviation of the training pixels in [0, 1] (the values used
    /// throughout the literature; ImageNet's for folders).
    pub fn normalisation(self) -> (Vec<f32>, Vec<f32>) {
        match self {
            Self::FashionMnist => (vec![0.2860], vec![0.3530]),
            Self::Mnist => (vec![0.1307], vec![0.3081]),
            Self::Cifar10 => (vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616]),
            Self::Cifar100 => (vec![0.5071, 0.4865, 0.4409], vec![0.2673, 0.2564, 0.2762]),
            Self::Folder => (vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225]),
        }
    }

    /// Image side of the fixed-size datasets (None: folders, whose size is chosen).
    pub fn default_side(self) -> Option<usize> {
        match self {
            Self::FashionMnist | Self::Mnist => Some(28),
            Self::Cifar10 | Self::Cifar100 => Some(32),
            Self::Folder => None,
        }
    }

    /// The evaluation crop of the dataset's images (`InputSpec::crop_fraction`): ImageNet's
    /// `Resize(256)` + `CenterCrop(224)` for folders of images of any size, none for the
    /// fixed-size datasets.
    pub fn eval_crop_fraction(self) -> Option<f32> {
        (self == Self::Folder).then_some(0.875)
    }

    /// Whether a mirrored image is still an image of its class (digits are not).
    pub fn mirrors(self) -> bool {
        self != Self::Mnist
    }

    /// The standard training augmentation.
    pub fn train_augment(self) -> Augment {
        match self {
            // Digits must not be mirrored; clothes may.
            Self::Mnist => Augment::PadCrop { pad: 2, flip: false },
            Self::FashionMnist => Augment::PadCrop { pad: 2, flip: true },
            Self::Cifar10 | Self::Cifar100 => Augment::PadCrop { pad: 4, flip: true },
            Self::Folder => Augment::RandomResizedCrop { scale: [0.08, 1.0], ratio: [0.75, 4.0 / 3.0], flip: true },
        }
    }

    /// Opens a split. `channels` applies to folders only (IDX is grey, CIFAR is RGB);
    /// `val_fraction` holds out the test split of a flat folder that has no `train/` and `val/`,
    /// by a shuffle with the fixed [`FOLDER_SPLIT_SEED`]: the test images are a property of the
    /// data, the same for every run, seed and tool.
    pub fn open(self, root: Option<&Path>, split: Split, folder_channels: usize, val_fraction: f64) -> Result<Dataset> {
        let root: PathBuf = match (root, self.default_root()) {
            (Some(root), _) => root.into(),
            (None, Some(default)) => default,
            (None, None) => return Err(DataError::Invalid(format!("--data-dir is required for --dataset {self}"))),
        };
        if !root.is_dir() {
            let hint = match self {
                Self::FashionMnist => " (install it with `apt-get install dataset-fashion-mnist`)",
                Self::Cifar10 | Self::Cifar100 => " (the binary version of the CIFAR archive, extracted)",
                _ => "",
            };
            return Err(DataError::io(
                &root,
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("dataset directory not found{hint}")),
            ));
        }
        let name = self.to_string();
        let split_name = if split == Split::Train { "train" } else { "test" };
        match self {
            Self::FashionMnist | Self::Mnist => {
                let prefix = if split == Split::Train { "train" } else { "t10k" };
                let data = idx::read_split(&root, prefix, 10)?;
                let classes = if self == Self::FashionMnist {
                    FASHION_CLASSES.iter().map(|s| s.to_string()).collect()
                } else {
                    (0..10).map(|d| d.to_string()).collect()
                };
                let storage = Storage::Memory { pixels: data.pixels, height: data.rows, width: data.cols, channels: 1 };
                Dataset::new(&name, split_name, classes, storage, data.labels.into_iter().map(u16::from).collect())
            }
            Self::Cifar10 | Self::Cifar100 => {
                let which = if self == Self::Cifar10 { Cifar::Ten } else { Cifar::Hundred };
                let (pixels, labels) = cifar::read_split(&root, which, split == Split::Train)?;
                let classes = if which == Cifar::Ten {
                    CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
                } else {
                    (0..100).map(|c| format!("class-{c}")).collect()
                };
                let storage = Storage::Memory { pixels, height: 32, width: 32, channels: 3 };
                Dataset::new(&name, split_name, classes, storage, labels.into_iter().map(u16::from).collect())
            }
            Self::Folder => {
                if root.join("train.txt").is_file() && root.join("val.txt").is_file() {
                    return folder::open_lists(&root, split_name, folder_channels);
                }
                let (train_dir, val_dir) = (root.join("train"), root.join("val"));
                if train_dir.is_dir() && val_dir.is_dir() {
                    let dir = if split == Split::Train { train_dir } else { val_dir };
                    return folder::open(&dir, split_name, folder_channels);
                }
                // A flat folder: hold out a seeded fraction as the test split.
                let all = folder::open(&root, "all", folder_channels)?;
                let held_out = ((all.len() as f64 * val_fraction).round() as usize).clamp(1, all.len() - 1);
                let (train, test) = all.split_off_validation(held_out, FOLDER_SPLIT_SEED)?;
                Ok(if split == Split::Train { train } else { test })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directory_says_how_to_install() {
        let err = DatasetKind::FashionMnist.open(Some(Path::new("/nonexistent/fm")), Split::Train, 1, 0.1).unwrap_err();
        // The whole chain, as a tool prints it: the path, then the cause (the error's source).
        let cause = std::error::Error::source(&err).map(|c| c.to_string()).unwrap_or_default();
        let err = format!("{err}: {cause}");
        assert!(err.contains("/nonexistent/fm") && err.contains("dataset-fashion-mnist"), "{err}");
    }

    #[test]
    fn names_round_trip() {
        for name in ["fashion-mnist", "mnist", "cifar10", "cifar100", "folder"] {
            assert_eq!(name.parse::<DatasetKind>().unwrap().to_string(), name);
        }
        assert!("imagenet".parse::<DatasetKind>().is_err());
    }
}

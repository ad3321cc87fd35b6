//! A dataset split: images (in memory, or image files decoded on demand), labels and class
//! names, with cheap subsets for train/validation splits.

use crate::error::{DataError, Result};
use crate::image::Image;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the pixels live.
#[derive(Debug)]
pub enum Storage {
    /// Equal-sized images packed HWC, one after the other.
    Memory {
        /// All pixels.
        pixels: Vec<u8>,
        /// Rows of every image.
        height: usize,
        /// Columns of every image.
        width: usize,
        /// Channels of every image.
        channels: usize,
    },
    /// Image files (PNG/JPEG), decoded on demand to `channels` channels.
    Files {
        /// One path per image.
        paths: Vec<PathBuf>,
        /// 1 (grey) or 3 (RGB).
        channels: usize,
    },
    /// Storages one after the other (a labeled set joined with unlabeled images): storage
    /// index `i` is image `i - offset` of the last part whose offset is at most `i`.
    Joined {
        /// `(first index, storage)` in increasing order of first index.
        parts: Vec<(usize, Arc<Storage>)>,
    },
}

impl Storage {
    /// Number of images.
    pub fn count(&self) -> usize {
        match self {
            Storage::Memory { pixels, height, width, channels } => pixels.len() / (height * width * channels).max(1),
            Storage::Files { paths, .. } => paths.len(),
            Storage::Joined { parts } => parts.last().map_or(0, |(offset, part)| offset + part.count()),
        }
    }

    /// Channels of every image.
    pub fn channels(&self) -> usize {
        match self {
            Storage::Memory { channels, .. } | Storage::Files { channels, .. } => *channels,
            Storage::Joined { parts } => parts[0].1.channels(),
        }
    }

    /// The file of storage image `index`, read with its header, if the storage holds files.
    fn file(&self, index: usize) -> Option<Result<crate::decode::Encoded>> {
        match self {
            Storage::Memory { .. } => None,
            Storage::Files { paths, .. } => Some(crate::decode::Encoded::read(&paths[index])),
            Storage::Joined { parts } => {
                let at = parts.partition_point(|(offset, _)| *offset <= index) - 1;
                parts[at].1.file(index - parts[at].0)
            }
        }
    }

    /// Pixels of storage image `index`.
    fn image(&self, index: usize) -> Result<Image> {
        match self {
            Storage::Memory { pixels, height, width, channels } => {
                let size = height * width * channels;
                Ok(Image::new(*height, *width, *channels, pixels[index * size..(index + 1) * size].to_vec()))
            }
            Storage::Files { paths, channels } => crate::folder::decode(&paths[index], *channels),
            Storage::Joined { parts } => {
                let at = parts.partition_point(|(offset, _)| *offset <= index) - 1;
                parts[at].1.image(index - parts[at].0)
            }
        }
    }
}

/// Image files that could not be read or decoded and were skipped (`--skip-bad-images`), each
/// with its error; one record is shared by the splits of a run and every subset of them.
#[derive(Debug, Default)]
pub struct SkippedImages(std::sync::Mutex<std::collections::BTreeMap<PathBuf, String>>);

impl SkippedImages {
    /// Records `path` (logged the first time).
    pub fn record(&self, path: &std::path::Path, error: &str) {
        let mut files = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !files.contains_key(path) {
            tracing::warn!("skipping {error}");
            files.insert(path.to_path_buf(), error.to_string());
        }
    }

    /// The skipped files and their errors, sorted by path.
    pub fn files(&self) -> Vec<(PathBuf, String)> {
        let files = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        files.iter().map(|(p, e)| (p.clone(), e.clone())).collect()
    }
}

/// Identity of a dataset split, recorded in checkpoints and label files so that mismatches can
/// be refused.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatasetIdentity {
    /// Dataset name (`fashion-mnist`, `cifar10`, `folder:<dir>`...).
    pub name: String,
    /// Split name (`train`, `test`, `train[-5000]`...).
    pub split: String,
    /// Number of images.
    pub count: usize,
    /// SHA-256 over the images' storage indices and labels, hex.
    pub list_hash: String,
}

/// One split of a dataset, possibly a subset of a larger storage.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Dataset name.
    pub name: String,
    /// Split name.
    pub split: String,
    /// Class names, index = label.
    pub classes: Vec<String>,
    storage: Arc<Storage>,
    /// Storage index of each item.
    items: Arc<Vec<u32>>,
    /// Label of each storage index.
    labels: Arc<Vec<u16>>,
    /// Where unreadable images are recorded when they are skipped (none: they are errors).
    skipped: Option<Arc<SkippedImages>>,
}

impl Dataset {
    /// Wraps a storage; `labels[i]` is the label of storage image `i`.
    pub fn new(name: &str, split: &str, classes: Vec<String>, storage: Storage, labels: Vec<u16>) -> Result<Self> {
        let count = storage.count();
        if count != labels.len() {
            return Err(DataError::Invalid(format!("{name}/{split}: {count} images but {} labels", labels.len())));
        }
        if count == 0 {
            return Err(DataError::Invalid(format!("{name}/{split}: the split is empty")));
        }
        Ok(Self {
            name: name.into(),
            split: split.into(),
            classes,
            storage: Arc::new(storage),
            items: Arc::new((0..count as u32).collect()),
            labels: Arc::new(labels),
            skipped: None,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the split is empty (never true for a constructed dataset).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Channels of every image.
    pub fn channels(&self) -> usize {
        self.storage.channels()
    }

    /// Fixed image size, if the storage has one.
    pub fn fixed_size(&self) -> Option<(usize, usize)> {
        match &*self.storage {
            Storage::Memory { height, width, .. } => Some((*height, *width)),
            Storage::Files { .. } | Storage::Joined { .. } => None,
        }
    }

    /// Label of item `i`.
    pub fn label(&self, i: usize) -> usize {
        self.labels[self.items[i] as usize] as usize
    }

    /// All labels in item order.
    pub fn labels(&self) -> Vec<usize> {
        (0..self.len()).map(|i| self.label(i)).collect()
    }

    /// Pixels of item `i`.
    pub fn image(&self, i: usize) -> Result<Image> {
        self.storage.image(self.items[i] as usize)
    }

    /// The same items, with unreadable images skipped and recorded in `record` instead of
    /// failing: a training loader takes another image in their place, an evaluation loader
    /// leaves them out.
    pub fn skipping_bad_images(self, record: Arc<SkippedImages>) -> Self {
        Self { skipped: Some(record), ..self }
    }

    /// The record of skipped images, when bad images are skipped.
    pub fn skipped_images(&self) -> Option<&SkippedImages> {
        self.skipped.as_deref()
    }

    /// The file of item `i` read with its header (decoding can then pick a reduced size), or
    /// `None` for images held in memory.
    pub fn file(&self, i: usize) -> Option<Result<crate::decode::Encoded>> {
        self.storage.file(self.items[i] as usize)
    }

    /// The same items with new labels, `labels[i]` for item `i` (pseudo-labels of unlabeled
    /// images, for example).
    pub fn relabel(&self, labels: &[usize], classes: Vec<String>) -> Result<Self> {
        if labels.len() != self.len() {
            return Err(DataError::Invalid(format!(
                "{}/{}: {} labels for {} images",
                self.name,
                self.split,
                labels.len(),
                self.len()
            )));
        }
        let mut storage_labels = (*self.labels).clone();
        for (i, &label) in labels.iter().enumerate() {
            if label >= classes.len() {
                return Err(DataError::Invalid(format!(
                    "{}/{}: label {label} of item {i} is out of range 0..{}",
                    self.name,
                    self.split,
                    classes.len()
                )));
            }
            storage_labels[self.items[i] as usize] = label as u16;
        }
        Ok(Self { classes, labels: Arc::new(storage_labels), ..self.clone() })
    }

    /// `self` followed by `other` (same channels; image sizes may differ, transforms resize),
    /// with `self`'s name and classes.
    pub fn join(&self, other: &Dataset, split: &str) -> Result<Self> {
        if self.channels() != other.channels() {
            return Err(DataError::Invalid(format!(
                "cannot join {}/{} ({} channels) with {}/{} ({} channels)",
                self.name,
                self.split,
                self.channels(),
                other.name,
                other.split,
                other.channels()
            )));
        }
        if other.labels.iter().any(|&l| l as usize >= self.classes.len()) {
            return Err(DataError::Invalid(format!(
                "{}/{} has labels beyond the {} classes of {}",
                other.name,
                other.split,
                self.classes.len(),
                self.name
            )));
        }
        let offset = self.storage.count();
        let storage = Storage::Joined { parts: vec![(0, self.storage.clone()), (offset, other.storage.clone())] };
        let mut labels = (*self.labels).clone();
        labels.extend_from_slice(&other.labels);
        let mut items = (*self.items).clone();
        items.extend(other.items.iter().map(|&i| i + offset as u32));
        Ok(Self {
            name: self.name.clone(),
            split: split.into(),
            classes: self.classes.clone(),
            storage: Arc::new(storage),
            items: Arc::new(items),
            labels: Arc::new(labels),
            skipped: self.skipped.clone(),
        })
    }

    /// The items at `positions` (positions into this dataset), under a new split name.
    pub fn subset(&self, positions: &[usize], split: &str) -> Self {
        Self {
            split: split.into(),
            items: Arc::new(positions.iter().map(|&p| self.items[p]).collect()),
            ..self.clone()
        }
    }

    /// Splits off `val_size` items chosen by a seeded shuffle: `(train, val)`.
    pub fn split_off_validation(&self, val_size: usize, seed: u64) -> Result<(Self, Self)> {
        let (train, val) = self.validation_positions(val_size, seed)?;
        Ok((
            self.subset(&train, &format!("{}[-{val_size}]", self.split)),
            self.subset(&val, &format!("{}[val:{val_size}]", self.split)),
        ))
    }

    /// The positions [`Dataset::split_off_validation`] keeps for training and for validation,
    /// each sorted.
    pub fn validation_positions(&self, val_size: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
        if val_size == 0 || val_size >= self.len() {
            return Err(DataError::Invalid(format!(
                "validation size {val_size} must be between 1 and {} (the split has {} images)",
                self.len() - 1,
                self.len()
            )));
        }
        let order = crate::loader::permutation(self.len(), seed, crate::rng::salt::VALIDATION_SPLIT);
        let (val, train) = order.split_at(val_size);
        let (mut train, mut val) = (train.to_vec(), val.to_vec());
        train.sort_unstable();
        val.sort_unstable();
        Ok((train, val))
    }

    /// Name, split, size and a hash of the item list and labels.
    pub fn identity(&self) -> DatasetIdentity {
        let mut hasher = Sha256::new();
        for (i, &item) in self.items.iter().enumerate() {
            hasher.update(item.to_le_bytes());
            hasher.update((self.label(i) as u16).to_le_bytes());
        }
        if let Storage::Files { paths, .. } = &*self.storage {
            for &item in self.items.iter() {
                hasher.update(paths[item as usize].to_string_lossy().as_bytes());
            }
        }
        if let Storage::Joined { parts } = &*self.storage {
            for (offset, part) in parts {
                hasher.update((*offset as u64).to_le_bytes());
                hasher.update((part.count() as u64).to_le_bytes());
            }
        }
        DatasetIdentity {
            name: self.name.clone(),
            split: self.split.clone(),
            count: self.len(),
            list_hash: hasher.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

//! Opening a dataset's splits and building their loaders the same way in every tool.

use anyhow::{Context, Result};
use kd_common::checkpoint::InputSpec;
use kd_datasets::{Augment, BatchLoader, Dataset, DatasetKind, LoaderConfig, Split, Transform};
use std::path::Path;

/// Train (possibly minus a validation hold-out), validation and test splits.
pub struct Splits {
    /// Training images.
    pub train: Dataset,
    /// Held-out validation images (from the training split), if requested.
    pub val: Option<Dataset>,
    /// The test split.
    pub test: Dataset,
    /// The whole training split, before the hold-out (FKD label files are packed for it).
    pub full_train: Dataset,
    /// Position in `full_train` of every `train` image.
    pub train_positions: Vec<usize>,
}

impl Splits {
    /// Every split skipping unreadable images into one shared record.
    pub fn skipping_bad_images(self) -> Self {
        let record = std::sync::Arc::new(kd_datasets::SkippedImages::default());
        let skip = |d: Dataset| d.skipping_bad_images(record.clone());
        Self {
            train: skip(self.train),
            val: self.val.map(skip),
            test: skip(self.test),
            full_train: skip(self.full_train),
            train_positions: self.train_positions,
        }
    }
}

/// The `skipped_bad_images` summary entry of a dataset that skips unreadable images: the count
/// and up to 100 of the files with their errors.
pub fn skipped_summary(dataset: &Dataset) -> Option<serde_json::Value> {
    let files = dataset.skipped_images()?.files();
    let listed: Vec<_> = files.iter().take(100).map(|(p, e)| serde_json::json!({ "file": p, "error": e })).collect();
    Some(serde_json::json!({ "count": files.len(), "files": listed }))
}

/// Opens train and test, and holds `val_size` training images out for validation.
pub fn open_splits(
    kind: DatasetKind,
    data_dir: Option<&Path>,
    val_size: usize,
    seed: u64,
    folder_channels: usize,
) -> Result<Splits> {
    let train = kind
        .open(data_dir, Split::Train, folder_channels, crate::shared::run::FOLDER_TEST_FRACTION)
        .context("opening the training split")?;
    let test = kind
        .open(data_dir, Split::Test, folder_channels, crate::shared::run::FOLDER_TEST_FRACTION)
        .context("opening the test split")?;
    if train.classes.len() != test.classes.len() {
        anyhow::bail!("train has {} classes but test has {}", train.classes.len(), test.classes.len());
    }
    if val_size == 0 {
        let train_positions = (0..train.len()).collect();
        return Ok(Splits { full_train: train.clone(), train, val: None, test, train_positions });
    }
    let (train_positions, _) = train.validation_positions(val_size, seed)?;
    let (kept, val) = train.split_off_validation(val_size, seed)?;
    Ok(Splits { full_train: train, train: kept, val: Some(val), test, train_positions })
}

/// SSLD's split of the training images into labelled and unlabelled ones: `count` images picked
/// by a permutation seeded with `seed` lose their labels. `kd-distill ssld --unlabeled
/// train-holdout:N` and the labelled-only baseline (`kd-pretrain --unlabeled-holdout N`) use the
/// same choice for the same seed. Returns `(labeled, unlabeled)`.
pub fn unlabeled_holdout(train: &Dataset, count: usize, seed: u64) -> Result<(Dataset, Dataset)> {
    anyhow::ensure!(
        count > 0 && count < train.len(),
        "the unlabeled hold-out must be between 1 and {} images, got {count}",
        train.len().saturating_sub(1)
    );
    let order = kd_datasets::loader::permutation(train.len(), seed, kd_datasets::rng::salt::UNLABELED_HOLDOUT);
    let (mut unlabeled, mut labeled) = (order[..count].to_vec(), order[count..].to_vec());
    unlabeled.sort_unstable();
    labeled.sort_unstable();
    Ok((
        train.subset(&labeled, &format!("{}[labeled]", train.split)),
        train.subset(&unlabeled, &format!("{}[unlabeled:{count}]", train.split)),
    ))
}

/// The input a model trained on `dataset` expects: its fixed size, or `image_size` for folders.
pub fn input_spec(kind: DatasetKind, dataset: &Dataset, image_size: Option<usize>) -> Result<InputSpec> {
    let (height, width) = match (image_size, dataset.fixed_size()) {
        (Some(size), _) => (size, size),
        (None, Some(size)) => size,
        (None, None) => anyhow::bail!("--image-size is required for image folders"),
    };
    let (mean, std) = kind.normalisation();
    let channels = dataset.channels();
    let pick =
        |v: Vec<f32>| if v.len() == channels { v } else { vec![v.iter().sum::<f32>() / v.len() as f32; channels] };
    Ok(InputSpec {
        channels,
        height,
        width,
        mean: pick(mean),
        std: pick(std),
        crop_fraction: kind.eval_crop_fraction(),
    })
}

/// Deterministic evaluation transform: resize to the input size (or the shorter side, then the
/// centre crop, when the input has a crop fraction), normalise.
pub fn eval_transform(input: &InputSpec) -> Transform {
    Transform {
        augment: match input.crop_fraction {
            Some(crop_fraction) => Augment::ResizeCenterCrop { crop_fraction },
            None => Augment::None,
        },
        out_height: input.height,
        out_width: input.width,
        mean: input.mean.clone(),
        std: input.std.clone(),
    }
}

/// Training transform with `augment`.
pub fn train_transform(input: &InputSpec, augment: Augment) -> Transform {
    Transform { augment, ..eval_transform(input) }
}

/// A loader: shuffled with dropped last batch for training, in order for evaluation.
pub fn loader(
    dataset: Dataset,
    transform: Transform,
    batch_size: usize,
    training: bool,
    workers: usize,
    seed: u64,
) -> Result<BatchLoader> {
    let config = LoaderConfig::new(batch_size, training, training, workers, seed);
    Ok(BatchLoader::new(dataset, transform, config)?)
}

/// The training loader (shuffled, last partial batch dropped, with `augment`) and the
/// validation loader (in order, no augmentation) when the splits hold a validation set.
pub fn train_and_val_loaders(
    splits: &Splits,
    input: &InputSpec,
    augment: kd_datasets::Augment,
    batch_size: usize,
    workers: usize,
    seed: u64,
) -> Result<(BatchLoader, Option<BatchLoader>)> {
    let train = loader(splits.train.clone(), train_transform(input, augment), batch_size, true, workers, seed)?;
    Ok((train, val_loader(splits, input, workers, seed)?))
}

/// The validation loader (in order, no augmentation) when the splits hold a validation set.
pub fn val_loader(splits: &Splits, input: &InputSpec, workers: usize, seed: u64) -> Result<Option<BatchLoader>> {
    let val = match &splits.val {
        Some(val) => {
            Some(loader(val.clone(), eval_transform(input), crate::shared::run::EVAL_BATCH, false, workers, seed)?)
        }
        None => None,
    };
    Ok(val)
}

//! The images a self-supervised run (MoCo v2 in `kd-pretrain`, `kd-seed`) trains on: the
//! labelled dataset's training split (its labels unread; they feed only the kNN monitor and the
//! test kNN), or, with `--unlabeled`, every PNG/JPEG under an image folder that has no labels at
//! all. Options that need labels are refused on unlabelled data, before anything is read.

use crate::shared::data::Splits;
use crate::shared::encoder::KnnSources;
use crate::shared::run::RunSettings;
use anyhow::{Context, Result, bail, ensure};
use kd_common::checkpoint::InputSpec;
use kd_datasets::{Augment, Dataset, DatasetKind};

/// Where the training images come from.
pub struct SslDataSpec<'a> {
    /// The run's data settings (`folder` with a directory for unlabelled images; the
    /// validation hold-out is the kNN monitor's).
    pub run: &'a RunSettings,
    /// The images carry no labels (`--unlabeled`).
    pub unlabeled: bool,
}

impl SslDataSpec<'_> {
    /// Refuses the combinations that need labels the data does not have (exit 2 upstream).
    pub fn validate(&self) -> Result<()> {
        if !self.unlabeled {
            return Ok(());
        }
        ensure!(
            self.run.dataset == DatasetKind::Folder,
            "--unlabeled reads an image folder without class sub-folders (--dataset folder --data-dir DIR); \
             {} comes with labels, which self-supervised training does not read anyway: leave --unlabeled out",
            self.run.dataset
        );
        ensure!(self.run.data_dir.is_some(), "--unlabeled needs --data-dir, the folder of unlabelled images");
        ensure!(
            self.run.val_size == 0,
            "--val-size {}: the validation hold-out feeds the kNN monitor, which needs labels, and --unlabeled \
             images have none (leave --val-size out; evaluate the encoder with kd-eval on labelled images)",
            self.run.val_size
        );
        Ok(())
    }
}

/// MoCo v2's augmentation scaled to the images actually trained on: a preset made for the
/// dataset's default side (224 for folders) is remade for `side` (the blur's sigma range scales
/// with the image); an augmentation set in a config file is kept as written.
pub fn fit_moco_augment(augment: &mut Augment, kind: DatasetKind, side: usize) {
    if *augment == Augment::moco_v2(kind.default_side().unwrap_or(224), kind.mirrors()) {
        *augment = Augment::moco_v2(side, kind.mirrors());
    }
}

/// A self-supervised run's data.
pub struct SslData {
    /// The training images (labels, if any, are not read by the objectives).
    pub train: Dataset,
    /// The labelled splits (kNN monitor and test kNN); `None` for unlabelled images.
    pub labelled: Option<Splits>,
}

impl SslData {
    /// Opens the data `spec` names (validated first).
    pub fn open(spec: &SslDataSpec) -> Result<Self> {
        spec.validate()?;
        if spec.unlabeled {
            let dir = spec.run.data_dir.as_deref().expect("validated: --unlabeled has a data directory");
            let train = kd_datasets::folder::open_unlabeled(dir, spec.run.folder_channels)
                .with_context(|| format!("unlabelled images in {}", dir.display()))?;
            tracing::info!("{} unlabelled images under {}: no kNN monitor, no test kNN", train.len(), dir.display());
            return Ok(Self { train, labelled: None });
        }
        let splits = spec.run.open_splits()?;
        if splits.train.num_classes() < 2 {
            bail!("{}: the kNN monitor needs at least two classes", spec.run.dataset);
        }
        Ok(Self { train: splits.train.clone(), labelled: Some(splits) })
    }

    /// The kNN monitor's loaders, when the data has labels.
    pub fn knn_sources(&self, input: &InputSpec, bank: usize, workers: usize, seed: u64) -> Result<Option<KnnSources>> {
        self.labelled.as_ref().map(|splits| KnnSources::new(splits, input, bank, workers, seed)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kind: DatasetKind, val_size: usize) -> RunSettings {
        RunSettings {
            data_dir: Some("/nonexistent".into()),
            val_size,
            folder_channels: 1,
            ..RunSettings::defaults(kind)
        }
    }

    fn spec(run: &RunSettings) -> SslDataSpec<'_> {
        SslDataSpec { run, unlabeled: true }
    }

    #[test]
    fn labelled_only_options_are_refused_on_unlabelled_data() {
        let err = spec(&settings(DatasetKind::Folder, 100)).validate().unwrap_err().to_string();
        assert!(err.contains("--val-size 100") && err.contains("labels"), "{err}");
        let err = spec(&settings(DatasetKind::FashionMnist, 0)).validate().unwrap_err().to_string();
        assert!(err.contains("--unlabeled") && err.contains("fashion-mnist"), "{err}");
        let no_dir = RunSettings { data_dir: None, ..settings(DatasetKind::Folder, 0) };
        assert!(spec(&no_dir).validate().unwrap_err().to_string().contains("--data-dir"));
        assert!(spec(&settings(DatasetKind::Folder, 0)).validate().is_ok());
    }

    #[test]
    fn preset_augmentation_follows_the_image_size() {
        let mut preset = Augment::moco_v2(224, true);
        fit_moco_augment(&mut preset, DatasetKind::Folder, 56);
        // 56 / 224 = 1/4 of MoCo v2's 0.1 - 2 pixel sigma range.
        let Augment::MocoV2 { blur_sigma, .. } = preset else { panic!("MoCo v2") };
        assert_eq!(blur_sigma, [0.025, 0.5]);
        let mut custom = Augment::None;
        fit_moco_augment(&mut custom, DatasetKind::Folder, 56);
        assert_eq!(custom, Augment::None);
    }

    #[test]
    fn unlabelled_folder_is_read_recursively_without_class_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("nested")).unwrap();
        for (i, name) in ["a.png", "nested/b.png", "c.png"].iter().enumerate() {
            let image = kd_datasets::image::Image::new(8, 8, 1, vec![i as u8 * 40; 8 * 8]);
            kd_datasets::folder::write_png(&dir.path().join(name), &image).unwrap();
        }
        let run = RunSettings { data_dir: Some(dir.path().to_path_buf()), ..settings(DatasetKind::Folder, 0) };
        let data = SslData::open(&spec(&run)).unwrap();
        assert_eq!(data.train.len(), 3);
        assert!(data.labelled.is_none());
    }
}

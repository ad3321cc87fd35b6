//! Batch loading on worker threads with prefetch.
//!
//! Deterministic given (seed, epoch): the order of an epoch is a seeded permutation and every
//! image's augmentation draws from its own random stream `(seed, epoch, image index)`, so the
//! batches are the same whatever the number of workers or their scheduling. Workers claim batch
//! numbers in order; at most `workers + prefetch` batches are in flight, and the iterator hands
//! them out in order.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::ordered_pool::OrderedPool;
use crate::region_sampling::RegionSampling;
use crate::rng::stream;
use crate::transforms::Transform;
use rand::Rng;
use std::sync::Arc;

/// A seeded permutation of `0..n` (Fisher-Yates over the `(seed, epoch)` stream).
pub fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = stream(seed, epoch, crate::rng::salt::PERMUTATION);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    order
}

/// How batches are formed.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Shuffle every epoch.
    pub shuffle: bool,
    /// Drop a last, incomplete batch.
    pub drop_last: bool,
    /// Worker threads (0: load on the calling thread).
    pub workers: usize,
    /// Batches prepared ahead of the consumer, beyond one per worker.
    pub prefetch: usize,
    /// Seed of shuffling and augmentation.
    pub seed: u64,
    /// Augmented views drawn per image (MoCo and SEED: 2); each view draws from the image's
    /// random stream after the previous one, so view 0 does not depend on this number.
    #[serde(default = "one")]
    pub views: usize,
    /// Hand out the images' labels (false: unlabelled batches, `Targets::None`).
    #[serde(default = "yes")]
    pub labelled: bool,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

impl LoaderConfig {
    /// One labelled view per image.
    pub fn new(batch_size: usize, shuffle: bool, drop_last: bool, workers: usize, seed: u64) -> Self {
        Self { batch_size, shuffle, drop_last, workers, prefetch: 4, seed, views: 1, labelled: true }
    }
}

/// Values of one tensor on the host: row-major `values` of `shape`.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// `shape.iter().product()` floats.
    pub values: Vec<f32>,
    /// Dimensions, outermost first (images: `[rows, channels, height, width]`).
    pub shape: Vec<usize>,
}

/// What supervises the rows of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// Unlabelled images (self-supervised methods).
    None,
    /// A class label per row.
    Labels(Vec<usize>),
    /// A soft label per row, `[rows, classes]` row-major (FKD region crops), with the class
    /// label of each row's source image.
    Soft {
        /// Labels of the source images.
        labels: Vec<usize>,
        /// The distributions.
        distributions: Vec<f32>,
        /// Classes per distribution.
        classes: usize,
    },
}

/// One batch: one or more augmented views of the same rows (MoCo and SEED use two; most
/// methods one), their dataset positions, and what supervises them.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `views[v]` holds view `v` of every row, `[rows, channels, height, width]` for images
    /// (cached features: `[rows, dim]`).
    pub views: Vec<HostTensor>,
    /// Position of each row's image in the dataset.
    pub indices: Vec<usize>,
    /// Labels, soft labels or nothing.
    pub targets: Targets,
}

impl Batch {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.indices.len()
    }

    /// Class labels of the rows, if the batch has them (soft-label batches carry their source
    /// images' labels).
    pub fn labels(&self) -> Option<&[usize]> {
        match &self.targets {
            Targets::None => None,
            Targets::Labels(labels) | Targets::Soft { labels, .. } => Some(labels),
        }
    }

    /// The first view, which every batch has.
    pub fn first_view(&self) -> &HostTensor {
        &self.views[0]
    }
}

/// Anything the training loop can draw batches from: an image loader, or features cached in
/// memory (a linear probe). Passes are numbered from 0; a pass's batches depend only on its
/// number.
pub trait BatchSource: Send + Sync {
    /// Batches in one pass.
    fn batches_per_pass(&self) -> usize;
    /// Rows (images, crops or feature vectors) in one pass.
    fn rows_per_pass(&self) -> usize;
    /// Classes of the labels (0: unlabelled).
    fn num_classes(&self) -> usize;
    /// The batches of pass `pass`, in order.
    fn pass(&self, pass: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_>;
}

/// Loads augmented batches of a dataset.
#[derive(Clone, Debug)]
pub struct BatchLoader {
    dataset: Dataset,
    transform: Arc<Transform>,
    config: LoaderConfig,
    regions: Option<Arc<RegionSampling>>,
}

impl BatchLoader {
    /// Checks the transform against the dataset and the batch size.
    pub fn new(dataset: Dataset, transform: Transform, config: LoaderConfig) -> Result<Self> {
        transform.validate(dataset.channels())?;
        if config.batch_size == 0 {
            return Err(DataError::Invalid("batch size must be positive".into()));
        }
        if config.views == 0 {
            return Err(DataError::Invalid("a batch needs at least one view per image".into()));
        }
        if config.drop_last && dataset.len() < config.batch_size {
            return Err(DataError::Invalid(format!(
                "{}/{} has {} images, fewer than one batch of {}",
                dataset.name,
                dataset.split,
                dataset.len(),
                config.batch_size
            )));
        }
        Ok(Self { dataset, transform: Arc::new(transform), config, regions: None })
    }

    /// A loader of FKD region crops: `config.batch_size` images per batch, each contributing
    /// `regions.crops_per_visit()` crops rebuilt from the label file (the transform's
    /// augmentation is not used; its size and normalisation are).
    pub fn with_regions(
        dataset: Dataset,
        transform: Transform,
        config: LoaderConfig,
        regions: RegionSampling,
    ) -> Result<Self> {
        if config.views != 1 {
            return Err(DataError::Invalid("region crops come one view per crop; `views` must be 1".into()));
        }
        let mut loader = Self::new(dataset, transform, config)?;
        loader.regions = Some(Arc::new(regions));
        Ok(loader)
    }

    /// Crops per image in a batch (1 unless region crops).
    pub fn crops_per_image(&self) -> usize {
        self.regions.as_ref().map_or(1, |r| r.crops_per_visit())
    }

    /// The dataset.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.config.batch_size);
        if self.config.drop_last { n / b } else { n.div_ceil(b) }
    }

    /// Images (crops, for region loaders) in one epoch.
    pub fn images_per_epoch(&self) -> usize {
        let images =
            if self.config.drop_last { self.batches_per_epoch() * self.config.batch_size } else { self.dataset.len() };
        images * self.crops_per_image()
    }

    /// The batches of `epoch`, in order.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        let n = self.dataset.len();
        let order = if self.config.shuffle { permutation(n, self.config.seed, epoch) } else { (0..n).collect() };
        let shared = Shared {
            dataset: self.dataset.clone(),
            transform: self.transform.clone(),
            regions: self.regions.clone(),
            order,
            batch_size: self.config.batch_size,
            seed: self.config.seed,
            epoch,
            views: self.config.views,
            labelled: self.config.labelled,
            replace_bad_images: self.config.drop_last,
        };
        let batches = self.batches_per_epoch();
        EpochIter {
            pool: OrderedPool::new(0, batches, self.config.workers, self.config.prefetch, move |b| shared.make(b)),
        }
    }
}

impl BatchSource for BatchLoader {
    fn batches_per_pass(&self) -> usize {
        self.batches_per_epoch()
    }

    fn rows_per_pass(&self) -> usize {
        self.images_per_epoch()
    }

    fn num_classes(&self) -> usize {
        if self.config.labelled { self.dataset.num_classes() } else { 0 }
    }

    fn pass(&self, pass: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        Box::new(self.epoch(pass))
    }
}

struct Shared {
    dataset: Dataset,
    transform: Arc<Transform>,
    regions: Option<Arc<RegionSampling>>,
    order: Vec<usize>,
    batch_size: usize,
    seed: u64,
    epoch: u64,
    views: usize,
    labelled: bool,
    replace_bad_images: bool,
}

/// Items tried in place of an unreadable training image before the batch fails.
const REPLACEMENT_TRIES: usize = 16;

impl Shared {
    /// Appends item `i`'s view(s) (and soft labels) to the batch being built.
    fn load_item(&self, i: usize, views: &mut [Vec<f32>], soft_targets: &mut Vec<f32>) -> Result<()> {
        let mut rng = stream(self.seed, self.epoch, i as u64);
        let c = self.dataset.channels();
        match &self.regions {
            Some(regions) => {
                regions.sample_into(&self.dataset, i, &mut rng, &self.transform, &mut views[0], soft_targets)
            }
            None => match (self.views, self.dataset.file(i)) {
                // One view of a file: decoded at the smallest size its crop allows.
                (1, Some(file)) => self.transform.apply_file_into(&file?, c, &mut rng, &mut views[0]),
                _ => {
                    let image = self.dataset.image(i)?;
                    for view in views.iter_mut() {
                        self.transform.apply_into(&image, &mut rng, view);
                    }
                    Ok(())
                }
            },
        }
    }

    /// Loads item `i`, or with bad images skipped and one of `i` failing: a training batch
    /// (`drop_last`) takes the next items of the dataset in its place (`i + 1`, `i + 2`, ...,
    /// at most [`REPLACEMENT_TRIES`]), so batches keep their size; an evaluation batch leaves
    /// the row out. Returns the item loaded, if any.
    fn load_or_skip(&self, i: usize, views: &mut [Vec<f32>], soft_targets: &mut Vec<f32>) -> Result<Option<usize>> {
        let n = self.dataset.len();
        for attempt in 0..=REPLACEMENT_TRIES {
            let item = (i + attempt) % n;
            let lengths: Vec<usize> = views.iter().map(Vec::len).collect();
            let targets = soft_targets.len();
            match self.load_item(item, views, soft_targets) {
                Ok(()) => return Ok(Some(item)),
                Err(error) => {
                    let (Some(record), Some(path)) = (self.dataset.skipped_images(), error.bad_image()) else {
                        return Err(error);
                    };
                    record.record(path, &error.to_string());
                    for (view, length) in views.iter_mut().zip(lengths) {
                        view.truncate(length);
                    }
                    soft_targets.truncate(targets);
                    if !self.replace_bad_images {
                        return Ok(None);
                    }
                }
            }
        }
        Err(DataError::Invalid(format!(
            "{}/{}: image {i} and the {REPLACEMENT_TRIES} after it are all unreadable",
            self.dataset.name, self.dataset.split
        )))
    }

    fn make(&self, b: usize) -> Result<Batch> {
        let positions = &self.order[b * self.batch_size..((b + 1) * self.batch_size).min(self.order.len())];
        let (h, w) = (self.transform.out_height, self.transform.out_width);
        let c = self.dataset.channels();
        let crops = self.regions.as_ref().map_or(1, |r| r.crops_per_visit());
        let mut views = vec![Vec::with_capacity(positions.len() * crops * c * h * w); self.views];
        let mut soft_targets = Vec::new();
        let mut loaded = Vec::with_capacity(positions.len());
        for &i in positions {
            if let Some(item) = self.load_or_skip(i, &mut views, &mut soft_targets)? {
                loaded.push(item);
            }
        }
        let positions = &loaded;
        let rows = positions.len() * crops;
        let repeat =
            |v: Vec<usize>| -> Vec<usize> { v.into_iter().flat_map(|x| std::iter::repeat_n(x, crops)).collect() };
        let labels = || repeat(positions.iter().map(|&i| self.dataset.label(i)).collect());
        let targets = match (&self.regions, self.labelled) {
            (Some(regions), _) => {
                Targets::Soft { labels: labels(), distributions: soft_targets, classes: regions.num_classes() }
            }
            (None, true) => Targets::Labels(labels()),
            (None, false) => Targets::None,
        };
        Ok(Batch {
            views: views.into_iter().map(|values| HostTensor { values, shape: vec![rows, c, h, w] }).collect(),
            indices: repeat(positions.to_vec()),
            targets,
        })
    }
}

/// The batches of one epoch; dropping it stops and joins the workers.
pub struct EpochIter {
    pool: OrderedPool<Result<Batch>>,
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    /// The next batch; a batch left empty because all of its images were skipped as unreadable
    /// (evaluation with `--skip-bad-images`) is passed over.
    fn next(&mut self) -> Option<Result<Batch>> {
        loop {
            let batch =
                self.pool.next()?.unwrap_or_else(|_| Err(DataError::Invalid("a data loader worker stopped".into())));
            if !matches!(&batch, Ok(b) if b.rows() == 0) {
                return Some(batch);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.pool.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Storage;
    use crate::transforms::Augment;

    fn loader(workers: usize) -> BatchLoader {
        let pixels: Vec<u8> = (0..10 * 4 * 4).map(|i| (i * 13 % 256) as u8).collect();
        let dataset = Dataset::new(
            "t",
            "train",
            vec!["a".into(), "b".into()],
            Storage::Memory { pixels, height: 4, width: 4, channels: 1 },
            (0..10).map(|i| (i % 2) as u16).collect(),
        )
        .unwrap();
        let transform = Transform {
            augment: Augment::PadCrop { pad: 1, flip: true },
            out_height: 4,
            out_width: 4,
            mean: vec![0.5],
            std: vec![0.5],
        };
        BatchLoader::new(
            dataset,
            transform,
            LoaderConfig { prefetch: 2, ..LoaderConfig::new(3, true, false, workers, 9) },
        )
        .unwrap()
    }

    #[test]
    fn same_batches_whatever_the_worker_count() {
        let reference: Vec<Batch> = loader(0).epoch(1).map(|b| b.unwrap()).collect();
        assert_eq!(reference.len(), 4);
        assert_eq!(reference.last().unwrap().first_view().shape, [1, 1, 4, 4]);
        for workers in [1, 3] {
            let batches: Vec<Batch> = loader(workers).epoch(1).map(|b| b.unwrap()).collect();
            assert_eq!(batches, reference, "{workers} workers");
        }
        let other: Vec<Batch> = loader(2).epoch(2).map(|b| b.unwrap()).collect();
        assert_ne!(other, reference, "another epoch reshuffles");
        let mut seen: Vec<usize> = reference.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    /// Two views of an image are two draws of the augmentation; the first view is the same
    /// as a one-view loader's, and unlabelled loaders hand out no labels.
    #[test]
    fn views_and_unlabelled_batches() {
        let one = loader(2);
        let mut two = loader(2);
        two.config.views = 2;
        two.config.labelled = false;
        let (a, b) = (one.epoch(0).next().unwrap().unwrap(), two.epoch(0).next().unwrap().unwrap());
        assert_eq!(b.views.len(), 2);
        assert_eq!(a.views[0], b.views[0]);
        assert_ne!(b.views[0], b.views[1], "the second view is another augmentation");
        assert_eq!(b.targets, Targets::None);
        assert!(matches!(a.targets, Targets::Labels(ref l) if l.len() == 3));
    }

    /// Five 4x4 PNGs, image 2 a zero-byte file: without a record the batch fails naming it;
    /// with one a training loader puts image 3 in its place (batches keep their size), an
    /// evaluation loader leaves the row out, and the file is recorded once.
    #[test]
    fn bad_images_fail_or_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for i in 0..5u8 {
            let path = dir.path().join(format!("{i}.png"));
            crate::folder::write_png(&path, &crate::image::Image::new(4, 4, 1, vec![i * 40; 16])).unwrap();
            paths.push(path);
        }
        std::fs::write(&paths[2], b"").unwrap();
        let storage = Storage::Files { paths, channels: 1 };
        let dataset = Dataset::new("f", "train", vec!["a".into(), "b".into()], storage, vec![0, 1, 0, 1, 0]).unwrap();
        let transform =
            Transform { augment: Augment::None, out_height: 4, out_width: 4, mean: vec![0.0], std: vec![1.0] };
        let load = |dataset: Dataset, training: bool| -> Result<Vec<Batch>> {
            let config = LoaderConfig::new(5, false, training, 1, 0);
            BatchLoader::new(dataset, transform.clone(), config)?.epoch(0).collect()
        };
        let err = load(dataset.clone(), true).unwrap_err().to_string();
        assert!(err.contains("2.png") && err.contains("empty"), "{err}");
        let record = Arc::new(crate::dataset::SkippedImages::default());
        let skipping = dataset.skipping_bad_images(record.clone());
        let train = load(skipping.clone(), true).unwrap();
        assert_eq!(train[0].indices, vec![0, 1, 3, 3, 4]);
        assert_eq!(train[0].labels().unwrap(), &[0, 1, 1, 1, 0], "the replacement brings its own label");
        let eval = load(skipping.clone(), false).unwrap();
        assert_eq!((eval[0].indices.clone(), eval[0].first_view().shape.clone()), (vec![0, 1, 3, 4], vec![4, 1, 4, 4]));
        // Batches of one: the batch of the bad image is passed over, the others come in order.
        let ones = BatchLoader::new(skipping, transform.clone(), LoaderConfig::new(1, false, false, 1, 0));
        let indices: Vec<usize> = ones.unwrap().epoch(0).map(|b| b.unwrap().indices[0]).collect();
        assert_eq!(indices, vec![0, 1, 3, 4]);
        let files = record.files();
        assert_eq!(files.len(), 1);
        assert!(files[0].0.ends_with("2.png") && files[0].1.contains("empty"), "{files:?}");
    }

    #[test]
    fn dropping_early_stops_workers() {
        let mut epoch = loader(2).epoch(0);
        assert!(epoch.next().unwrap().is_ok());
        drop(epoch); // must not hang
    }
}

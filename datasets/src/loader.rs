//! Batch loading on worker threads with prefetch.
//!
//! Deterministic given (seed, epoch): the order of an epoch is a seeded permutation and every
//! image's augmentation draws from its own random stream `(seed, epoch, image index)`, so the
//! batches are the same whatever the number of workers or their scheduling. Workers claim batch
//! numbers in order; at most `workers + prefetch` batches are in flight, and the iterator hands
//! them out in order.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::region_sampling::RegionSampling;
use crate::rng::stream;
use crate::transforms::Transform;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// A seeded permutation of `0..n` (Fisher-Yates over the `(seed, epoch)` stream).
pub fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = stream(seed, epoch, u64::MAX);
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
}

/// A batch of normalised images in NCHW order.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `shape[0] * shape[1] * shape[2] * shape[3]` floats.
    pub images: Vec<f32>,
    /// `[batch, channels, height, width]`.
    pub shape: [usize; 4],
    /// Labels (of the source image, for region crops).
    pub labels: Vec<usize>,
    /// Positions of the images in the dataset.
    pub indices: Vec<usize>,
    /// Soft labels `[batch, classes]` row-major for region crops (FKD); empty otherwise.
    pub soft_targets: Vec<f32>,
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
        let shared = Arc::new(Shared {
            dataset: self.dataset.clone(),
            transform: self.transform.clone(),
            regions: self.regions.clone(),
            order,
            batch_size: self.config.batch_size,
            batches: self.batches_per_epoch(),
            seed: self.config.seed,
            epoch,
            next: AtomicUsize::new(0),
        });
        let mut iter = EpochIter {
            shared: shared.clone(),
            yielded: 0,
            pending: BTreeMap::new(),
            workers: Vec::new(),
            tokens: None,
            results: None,
        };
        if self.config.workers > 0 {
            let window = self.config.workers + self.config.prefetch.max(1);
            let (token_tx, token_rx) = crossbeam_channel::bounded::<()>(window);
            let (result_tx, result_rx) = crossbeam_channel::unbounded();
            for _ in 0..window {
                token_tx.send(()).expect("the token channel should have room for the window");
            }
            for _ in 0..self.config.workers {
                let (shared, tokens, results) = (shared.clone(), token_rx.clone(), result_tx.clone());
                iter.workers.push(std::thread::spawn(move || {
                    while tokens.recv().is_ok() {
                        let b = shared.next.fetch_add(1, Ordering::Relaxed);
                        if b >= shared.batches || results.send((b, shared.make(b))).is_err() {
                            break;
                        }
                    }
                }));
            }
            iter.tokens = Some(token_tx);
            iter.results = Some(result_rx);
        }
        iter
    }
}

struct Shared {
    dataset: Dataset,
    transform: Arc<Transform>,
    regions: Option<Arc<RegionSampling>>,
    order: Vec<usize>,
    batch_size: usize,
    batches: usize,
    seed: u64,
    epoch: u64,
    next: AtomicUsize,
}

impl Shared {
    fn make(&self, b: usize) -> Result<Batch> {
        let positions = &self.order[b * self.batch_size..((b + 1) * self.batch_size).min(self.order.len())];
        let (h, w) = (self.transform.out_height, self.transform.out_width);
        let c = self.dataset.channels();
        let crops = self.regions.as_ref().map_or(1, |r| r.crops_per_visit());
        let mut images = Vec::with_capacity(positions.len() * crops * c * h * w);
        let mut soft_targets = Vec::new();
        for &i in positions {
            let mut rng = stream(self.seed, self.epoch, i as u64);
            match &self.regions {
                Some(regions) => {
                    regions.sample_into(&self.dataset, i, &mut rng, &self.transform, &mut images, &mut soft_targets)?
                }
                None => self.transform.apply_into(&self.dataset.image(i)?, &mut rng, &mut images),
            }
        }
        let repeat =
            |v: Vec<usize>| -> Vec<usize> { v.into_iter().flat_map(|x| std::iter::repeat_n(x, crops)).collect() };
        Ok(Batch {
            images,
            shape: [positions.len() * crops, c, h, w],
            labels: repeat(positions.iter().map(|&i| self.dataset.label(i)).collect()),
            indices: repeat(positions.to_vec()),
            soft_targets,
        })
    }
}

/// The batches of one epoch; dropping it stops and joins the workers.
pub struct EpochIter {
    shared: Arc<Shared>,
    yielded: usize,
    pending: BTreeMap<usize, Result<Batch>>,
    workers: Vec<JoinHandle<()>>,
    tokens: Option<crossbeam_channel::Sender<()>>,
    results: Option<crossbeam_channel::Receiver<(usize, Result<Batch>)>>,
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.yielded >= self.shared.batches {
            return None;
        }
        let b = self.yielded;
        self.yielded += 1;
        let Some(results) = &self.results else {
            return Some(self.shared.make(b));
        };
        while !self.pending.contains_key(&b) {
            match results.recv() {
                Ok((index, batch)) => {
                    self.pending.insert(index, batch);
                }
                Err(_) => return Some(Err(DataError::Invalid("a data loader worker stopped unexpectedly".into()))),
            }
        }
        if let Some(tokens) = &self.tokens {
            let _ = tokens.try_send(());
        }
        self.pending.remove(&b)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.shared.batches - self.yielded;
        (left, Some(left))
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.tokens = None;
        self.results = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
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
            LoaderConfig { batch_size: 3, shuffle: true, drop_last: false, workers, prefetch: 2, seed: 9 },
        )
        .unwrap()
    }

    #[test]
    fn same_batches_whatever_the_worker_count() {
        let reference: Vec<Batch> = loader(0).epoch(1).map(|b| b.unwrap()).collect();
        assert_eq!(reference.len(), 4);
        assert_eq!(reference.last().unwrap().shape, [1, 1, 4, 4]);
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

    #[test]
    fn dropping_early_stops_workers() {
        let mut epoch = loader(2).epoch(0);
        assert!(epoch.next().unwrap().is_ok());
        drop(epoch); // must not hang
    }
}

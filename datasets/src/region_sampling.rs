//! FKD multi-crop sampling (Shen & Xing, "A Fast Knowledge Distillation Framework for Visual
//! Recognition", ECCV 2022, §3.2): on every visit of an image a fresh random
//! permutation of its stored crops is drawn and the first `crops_per_visit` are rebuilt from
//! their stored box and flip, each with its decoded soft label. All crops of an image land in
//! the same batch.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::soft_labels::LabelReader;
use crate::transforms::{Transform, crop_resize};
use rand::Rng;
use std::sync::Arc;

/// Region crops and soft labels from a label file.
pub struct RegionSampling {
    labels: Arc<LabelReader>,
    crops_per_visit: usize,
    label_index: Vec<usize>,
}

impl RegionSampling {
    /// `label_index[i]` is the label-file image of dataset item `i` (items of a training subset
    /// map to their positions in the split the labels were packed for).
    pub fn new(
        labels: Arc<LabelReader>,
        crops_per_visit: usize,
        label_index: Vec<usize>,
        dataset: &Dataset,
    ) -> Result<Self> {
        let meta = labels.meta();
        if crops_per_visit == 0 || crops_per_visit > meta.crops_per_image {
            return Err(DataError::Invalid(format!(
                "crops per image visit must be between 1 and the {} crops stored per image, got {crops_per_visit}",
                meta.crops_per_image
            )));
        }
        if label_index.len() != dataset.len() {
            return Err(DataError::Invalid(format!(
                "{} label positions for {} images",
                label_index.len(),
                dataset.len()
            )));
        }
        if let Some(&beyond) = label_index.iter().find(|&&i| i >= meta.num_images) {
            return Err(DataError::Invalid(format!(
                "image {beyond} is beyond the {} images of the label file",
                meta.num_images
            )));
        }
        if meta.num_classes != dataset.num_classes() {
            return Err(DataError::Invalid(format!(
                "the label file has {} classes, the dataset {}",
                meta.num_classes,
                dataset.num_classes()
            )));
        }
        Ok(Self { labels, crops_per_visit, label_index })
    }

    /// Crops drawn per image visit.
    pub fn crops_per_visit(&self) -> usize {
        self.crops_per_visit
    }

    /// Classes of the soft labels.
    pub fn num_classes(&self) -> usize {
        self.labels.meta().num_classes
    }

    /// Appends the normalised crops of dataset item `item` to `images` and their soft labels to
    /// `targets`; `rng` chooses which stored crops.
    pub fn sample_into(
        &self,
        dataset: &Dataset,
        item: usize,
        rng: &mut impl Rng,
        transform: &Transform,
        images: &mut Vec<f32>,
        targets: &mut Vec<f32>,
    ) -> Result<()> {
        // A file is decoded once for all its crops, reduced in the DCT as far as the smallest
        // chosen crop allows; images in memory are used as they are.
        // `Ok`: a file, decoded below; `Err`: an image held in memory.
        let source = match dataset.file(item).transpose()? {
            Some(file) => Ok(file),
            None => Err(dataset.image(item)?),
        };
        let (height, width) = match &source {
            Ok(file) => (file.height, file.width),
            Err(image) => (image.height, image.width),
        };
        let file_image = self.label_index[item];
        let crops = self.labels.crops(file_image, height, width)?;
        // Partial Fisher-Yates: the first `crops_per_visit` entries of a random permutation.
        let mut order: Vec<usize> = (0..crops.len()).collect();
        for i in 0..self.crops_per_visit {
            order.swap(i, rng.random_range(i..crops.len()));
        }
        let chosen = &order[..self.crops_per_visit];
        let (out_h, out_w) = (transform.out_height, transform.out_width);
        let (image, boxes) = match source {
            Ok(file) => {
                let full: Vec<_> = chosen.iter().map(|&c| crops[c].pixel_box).collect();
                let image = file.decode(dataset.channels(), file.reduction_for(&full, out_h, out_w))?;
                let reduced = (image.height, image.width);
                (image, full.into_iter().map(|b| file.box_in(b, reduced, (out_h, out_w))).collect::<Vec<_>>())
            }
            Err(image) => (image, chosen.iter().map(|&c| crops[c].pixel_box).collect()),
        };
        let mut distribution = Vec::with_capacity(self.num_classes());
        for (&c, &pixel_box) in chosen.iter().zip(&boxes) {
            let crop = crop_resize(&image, pixel_box, crops[c].flip, out_h, out_w);
            transform.normalise_into(&crop, images);
            self.labels.distribution_into(file_image, c, &mut distribution)?;
            targets.extend_from_slice(&distribution);
        }
        crate::decode::recycle(image.pixels);
        Ok(())
    }
}

impl std::fmt::Debug for RegionSampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionSampling")
            .field("crops_per_visit", &self.crops_per_visit)
            .field("images", &self.label_index.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Storage;
    use crate::loader::{BatchLoader, LoaderConfig};
    use crate::soft_labels::compress::{Compression, LabelType, ProbEncoding};
    use crate::soft_labels::file::{Geometry, LabelBlock, LabelMeta, RegionLabels};
    use crate::soft_labels::geometry::{CropParams, quantised};
    use crate::transforms::Augment;

    /// Two 6x6 images, 3 stored crops each; crop `c` carries the hard label `c`, so a batch
    /// row's soft target names the stored crop it must have been rebuilt from.
    fn setup() -> (Dataset, LabelReader, Vec<crate::transforms::PixelBox>) {
        let pixels: Vec<u8> = (0..2 * 36).map(|i| (i * 7 % 251) as u8).collect();
        let dataset = Dataset::new(
            "t",
            "train",
            vec!["a".into(), "b".into(), "c".into()],
            Storage::Memory { pixels, height: 6, width: 6, channels: 1 },
            vec![0, 1],
        )
        .unwrap();
        let boxes = [(0, 0, 3, 3), (1, 2, 4, 4), (2, 1, 4, 5)];
        let mut block = LabelBlock { images: 2, seeds: vec![0, 0], ..Default::default() };
        let mut pixel_boxes = Vec::new();
        for _ in 0..2 {
            for (c, &b) in boxes.iter().enumerate() {
                let (raw, pixel_box) = quantised(b, 6, 6);
                pixel_boxes.push(pixel_box);
                block.boxes.extend_from_slice(&raw);
                block.flips.push((c == 1) as u8);
                block.indices.push(c as u32);
            }
        }
        let meta = LabelMeta {
            format_version: 1,
            num_classes: 3,
            num_images: 2,
            image_offset: 0,
            crops_per_image: 3,
            compression: Compression { label_type: LabelType::Hard, k: 1, encoding: ProbEncoding::U8 },
            temperature: 1.0,
            crop: CropParams { scale: [0.08, 1.0], ratio: [0.75, 4.0 / 3.0], flip_prob: 0.5, output_size: [4, 4] },
            geometry: Geometry::Stored,
            seed: 0,
            teachers: vec![],
            dataset: dataset.identity(),
            shard: None,
            tool: "test".into(),
            created_unix: 0,
        };
        let labels = RegionLabels::from_block(meta, block, std::path::Path::new("mem.h5")).unwrap();
        (dataset, LabelReader::Memory(labels), pixel_boxes)
    }

    #[test]
    fn crops_are_rebuilt_from_stored_boxes_with_their_labels() {
        let (dataset, reader, pixel_boxes) = setup();
        let transform =
            Transform { augment: Augment::None, out_height: 4, out_width: 4, mean: vec![0.0], std: vec![1.0] };
        // Dataset item 0 is label-file image 1 and vice versa.
        let regions = RegionSampling::new(Arc::new(reader), 2, vec![1, 0], &dataset).unwrap();
        let config = LoaderConfig::new(2, true, false, 0, 3);
        let loader = BatchLoader::with_regions(dataset.clone(), transform.clone(), config, regions).unwrap();
        assert_eq!(loader.images_per_epoch(), 4);
        let mut seen_pairs = std::collections::BTreeSet::new();
        for epoch in 0..6 {
            let batch = loader.epoch(epoch).next().unwrap().unwrap();
            assert_eq!(batch.first_view().shape, [4, 1, 4, 4]);
            let crate::loader::Targets::Soft { labels, distributions: soft_targets, classes: 3 } = &batch.targets
            else {
                panic!("region batches carry soft targets")
            };
            assert_eq!(soft_targets.len(), 4 * 3);
            for row in 0..4 {
                let item = batch.indices[row];
                assert_eq!(batch.indices[row / 2 * 2], item, "the crops of an image are adjacent");
                assert_eq!(labels[row], dataset.label(item));
                let target = &soft_targets[row * 3..row * 3 + 3];
                let c = target.iter().position(|&p| p == 1.0).expect("a one-hot target");
                let file_image = 1 - item;
                let expected =
                    crop_resize(&dataset.image(item).unwrap(), pixel_boxes[file_image * 3 + c], c == 1, 4, 4);
                let expected: Vec<f32> = expected.pixels.iter().map(|&p| p as f32 / 255.0).collect();
                assert_eq!(&batch.first_view().values[row * 16..(row + 1) * 16], &expected[..], "row {row} (crop {c})");
            }
            for image in 0..2 {
                let pick = |row: usize| soft_targets[row * 3..row * 3 + 3].iter().position(|&p| p == 1.0).unwrap();
                let (a, b) = (pick(image * 2), pick(image * 2 + 1));
                assert_ne!(a, b, "two different stored crops per visit");
                seen_pairs.insert((a.min(b), a.max(b)));
            }
        }
        assert!(seen_pairs.len() >= 2, "visits draw different crops: {seen_pairs:?}");
    }

    #[test]
    fn refuses_more_crops_than_stored_and_positions_beyond_the_file() {
        let (dataset, reader, _) = setup();
        let reader = Arc::new(reader);
        let err = RegionSampling::new(reader.clone(), 4, vec![0, 1], &dataset).unwrap_err().to_string();
        assert!(err.contains("between 1 and the 3 crops"), "{err}");
        let err = RegionSampling::new(reader, 1, vec![0, 2], &dataset).unwrap_err().to_string();
        assert!(err.contains("image 2 is beyond the 2 images"), "{err}");
    }
}

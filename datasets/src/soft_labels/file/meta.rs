//! What a label file says about itself: its metadata, checked before any array is read.

use crate::dataset::DatasetIdentity;
use crate::error::{DataError, Result};
use crate::soft_labels::compress::Compression;
use crate::soft_labels::geometry::CropParams;
use std::path::Path;

/// Version of the layout; readers refuse other versions.
pub const FORMAT_VERSION: u32 = 1;

/// Where crop geometry comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Geometry {
    /// Boxes (4 x u16) and flips (u8) stored per crop: 9 bytes.
    Stored,
    /// Regenerated from the per-image seed (0 bytes per crop).
    Seed,
}

/// A teacher that produced the labels.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TeacherInfo {
    /// Architecture name.
    pub arch: String,
    /// SHA-256 of its weights.
    pub weights_sha256: String,
}

/// Everything a label file says about itself.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelMeta {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Classes C.
    pub num_classes: usize,
    /// Images in this file.
    pub num_images: usize,
    /// Index of this file's first image in the dataset (shards).
    pub image_offset: usize,
    /// Crops per image M.
    pub crops_per_image: usize,
    /// Compression and probability encoding.
    pub compression: Compression,
    /// Teacher softmax temperature.
    pub temperature: f32,
    /// Crop parameters.
    pub crop: CropParams,
    /// Stored or seed-regenerated geometry.
    pub geometry: Geometry,
    /// Seed of the crop streams.
    pub seed: u64,
    /// Teachers (an ensemble averages their softmax).
    pub teachers: Vec<TeacherInfo>,
    /// The dataset split the labels belong to (all of it, not only this shard).
    pub dataset: DatasetIdentity,
    /// `(index, count)` when packed with `--shard`.
    pub shard: Option<(usize, usize)>,
    /// Writer and version.
    pub tool: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
}

impl LabelMeta {
    /// Checks that the metadata describes a file this reader can hold: sizes in range, their
    /// products representable, crop parameters and compression consistent. A file whose
    /// metadata fails this is refused before any array is read.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |message: String| Err(DataError::Format { path: path.into(), offset: 0, message });
        if !(2..=1 << 24).contains(&self.num_classes) {
            return bad(format!("{} classes (expected 2 to 2^24)", self.num_classes));
        }
        if !(1..=1 << 16).contains(&self.crops_per_image) {
            return bad(format!("{} crops per image (expected 1 to 65536)", self.crops_per_image));
        }
        if self.num_images > 1 << 32 || self.image_offset > 1 << 32 {
            return bad(format!("{} images at offset {} is out of range", self.num_images, self.image_offset));
        }
        if let Err(e) = self.compression.validate(self.num_classes) {
            return bad(e.to_string());
        }
        let per_crop = (self.k_indices() * 4 + self.k_probs() * 2 + 9) as u128;
        if (self.num_images as u128) * (self.crops_per_image as u128) * per_crop > 1 << 56 {
            return bad("the attributes announce more label data than any file holds".into());
        }
        let c = &self.crop;
        let ordered = |r: [f32; 2]| r[0].is_finite() && r[1].is_finite() && r[0] > 0.0 && r[0] <= r[1];
        if !ordered(c.scale) || c.scale[1] > 1.0 || !ordered(c.ratio) {
            return bad(format!("crop scale {:?} or ratio {:?} out of range", c.scale, c.ratio));
        }
        if !(0.0..=1.0).contains(&c.flip_prob) || c.output_size.iter().any(|&s| s == 0 || s > 1 << 14) {
            return bad(format!("flip probability {} or crop size {:?} out of range", c.flip_prob, c.output_size));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!("temperature {} is not positive", self.temperature));
        }
        if let Some((i, n)) = self.shard
            && (n == 0 || i >= n)
        {
            return bad(format!("shard {i}/{n} is not a valid shard"));
        }
        Ok(())
    }

    /// Stored class indices per crop.
    pub fn k_indices(&self) -> usize {
        self.compression.label_type.stored_indices(self.compression.k)
    }

    /// Stored probabilities per crop.
    pub fn k_probs(&self) -> usize {
        self.compression.label_type.stored_probs(self.compression.k, self.num_classes)
    }

    /// Bytes of one stored class index.
    pub fn index_bytes(&self) -> usize {
        match self.num_classes {
            0..=256 => 1,
            257..=65536 => 2,
            _ => 4,
        }
    }

    /// Raw bytes per crop before HDF5 compression (geometry, indices, probabilities).
    pub fn raw_bytes_per_crop(&self) -> usize {
        let geometry = if self.geometry == Geometry::Stored { 4 * 2 + 1 } else { 0 };
        geometry + self.k_indices() * self.index_bytes() + self.k_probs() * self.compression.encoding.bytes()
    }

    /// Refuses labels made for another dataset split or class count.
    pub fn check_matches(&self, path: &Path, dataset: &DatasetIdentity, classes: usize) -> Result<()> {
        let m = self;
        let mut problems = Vec::new();
        if m.num_classes != classes {
            problems.push(format!("{} classes, the dataset has {classes}", m.num_classes));
        }
        if m.dataset.count != dataset.count
            || m.dataset.list_hash != dataset.list_hash
            || m.dataset.name != dataset.name
        {
            problems.push(format!(
                "made for {} {} ({} images, list hash {}), not {} {} ({} images, list hash {})",
                m.dataset.name,
                m.dataset.split,
                m.dataset.count,
                &m.dataset.list_hash[..12.min(m.dataset.list_hash.len())],
                dataset.name,
                dataset.split,
                dataset.count,
                &dataset.list_hash[..12.min(dataset.list_hash.len())]
            ));
        }
        if m.shard.is_some() {
            problems.push("it is a single shard; merge the shards first (kd-pack-labels merge)".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DataError::Inconsistent {
                path: path.into(),
                message: format!("label file does not match: {}", problems.join("; ")),
            })
        }
    }

    /// The same file apart from creation time (for resume checks).
    pub fn same_run(&self, other: &Self) -> bool {
        Self { created_unix: 0, ..self.clone() } == Self { created_unix: 0, ..other.clone() }
    }
}

//! Reading label files larger than memory: chunks of images are read on demand (one HDF5 read
//! per dataset, fletcher32 verified) and the most recently used chunks are kept. The HDF5
//! library serialises every call behind one global lock, so one reader with a cache is as fast
//! as several; training loaders prefetch from it on their worker threads.

use super::file::{CropLabel, LabelBlock, LabelMeta, RegionLabels, read_range};
use crate::error::{DataError, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A label file read chunk by chunk.
pub struct ChunkedLabels {
    /// The file's metadata.
    pub meta: LabelMeta,
    path: PathBuf,
    file: Mutex<hdf5::File>,
    chunk_images: usize,
    capacity: usize,
    cache: Mutex<Vec<(usize, Arc<RegionLabels>)>>,
}

impl ChunkedLabels {
    /// Opens a complete file; `chunk_images` images are read at a time and `capacity` chunks kept.
    pub fn open(path: &Path, chunk_images: usize, capacity: usize) -> Result<Self> {
        let (file, meta) = super::file::open_complete(path)?;
        Ok(Self {
            meta,
            path: path.into(),
            file: Mutex::new(file),
            chunk_images: chunk_images.max(1),
            capacity: capacity.max(1),
            cache: Mutex::new(Vec::new()),
        })
    }

    fn chunk(&self, index: usize) -> Result<(Arc<RegionLabels>, usize)> {
        if index >= self.meta.num_images {
            return Err(DataError::Invalid(format!(
                "{}: image {index} is beyond its {} images",
                self.path.display(),
                self.meta.num_images
            )));
        }
        let c = index / self.chunk_images;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = cache.iter().position(|(k, _)| *k == c) {
            let entry = cache.remove(at);
            let labels = entry.1.clone();
            cache.push(entry);
            return Ok((labels, index - c * self.chunk_images));
        }
        let start = c * self.chunk_images;
        let end = (start + self.chunk_images).min(self.meta.num_images);
        let block: LabelBlock = {
            let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            read_range(&file, &self.path, &self.meta, start, end)?
        };
        let meta =
            LabelMeta { num_images: end - start, image_offset: self.meta.image_offset + start, ..self.meta.clone() };
        let labels = Arc::new(RegionLabels::from_block(meta, block, &self.path)?);
        if cache.len() >= self.capacity {
            cache.remove(0);
        }
        cache.push((c, labels.clone()));
        Ok((labels, index - start))
    }

    /// Geometry of every crop of image `image` in an `h x w` source image.
    pub fn crops(&self, image: usize, h: usize, w: usize) -> Result<Vec<CropLabel>> {
        let (chunk, local) = self.chunk(image)?;
        Ok(chunk.crops(local, h, w))
    }

    /// The decoded distribution of one crop.
    pub fn distribution_into(&self, image: usize, crop: usize, out: &mut Vec<f32>) -> Result<()> {
        let (chunk, local) = self.chunk(image)?;
        chunk.distribution_into(local, crop, out);
        Ok(())
    }
}

/// A label file in memory when it fits `memory_budget` bytes, else read chunk by chunk.
pub enum LabelReader {
    /// Every array in memory.
    Memory(RegionLabels),
    /// Chunks on demand.
    Chunked(ChunkedLabels),
}

impl LabelReader {
    /// Opens `path`, loading it whole if its decoded arrays take at most `memory_budget` bytes.
    pub fn open(path: &Path, memory_budget: u64) -> Result<Self> {
        let (_, meta) = super::file::open_complete(path)?;
        let crops = (meta.num_images * meta.crops_per_image) as u64;
        // In memory: u16 boxes (8 B) + flip (1 B) + u32 indices + u16 probabilities per crop.
        let bytes = crops * (9 + 4 * meta.k_indices() as u64 + 2 * meta.k_probs() as u64);
        if bytes <= memory_budget {
            return Ok(Self::Memory(RegionLabels::open(path)?));
        }
        // Chunks of about 4 MiB, 64 of them kept.
        let per_image =
            (meta.crops_per_image as u64 * (9 + 4 * meta.k_indices() as u64 + 2 * meta.k_probs() as u64)).max(1);
        let chunk_images = ((4 << 20) / per_image).max(1) as usize;
        Ok(Self::Chunked(ChunkedLabels::open(path, chunk_images, 64)?))
    }

    /// The file's metadata.
    pub fn meta(&self) -> &LabelMeta {
        match self {
            Self::Memory(labels) => &labels.meta,
            Self::Chunked(labels) => &labels.meta,
        }
    }

    /// Refuses labels made for another dataset split or class count.
    pub fn check_matches(&self, path: &Path, dataset: &crate::dataset::DatasetIdentity, classes: usize) -> Result<()> {
        self.meta().check_matches(path, dataset, classes)
    }

    /// Geometry of every crop of an image.
    pub fn crops(&self, image: usize, h: usize, w: usize) -> Result<Vec<CropLabel>> {
        match self {
            Self::Memory(labels) => Ok(labels.crops(image, h, w)),
            Self::Chunked(labels) => labels.crops(image, h, w),
        }
    }

    /// The decoded distribution of one crop.
    pub fn distribution_into(&self, image: usize, crop: usize, out: &mut Vec<f32>) -> Result<()> {
        match self {
            Self::Memory(labels) => {
                labels.distribution_into(image, crop, out);
                Ok(())
            }
            Self::Chunked(labels) => labels.distribution_into(image, crop, out),
        }
    }
}

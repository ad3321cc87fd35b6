//! Reading a label file: metadata, completion state, ranges of images, and the whole file in
//! memory.

use crate::dataset::DatasetIdentity;
use crate::error::{DataError, Result};
use crate::soft_labels::compress::ProbEncoding;
use crate::soft_labels::geometry::{crops_from_seed, decode_box};
use crate::transforms::PixelBox;
use hdf5::types::VarLenUnicode;
use std::path::Path;

use super::meta::*;
use super::{LabelBlock, h5};

pub(crate) fn read_meta(file: &hdf5::File, path: &Path) -> Result<LabelMeta> {
    let err = h5(path);
    let version: u32 = file.attr("format_version").and_then(|a| a.read_scalar()).map_err(|_| DataError::Format {
        path: path.into(),
        offset: 0,
        message: "not a kdkit region-label file (no format_version attribute)".into(),
    })?;
    if version != FORMAT_VERSION {
        return Err(DataError::Format {
            path: path.into(),
            offset: 0,
            message: format!("format version {version} is not supported (this kdkit reads {FORMAT_VERSION})"),
        });
    }
    let json: VarLenUnicode = file.attr("metadata_json").and_then(|a| a.read_scalar()).map_err(&err)?;
    let meta: LabelMeta = serde_json::from_str(json.as_str()).map_err(|e| DataError::Format {
        path: path.into(),
        offset: 0,
        message: format!("metadata_json: {e}"),
    })?;
    meta.validate(path)?;
    Ok(meta)
}

/// Opens a file's metadata and completion state without loading the labels.
pub fn inspect(path: &Path) -> Result<(LabelMeta, bool, usize)> {
    let file = hdf5::File::open(path).map_err(h5(path))?;
    let meta = read_meta(&file, path)?;
    let complete: u8 = file.attr("complete").and_then(|a| a.read_scalar()).map_err(h5(path))?;
    let done: u64 = file.attr("images_done").and_then(|a| a.read_scalar()).map_err(h5(path))?;
    Ok((meta, complete == 1, done as usize))
}

/// Opens a label file that must be complete; returns it with its metadata.
pub fn open_complete(path: &Path) -> Result<(hdf5::File, LabelMeta)> {
    let err = h5(path);
    let file = hdf5::File::open(path).map_err(&err)?;
    let meta = read_meta(&file, path)?;
    let complete: u8 = file.attr("complete").and_then(|a| a.read_scalar()).map_err(&err)?;
    if complete != 1 {
        let done: u64 = file.attr("images_done").and_then(|a| a.read_scalar()).unwrap_or(0);
        return Err(DataError::Format {
            path: path.into(),
            offset: 0,
            message: format!("incomplete label file ({done} of {} images written)", meta.num_images),
        });
    }
    check_storage(&file, path)?;
    Ok((file, meta))
}

/// Deflate cannot shrink data by more than about 1032:1; allow that and some slack.
const MAX_COMPRESSION_RATIO: u64 = 1100;

/// Refuses a file whose arrays claim more data than it stores: a few kilobytes of sparse HDF5
/// may declare billions of images, which reading would allocate (every chunk of a complete file
/// was written, so its stored bytes bound its decoded size).
fn check_storage(file: &hdf5::File, path: &Path) -> Result<()> {
    let err = h5(path);
    for name in file.member_names().map_err(&err)? {
        let Ok(dataset) = file.dataset(&name) else { continue };
        let element = dataset.dtype().map_err(&err)?.size() as u64;
        let decoded = (dataset.size() as u64).saturating_mul(element);
        let stored = dataset.storage_size();
        if decoded > stored.saturating_mul(MAX_COMPRESSION_RATIO).saturating_add(1 << 20) {
            return Err(DataError::Format {
                path: path.into(),
                offset: 0,
                message: format!(
                    "array `{name}` declares {decoded} bytes but the file stores {stored}: a sparse or truncated file"
                ),
            });
        }
    }
    Ok(())
}

/// Reads images `start..end` of every dataset (each chunk's fletcher32 checksum is verified).
pub fn read_range(file: &hdf5::File, path: &Path, meta: &LabelMeta, start: usize, end: usize) -> Result<LabelBlock> {
    use ndarray::s;
    let err = h5(path);
    let (stored, ki, kp) = (meta.geometry == Geometry::Stored, meta.k_indices(), meta.k_probs());
    let read3 = |name: &str| -> Result<hdf5::Dataset> { file.dataset(name).map_err(&err) };
    let indices: Vec<u32> = if ki == 0 {
        Vec::new()
    } else {
        let ds = read3("indices")?;
        let sel = s![start..end, .., ..];
        match meta.index_bytes() {
            1 => ds.read_slice::<u8, _, ndarray::Ix3>(sel).map_err(&err)?.into_iter().map(u32::from).collect(),
            2 => ds.read_slice::<u16, _, ndarray::Ix3>(sel).map_err(&err)?.into_iter().map(u32::from).collect(),
            _ => ds.read_slice::<u32, _, ndarray::Ix3>(sel).map_err(&err)?.into_iter().collect(),
        }
    };
    let probs: Vec<u16> = if kp == 0 {
        Vec::new()
    } else {
        let ds = read3("probs")?;
        let sel = s![start..end, .., ..];
        match meta.compression.encoding {
            ProbEncoding::U8 => {
                ds.read_slice::<u8, _, ndarray::Ix3>(sel).map_err(&err)?.into_iter().map(u16::from).collect()
            }
            ProbEncoding::F16 => ds
                .read_slice::<half::f16, _, ndarray::Ix3>(sel)
                .map_err(&err)?
                .into_iter()
                .map(|v| v.to_bits())
                .collect(),
        }
    };
    Ok(LabelBlock {
        images: end - start,
        boxes: if stored {
            read3("boxes")?
                .read_slice::<u16, _, ndarray::Ix3>(s![start..end, .., ..])
                .map_err(&err)?
                .into_iter()
                .collect()
        } else {
            Vec::new()
        },
        flips: if stored {
            read3("flips")?.read_slice::<u8, _, ndarray::Ix2>(s![start..end, ..]).map_err(&err)?.into_iter().collect()
        } else {
            Vec::new()
        },
        seeds: read3("seeds")?.read_slice_1d::<u64, _>(s![start..end]).map_err(&err)?.into_iter().collect(),
        indices,
        probs,
    })
}

/// A complete label file loaded into memory (the HDF5 library serialises all calls behind one
/// lock, so in-memory arrays are what keeps label reading negligible next to a training step).
#[derive(Clone, Debug)]
pub struct RegionLabels {
    /// The file's metadata.
    pub meta: LabelMeta,
    boxes: Vec<u16>,
    flips: Vec<u8>,
    seeds: Vec<u64>,
    indices: Vec<u32>,
    probs: Vec<u16>,
}

/// One crop's label.
#[derive(Clone, Debug, PartialEq)]
pub struct CropLabel {
    /// The crop in pixels of the source image.
    pub pixel_box: PixelBox,
    /// Mirrored.
    pub flip: bool,
}

impl RegionLabels {
    /// Loads a complete file, reading every chunk (which verifies its fletcher32 checksum).
    pub fn open(path: &Path) -> Result<Self> {
        let (file, meta) = open_complete(path)?;
        let block = read_range(&file, path, &meta, 0, meta.num_images)?;
        Self::from_block(meta, block, path)
    }

    /// Wraps arrays read from `path`, checking their shapes and class indices.
    pub fn from_block(meta: LabelMeta, block: LabelBlock, path: &Path) -> Result<Self> {
        let labels = Self {
            meta,
            boxes: block.boxes,
            flips: block.flips,
            seeds: block.seeds,
            indices: block.indices,
            probs: block.probs,
        };
        labels.validate(path)?;
        Ok(labels)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let m = &self.meta;
        m.validate(path)?;
        let crops = m.num_images * m.crops_per_image;
        let bad = |message: String| Err(DataError::Format { path: path.into(), offset: 0, message });
        if self.seeds.len() != m.num_images
            || self.indices.len() != crops * m.k_indices()
            || self.probs.len() != crops * m.k_probs()
        {
            return bad("dataset shapes disagree with the attributes".into());
        }
        if m.geometry == Geometry::Stored && (self.boxes.len() != crops * 4 || self.flips.len() != crops) {
            return bad("box or flip dataset has the wrong shape".into());
        }
        if let Some(i) = self.indices.iter().position(|&c| c as usize >= m.num_classes) {
            return bad(format!(
                "class index {} of crop entry {i} is out of range 0..{}",
                self.indices[i], m.num_classes
            ));
        }
        Ok(())
    }

    /// Refuses labels made for another dataset split or class count.
    pub fn check_matches(&self, path: &Path, dataset: &DatasetIdentity, classes: usize) -> Result<()> {
        self.meta.check_matches(path, dataset, classes)
    }

    /// Geometry of every crop of image `image` (file-relative) in an `h x w` source image.
    pub fn crops(&self, image: usize, h: usize, w: usize) -> Vec<CropLabel> {
        let m = self.meta.crops_per_image;
        match self.meta.geometry {
            Geometry::Stored => (0..m)
                .map(|c| {
                    let at = image * m + c;
                    let raw = [0, 1, 2, 3].map(|k| self.boxes[at * 4 + k]);
                    CropLabel { pixel_box: decode_box(raw).to_pixels(h, w), flip: self.flips[at] == 1 }
                })
                .collect(),
            Geometry::Seed => crops_from_seed(self.seeds[image], m, h, w, &self.meta.crop)
                .into_iter()
                .map(|(raw, flip)| CropLabel { pixel_box: decode_box(raw).to_pixels(h, w), flip })
                .collect(),
        }
    }

    /// The decoded distribution of crop `crop` of image `image` into `out`.
    pub fn distribution_into(&self, image: usize, crop: usize, out: &mut Vec<f32>) {
        let at = image * self.meta.crops_per_image + crop;
        let (ki, kp) = (self.meta.k_indices(), self.meta.k_probs());
        self.meta.compression.decode_into(
            &self.indices[at * ki..(at + 1) * ki],
            &self.probs[at * kp..(at + 1) * kp],
            self.meta.num_classes,
            out,
        );
    }

    /// Raw stored class indices and encoded probabilities of one crop.
    pub fn raw(&self, image: usize, crop: usize) -> (&[u32], &[u16]) {
        let at = image * self.meta.crops_per_image + crop;
        let (ki, kp) = (self.meta.k_indices(), self.meta.k_probs());
        (&self.indices[at * ki..(at + 1) * ki], &self.probs[at * kp..(at + 1) * kp])
    }

    /// The stored block of all images (for merging shards and comparing files).
    pub fn as_block(&self) -> LabelBlock {
        LabelBlock {
            images: self.meta.num_images,
            boxes: self.boxes.clone(),
            flips: self.flips.clone(),
            seeds: self.seeds.clone(),
            indices: self.indices.clone(),
            probs: self.probs.clone(),
        }
    }
}

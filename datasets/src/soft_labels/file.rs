//! The region-label file: one HDF5 file, chunked by image, compressed (shuffle + deflate) with
//! fletcher32 checksums. The only module of kdkit that touches HDF5.
//!
//! Layout (N images in the file, M crops per image, K stored entries per crop):
//!
//! | dataset | shape | type | present |
//! |---|---|---|---|
//! | `boxes` | (N, M, 4) | u16: top, left, height, width as fractions x 65535 | geometry = stored |
//! | `flips` | (N, M) | u8 | geometry = stored |
//! | `seeds` | (N,) | u64: per-image seed of the crop stream | always |
//! | `indices` | (N, M, K) | u8 if C <= 256, u16 if C <= 65536, else u32 | all types but full |
//! | `probs` | (N, M, K) or (N, M, C) | u8 (`round(255 p)`) or f16 | all types but hard |
//!
//! Root attributes describe the file completely (format version, classes, counts, compression,
//! temperature, crop parameters, seed, teachers, dataset identity, tool, creation time, shard);
//! `metadata_json` holds the same as one JSON document. The file is written as `<name>.partial`
//! and renamed when complete, with `complete = 1`.

use super::compress::{Compression, ProbEncoding};
use super::geometry::{CropParams, crops_from_seed, decode_box};
use crate::dataset::DatasetIdentity;
use crate::error::{DataError, Result};
use crate::transforms::PixelBox;
use hdf5::types::VarLenUnicode;
use std::path::{Path, PathBuf};

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
    fn same_run(&self, other: &Self) -> bool {
        Self { created_unix: 0, ..self.clone() } == Self { created_unix: 0, ..other.clone() }
    }
}

/// Encoded labels of consecutive images, row-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelBlock {
    /// Images in the block.
    pub images: usize,
    /// `images * M * 4` u16 fractions.
    pub boxes: Vec<u16>,
    /// `images * M` flags.
    pub flips: Vec<u8>,
    /// `images` seeds.
    pub seeds: Vec<u64>,
    /// `images * M * K` class indices.
    pub indices: Vec<u32>,
    /// `images * M * K` encoded probabilities (u8 values or f16 bits).
    pub probs: Vec<u16>,
}

fn h5(path: &Path) -> impl Fn(hdf5::Error) -> DataError + '_ {
    move |e| DataError::Format { path: path.into(), offset: 0, message: format!("HDF5: {e}") }
}

fn write_str_attr(file: &hdf5::File, name: &str, value: &str) -> hdf5::Result<()> {
    let value: VarLenUnicode = value.parse().map_err(|e| hdf5::Error::from(format!("{e:?}").as_str()))?;
    file.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&value)
}

fn write_num_attr<T: hdf5::H5Type>(file: &hdf5::File, name: &str, value: T) -> hdf5::Result<()> {
    file.new_attr::<T>().create(name)?.write_scalar(&value)
}

/// The partial file written while packing.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Writes a label file block by block; resumable.
pub struct LabelWriter {
    file: hdf5::File,
    path: PathBuf,
    meta: LabelMeta,
}

impl LabelWriter {
    /// Continues `<path>.partial` if it holds the same run, else creates it. Returns the writer
    /// and the number of images already written.
    pub fn create_or_resume(path: &Path, meta: &LabelMeta) -> Result<(Self, usize)> {
        let partial = partial_path(path);
        if partial.exists() {
            if let Ok(file) = hdf5::File::open_rw(&partial) {
                let existing = read_meta(&file, &partial).ok();
                let done: Option<u64> = file.attr("images_done").and_then(|a| a.read_scalar()).ok();
                if let (Some(existing), Some(done)) = (existing, done) {
                    if existing.same_run(meta) {
                        let writer = Self { file, path: partial, meta: existing };
                        return Ok((writer, done as usize));
                    }
                }
            }
            std::fs::remove_file(&partial).map_err(|e| DataError::io(&partial, e))?;
        }
        let err = h5(&partial);
        let file = hdf5::File::create(&partial).map_err(&err)?;
        let (n, m) = (meta.num_images, meta.crops_per_image);
        let per_image = m * meta.raw_bytes_per_crop().max(1);
        let chunk = (256 * 1024 / per_image).clamp(1, n.max(1));
        macro_rules! dataset {
            ($t:ty, $name:expr, $shape:expr, $chunk:expr) => {
                file.new_dataset::<$t>()
                    .chunk($chunk)
                    .shuffle()
                    .deflate(4)
                    .fletcher32()
                    .shape($shape)
                    .create($name)
                    .map_err(&err)?
            };
        }
        if meta.geometry == Geometry::Stored {
            dataset!(u16, "boxes", (n, m, 4), (chunk, m, 4));
            dataset!(u8, "flips", (n, m), (chunk, m));
        }
        dataset!(u64, "seeds", (n,), (chunk,));
        let (ki, kp) = (meta.k_indices(), meta.k_probs());
        if ki > 0 {
            match meta.index_bytes() {
                1 => dataset!(u8, "indices", (n, m, ki), (chunk, m, ki)),
                2 => dataset!(u16, "indices", (n, m, ki), (chunk, m, ki)),
                _ => dataset!(u32, "indices", (n, m, ki), (chunk, m, ki)),
            };
        }
        if kp > 0 {
            match meta.compression.encoding {
                ProbEncoding::U8 => dataset!(u8, "probs", (n, m, kp), (chunk, m, kp)),
                ProbEncoding::F16 => dataset!(half::f16, "probs", (n, m, kp), (chunk, m, kp)),
            };
        }
        write_attrs(&file, meta).map_err(&err)?;
        write_num_attr(&file, "images_done", 0u64).map_err(&err)?;
        write_num_attr(&file, "complete", 0u8).map_err(&err)?;
        file.flush().map_err(&err)?;
        drop(err);
        Ok((Self { file, path: partial, meta: meta.clone() }, 0))
    }

    /// Writes the block of images starting at `start` (file-relative) and records progress.
    /// HDF5 reports a full disk as a generic write (or checksum) error; a failed write is
    /// therefore checked against the file system so that the message says what happened.
    pub fn write_block(&mut self, start: usize, block: &LabelBlock) -> Result<()> {
        self.write_block_unexplained(start, block).map_err(|e| explain_write_error(&self.path, e))
    }

    fn write_block_unexplained(&mut self, start: usize, block: &LabelBlock) -> Result<()> {
        use ndarray::s;
        let err = h5(&self.path);
        let (n, m) = (block.images, self.meta.crops_per_image);
        let end = start + n;
        let shape_err = |what: &str| DataError::Invalid(format!("label block has a wrong {what} length"));
        if self.meta.geometry == Geometry::Stored {
            let boxes = ndarray::ArrayView3::from_shape((n, m, 4), &block.boxes).map_err(|_| shape_err("boxes"))?;
            self.file.dataset("boxes").map_err(&err)?.write_slice(boxes, s![start..end, .., ..]).map_err(&err)?;
            let flips = ndarray::ArrayView2::from_shape((n, m), &block.flips).map_err(|_| shape_err("flips"))?;
            self.file.dataset("flips").map_err(&err)?.write_slice(flips, s![start..end, ..]).map_err(&err)?;
        }
        let seeds = ndarray::ArrayView1::from_shape(n, &block.seeds).map_err(|_| shape_err("seeds"))?;
        self.file.dataset("seeds").map_err(&err)?.write_slice(seeds, s![start..end]).map_err(&err)?;
        let ki = self.meta.k_indices();
        if ki > 0 {
            let ds = self.file.dataset("indices").map_err(&err)?;
            let sel = s![start..end, .., ..];
            let shape = (n, m, ki);
            match self.meta.index_bytes() {
                1 => ds.write_slice(
                    &ndarray::Array3::from_shape_vec(shape, block.indices.iter().map(|&v| v as u8).collect())
                        .map_err(|_| shape_err("indices"))?,
                    sel,
                ),
                2 => ds.write_slice(
                    &ndarray::Array3::from_shape_vec(shape, block.indices.iter().map(|&v| v as u16).collect())
                        .map_err(|_| shape_err("indices"))?,
                    sel,
                ),
                _ => ds.write_slice(
                    ndarray::ArrayView3::from_shape(shape, &block.indices).map_err(|_| shape_err("indices"))?,
                    sel,
                ),
            }
            .map_err(&err)?;
        }
        let kp = self.meta.k_probs();
        if kp > 0 {
            let ds = self.file.dataset("probs").map_err(&err)?;
            let sel = s![start..end, .., ..];
            let shape = (n, m, kp);
            match self.meta.compression.encoding {
                ProbEncoding::U8 => ds.write_slice(
                    &ndarray::Array3::from_shape_vec(shape, block.probs.iter().map(|&v| v as u8).collect())
                        .map_err(|_| shape_err("probs"))?,
                    sel,
                ),
                ProbEncoding::F16 => ds.write_slice(
                    &ndarray::Array3::from_shape_vec(
                        shape,
                        block.probs.iter().map(|&v| half::f16::from_bits(v)).collect(),
                    )
                    .map_err(|_| shape_err("probs"))?,
                    sel,
                ),
            }
            .map_err(&err)?;
        }
        self.file.attr("images_done").map_err(&err)?.write_scalar(&(end as u64)).map_err(&err)?;
        self.file.flush().map_err(&err)
    }

    /// Marks the file complete and renames it to `final_path`.
    pub fn finish(self, final_path: &Path) -> Result<()> {
        let err = h5(&self.path);
        self.file.attr("complete").map_err(&err)?.write_scalar(&1u8).map_err(&err)?;
        self.file.flush().map_err(&err)?;
        self.file.close().map_err(&err)?;
        std::fs::rename(&self.path, final_path).map_err(|e| DataError::io(final_path, e))
    }
}

/// Turns an HDF5 write error into "no space left" when the file system is full.
fn explain_write_error(path: &Path, error: DataError) -> DataError {
    use std::io::Write;
    let probe = path.with_extension("space-probe");
    let full = std::fs::File::create(&probe)
        .and_then(|mut f| f.write_all(&[0u8; 64 * 1024]).and_then(|()| f.sync_all()))
        .is_err_and(|e| e.kind() == std::io::ErrorKind::StorageFull);
    let _ = std::fs::remove_file(&probe);
    if full {
        DataError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device while writing labels; free space and run the same command again to resume",
            ),
        )
    } else {
        error
    }
}

fn write_attrs(file: &hdf5::File, meta: &LabelMeta) -> hdf5::Result<()> {
    let json = serde_json::to_string(meta).map_err(|e| hdf5::Error::from(e.to_string().as_str()))?;
    write_str_attr(file, "metadata_json", &json)?;
    write_str_attr(file, "kind", "kdkit-region-labels")?;
    write_num_attr(file, "format_version", meta.format_version)?;
    write_num_attr(file, "num_classes", meta.num_classes as u64)?;
    write_num_attr(file, "num_images", meta.num_images as u64)?;
    write_num_attr(file, "image_offset", meta.image_offset as u64)?;
    write_num_attr(file, "crops_per_image", meta.crops_per_image as u64)?;
    write_num_attr(file, "top_k", meta.k_indices() as u64)?;
    write_str_attr(file, "label_type", meta.compression.label_type.name())?;
    write_str_attr(file, "prob_encoding", meta.compression.encoding.name())?;
    write_num_attr(file, "temperature", meta.temperature)?;
    file.new_attr::<f32>().shape(2).create("crop_scale")?.write(&meta.crop.scale)?;
    file.new_attr::<f32>().shape(2).create("crop_ratio")?.write(&meta.crop.ratio)?;
    file.new_attr::<u64>().shape(2).create("crop_output_size")?.write(&meta.crop.output_size.map(|v| v as u64))?;
    write_num_attr(file, "flip_prob", meta.crop.flip_prob)?;
    write_str_attr(file, "geometry", if meta.geometry == Geometry::Stored { "stored" } else { "seed" })?;
    write_num_attr(file, "seed", meta.seed)?;
    let teachers: Vec<String> = meta.teachers.iter().map(|t| format!("{}:{}", t.arch, t.weights_sha256)).collect();
    write_str_attr(file, "teachers", &teachers.join(","))?;
    write_str_attr(file, "dataset_name", &meta.dataset.name)?;
    write_str_attr(file, "dataset_split", &meta.dataset.split)?;
    write_num_attr(file, "dataset_count", meta.dataset.count as u64)?;
    write_str_attr(file, "dataset_list_sha256", &meta.dataset.list_hash)?;
    write_str_attr(file, "tool", &meta.tool)?;
    write_num_attr(file, "created_unix", meta.created_unix)?;
    Ok(())
}

fn read_meta(file: &hdf5::File, path: &Path) -> Result<LabelMeta> {
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
    serde_json::from_str(json.as_str()).map_err(|e| DataError::Format {
        path: path.into(),
        offset: 0,
        message: format!("metadata_json: {e}"),
    })
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
    Ok((file, meta))
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

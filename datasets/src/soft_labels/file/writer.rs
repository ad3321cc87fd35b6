//! Writing a label file block by block, resumable after a kill, renamed into place when complete.

use crate::error::{DataError, Result};
use crate::soft_labels::compress::ProbEncoding;
use std::path::{Path, PathBuf};

use super::meta::*;
use super::reader::read_meta;
use super::{LabelBlock, h5, write_num_attr, write_str_attr};

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
                if let (Some(existing), Some(done)) = (existing, done)
                    && existing.same_run(meta)
                {
                    let writer = Self { file, path: partial, meta: existing };
                    return Ok((writer, done as usize));
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

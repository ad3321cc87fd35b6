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

mod meta;
mod reader;
mod writer;

pub use meta::{FORMAT_VERSION, Geometry, LabelMeta, TeacherInfo};
pub use reader::{CropLabel, RegionLabels, inspect, open_complete, read_range};
pub use writer::{LabelWriter, partial_path};

use crate::error::DataError;
use hdf5::types::VarLenUnicode;
use std::path::Path;

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

pub(crate) fn h5(path: &Path) -> impl Fn(hdf5::Error) -> DataError + '_ {
    move |e| DataError::Format { path: path.into(), offset: 0, message: format!("HDF5: {e}") }
}

pub(crate) fn write_str_attr(file: &hdf5::File, name: &str, value: &str) -> hdf5::Result<()> {
    let value: VarLenUnicode = value.parse().map_err(|e| hdf5::Error::from(format!("{e:?}").as_str()))?;
    file.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&value)
}

pub(crate) fn write_num_attr<T: hdf5::H5Type>(file: &hdf5::File, name: &str, value: T) -> hdf5::Result<()> {
    file.new_attr::<T>().create(name)?.write_scalar(&value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::DatasetIdentity;
    use crate::soft_labels::compress::{Compression, LabelType, ProbEncoding};
    use crate::soft_labels::geometry::CropParams;
    use std::path::PathBuf;

    fn meta() -> LabelMeta {
        LabelMeta {
            format_version: FORMAT_VERSION,
            num_classes: 4,
            num_images: 2,
            image_offset: 0,
            crops_per_image: 2,
            compression: Compression { label_type: LabelType::MarginalSmoothing, k: 2, encoding: ProbEncoding::U8 },
            temperature: 1.0,
            crop: CropParams { scale: [0.08, 1.0], ratio: [0.75, 4.0 / 3.0], flip_prob: 0.5, output_size: [4, 4] },
            geometry: Geometry::Stored,
            seed: 0,
            teachers: vec![],
            dataset: DatasetIdentity { name: "t".into(), split: "train".into(), count: 2, list_hash: "ab".into() },
            shard: None,
            tool: "test".into(),
            created_unix: 0,
        }
    }

    fn block() -> LabelBlock {
        LabelBlock {
            images: 2,
            boxes: [0, 0, 65535, 65535].repeat(4),
            flips: vec![0, 1, 0, 1],
            seeds: vec![1, 2],
            indices: vec![0, 1, 2, 3, 1, 0, 3, 2],
            probs: vec![200, 50, 128, 100, 255, 0, 90, 80],
        }
    }

    /// A complete file of `meta()` with its `metadata_json` replaced by `json`.
    fn file_with_metadata(dir: &Path, json: &str) -> PathBuf {
        let path = dir.join("labels.h5");
        let (mut writer, _) = LabelWriter::create_or_resume(&path, &meta()).unwrap();
        writer.write_block(0, &block()).unwrap();
        writer.finish(&path).unwrap();
        let file = hdf5::File::open_rw(&path).unwrap();
        file.attr("metadata_json").unwrap().write_scalar(&json.parse::<VarLenUnicode>().unwrap()).unwrap();
        path
    }

    /// A complete-marked file whose arrays claim 2^32 images but store none (a few kilobytes
    /// of sparse HDF5) is refused when opened, before anything is read or allocated.
    #[test]
    fn a_sparse_file_claiming_billions_of_images_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse.h5");
        let mut claimed = meta();
        claimed.num_images = 1 << 32;
        claimed.dataset.count = 1 << 32;
        let (writer, _) = LabelWriter::create_or_resume(&path, &claimed).unwrap();
        drop(writer);
        let partial = partial_path(&path);
        {
            let file = hdf5::File::open_rw(&partial).unwrap();
            file.attr("complete").unwrap().write_scalar(&1u8).unwrap();
            file.attr("images_done").unwrap().write_scalar(&(1u64 << 32)).unwrap();
        }
        std::fs::rename(&partial, &path).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
        let err = RegionLabels::open(&path).expect_err("refused").to_string();
        assert!(err.contains("sparse.h5") && err.contains("sparse or truncated"), "{err}");
        let err = crate::soft_labels::LabelReader::open(&path, 0).err().expect("refused").to_string();
        assert!(err.contains("sparse or truncated"), "{err}");
    }

    #[test]
    fn a_valid_file_opens() {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::to_string(&meta()).unwrap();
        let path = file_with_metadata(dir.path(), &json);
        let labels = RegionLabels::open(&path).unwrap();
        assert_eq!(labels.meta, meta());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Hostile metadata (sizes, k, crop parameters, shards out of range or overflowing):
        /// the reader refuses the file with an error naming it, never panics.
        #[test]
        fn hostile_metadata_never_panics(
            field in proptest::sample::select(vec!["num_classes", "num_images", "crops_per_image", "image_offset", "temperature", "k", "scale", "output_size", "shard", "flip_prob"]),
            value in proptest::prop_oneof![
                proptest::prelude::Just(0u64), proptest::prelude::Just(1u64), proptest::prelude::Just(3u64),
                proptest::prelude::Just(u32::MAX as u64), proptest::prelude::Just(u64::MAX), 0u64..1000
            ],
        ) {
            let mut json = serde_json::to_value(meta()).unwrap();
            match field {
                "k" => json["compression"]["k"] = value.into(),
                "scale" => json["crop"]["scale"] = serde_json::json!([value as f64 / 7.0, 0.5]),
                "output_size" => json["crop"]["output_size"] = serde_json::json!([value, 4]),
                "flip_prob" => json["crop"]["flip_prob"] = serde_json::json!(value as f64 / 3.0),
                "shard" => json["shard"] = serde_json::json!([value, 2]),
                "temperature" => json["temperature"] = serde_json::json!(value as f64 - 1.0),
                name => json[name] = value.into(),
            }
            let dir = tempfile::tempdir().unwrap();
            let path = file_with_metadata(dir.path(), &json.to_string());
            for result in [RegionLabels::open(&path).map(|_| ()), crate::soft_labels::LabelReader::open(&path, 0).map(|_| ())] {
                if let Err(e) = result {
                    proptest::prop_assert!(e.to_string().contains("labels.h5"), "{}", e);
                }
            }
        }

        /// Arbitrary bytes where a label file is expected.
        #[test]
        fn arbitrary_bytes_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("labels.h5");
            std::fs::write(&path, bytes).unwrap();
            let err = RegionLabels::open(&path).unwrap_err().to_string();
            proptest::prop_assert!(err.contains("labels.h5"), "{}", err);
        }
    }
}

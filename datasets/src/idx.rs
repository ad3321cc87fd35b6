//! MNIST-family IDX files (LeCun et al.; the format of MNIST and Fashion-MNIST), raw or gzipped.
//!
//! Layout: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then
//! each dimension as a big-endian u32, then the data. Images are `idx3` (count, rows, columns),
//! labels `idx1` (count). Offsets in errors are positions in the decompressed stream.

use crate::error::{DataError, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Images and labels of one split.
#[derive(Clone, Debug)]
pub struct IdxSplit {
    /// Image rows.
    pub rows: usize,
    /// Image columns.
    pub cols: usize,
    /// `count * rows * cols` pixels.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| DataError::Format {
            path: path.into(),
            offset: out.len() as u64,
            message: format!("corrupt or truncated gzip stream: {e}"),
        })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses the header; returns the dimensions and the offset of the data.
fn header(path: &Path, bytes: &[u8], expected_dims: u8) -> Result<(Vec<usize>, usize)> {
    let bad = |offset: u64, message: String| DataError::Format { path: path.into(), offset, message };
    if bytes.len() < 4 {
        return Err(bad(bytes.len() as u64, "file ends inside the 4-byte IDX magic number".into()));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] != expected_dims {
        return Err(bad(
            0,
            format!(
                "wrong magic number {:02x}{:02x}{:02x}{:02x}: expected 000008{expected_dims:02x} (unsigned-byte IDX with {expected_dims} dimension(s))",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let data_start = 4 + 4 * expected_dims as usize;
    if bytes.len() < data_start {
        return Err(bad(bytes.len() as u64, "file ends inside the IDX header".into()));
    }
    let dims = (0..expected_dims as usize)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")) as usize)
        .collect();
    Ok((dims, data_start))
}

/// Reads an `idx3-ubyte` image file: `(count, rows, cols, pixels)`.
pub fn read_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    parse_images(path, read_maybe_gz(path)?)
}

/// Parses the (decompressed) bytes of an image file; `path` names it in errors.
pub fn parse_images(path: &Path, mut bytes: Vec<u8>) -> Result<(usize, usize, usize, Vec<u8>)> {
    let (dims, start) = header(path, &bytes, 3)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if count > 0 && (rows == 0 || cols == 0) {
        return Err(DataError::Format {
            path: path.into(),
            offset: 8,
            message: format!("the header announces images of {rows}x{cols} pixels"),
        });
    }
    let needed = count.checked_mul(rows).and_then(|n| n.checked_mul(cols)).ok_or_else(|| DataError::Format {
        path: path.into(),
        offset: 4,
        message: format!("the header announces {count} images of {rows}x{cols}, more bytes than any file holds"),
    })?;
    if bytes.len() - start < needed {
        return Err(DataError::Format {
            path: path.into(),
            offset: bytes.len() as u64,
            message: format!(
                "truncated: the header announces {count} images of {rows}x{cols} ({needed} bytes of pixels) but the file ends after {} bytes of pixels",
                bytes.len() - start
            ),
        });
    }
    if bytes.len() - start > needed {
        return Err(DataError::Format {
            path: path.into(),
            offset: (start + needed) as u64,
            message: format!("{} unexpected trailing bytes after the last image", bytes.len() - start - needed),
        });
    }
    bytes.drain(..start);
    Ok((count, rows, cols, bytes))
}

/// Reads an `idx1-ubyte` label file and checks every label against `classes`.
pub fn read_labels(path: &Path, classes: usize) -> Result<Vec<u8>> {
    parse_labels(path, &read_maybe_gz(path)?, classes)
}

/// Parses the (decompressed) bytes of a label file; `path` names it in errors.
pub fn parse_labels(path: &Path, bytes: &[u8], classes: usize) -> Result<Vec<u8>> {
    let bytes = bytes.to_vec();
    let (dims, start) = header(path, &bytes, 1)?;
    let count = dims[0];
    if bytes.len() - start != count {
        return Err(DataError::Format {
            path: path.into(),
            offset: bytes.len() as u64,
            message: format!("the header announces {count} labels but the file holds {}", bytes.len() - start),
        });
    }
    let labels = bytes[start..].to_vec();
    if let Some((index, &label)) = labels.iter().enumerate().find(|&(_, &l)| l as usize >= classes) {
        return Err(DataError::LabelOutOfRange {
            path: path.into(),
            index,
            label: label as i64,
            classes,
            offset: (start + index) as u64,
        });
    }
    Ok(labels)
}

/// Finds `stem` or `stem.gz` in `dir`.
pub fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for candidate in [dir.join(stem), dir.join(format!("{stem}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(DataError::io(
        dir.join(stem),
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("file not found (looked for {stem} and {stem}.gz)")),
    ))
}

/// Reads the `train` or `t10k` split of an MNIST-layout directory.
pub fn read_split(dir: &Path, prefix: &str, classes: usize) -> Result<IdxSplit> {
    let image_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let label_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (count, rows, cols, pixels) = read_images(&image_path)?;
    let labels = read_labels(&label_path, classes)?;
    if labels.len() != count {
        return Err(DataError::Inconsistent {
            path: label_path,
            message: format!("{} labels but {} holds {count} images", labels.len(), image_path.display()),
        });
    }
    Ok(IdxSplit { rows, cols, pixels, labels })
}

/// Writes an IDX pair (used by tests and by tools that export subsets).
pub fn write_split(
    dir: &Path,
    prefix: &str,
    rows: usize,
    cols: usize,
    pixels: &[u8],
    labels: &[u8],
    gzip: bool,
) -> std::io::Result<()> {
    let mut images = vec![0, 0, 8, 3];
    for d in [labels.len(), rows, cols] {
        images.extend_from_slice(&(d as u32).to_be_bytes());
    }
    images.extend_from_slice(pixels);
    let mut label_bytes = vec![0, 0, 8, 1];
    label_bytes.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    label_bytes.extend_from_slice(labels);
    for (stem, bytes) in
        [(format!("{prefix}-images-idx3-ubyte"), images), (format!("{prefix}-labels-idx1-ubyte"), label_bytes)]
    {
        if gzip {
            use std::io::Write;
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&bytes)?;
            std::fs::write(dir.join(format!("{stem}.gz")), encoder.finish()?)?;
        } else {
            std::fs::write(dir.join(stem), bytes)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path, gzip: bool) {
        let pixels: Vec<u8> = (0..3 * 2 * 2).map(|i| i as u8).collect();
        write_split(dir, "train", 2, 2, &pixels, &[0, 1, 2], gzip).unwrap();
    }

    #[test]
    fn reads_raw_and_gzipped() {
        for gzip in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            sample(dir.path(), gzip);
            let split = read_split(dir.path(), "train", 10).unwrap();
            assert_eq!((split.rows, split.cols), (2, 2));
            assert_eq!(split.pixels[5], 5);
            assert_eq!(split.labels, vec![0, 1, 2]);
        }
    }

    #[test]
    fn truncated_file_names_offset() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path(), false);
        let path = dir.path().join("train-images-idx3-ubyte");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = read_split(dir.path(), "train", 10).unwrap_err().to_string();
        assert!(
            err.contains("train-images-idx3-ubyte") && err.contains("truncated") && err.contains("offset 25"),
            "{err}"
        );
    }

    #[test]
    fn wrong_magic_and_bad_label_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path(), false);
        let path = dir.path().join("train-labels-idx1-ubyte");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] = 42; // third label
        std::fs::write(&path, &bytes).unwrap();
        let err = read_split(dir.path(), "train", 10).unwrap_err().to_string();
        assert!(err.contains("label 42 of image 2 is out of range 0..10") && err.contains("offset 10"), "{err}");
        bytes[3] = 3;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_split(dir.path(), "train", 10).unwrap_err().to_string();
        assert!(err.contains("wrong magic number 00000803"), "{err}");
    }

    /// Regression: dimensions whose product overflows were a panic (`count * rows * cols`).
    #[test]
    fn overflowing_dimensions_are_an_error() {
        let mut bytes = vec![0, 0, 8, 3];
        for d in [u32::MAX, u32::MAX, u32::MAX] {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        let err = parse_images(Path::new("x-idx3"), bytes).unwrap_err().to_string();
        assert!(err.contains("x-idx3") && err.contains("more bytes than any file holds"), "{err}");
    }

    fn valid_images() -> Vec<u8> {
        let mut bytes = vec![0, 0, 8, 3];
        for d in [3u32, 2, 2] {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend((0..12).map(|i| i as u8));
        bytes
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any bytes: an image or an error naming the file, never a panic.
        #[test]
        fn arbitrary_image_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Err(e) = parse_images(Path::new("f-idx3"), bytes) {
                proptest::prop_assert!(e.to_string().contains("f-idx3"));
            }
        }

        /// A valid file with bytes overwritten and its tail cut off.
        #[test]
        fn mutated_image_files_never_panic(edits in proptest::collection::vec((0usize..28, proptest::prelude::any::<u8>()), 1..6), cut in 0usize..28) {
            let mut bytes = valid_images();
            for (at, value) in edits {
                bytes[at] = value;
            }
            bytes.truncate(28 - cut);
            let _ = parse_images(Path::new("f-idx3"), bytes);
        }

        #[test]
        fn arbitrary_label_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..32), classes in 0usize..300) {
            if let Err(e) = parse_labels(Path::new("f-idx1"), &bytes, classes) {
                proptest::prop_assert!(e.to_string().contains("f-idx1"));
            }
        }
    }
}

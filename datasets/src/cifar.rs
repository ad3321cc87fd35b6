//! CIFAR-10 and CIFAR-100 binary batches (Krizhevsky, 2009; the "binary version" archives).
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` .. `data_batch_5.bin` and
//! `test_batch.bin`, each a sequence of 3073-byte records: 1 label byte, then 1024 red, 1024
//! green and 1024 blue bytes of a 32x32 image in row-major order. CIFAR-100
//! (`cifar-100-binary/`): `train.bin` and `test.bin`, 3074-byte records with a coarse and a fine
//! label byte before the pixels; kdkit uses the fine label (100 classes).

use crate::error::{DataError, Result};
use std::path::Path;

/// Which CIFAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cifar {
    /// 10 classes.
    Ten,
    /// 100 fine classes.
    Hundred,
}

const PIXELS: usize = 32 * 32 * 3;

impl Cifar {
    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            Self::Ten => 10,
            Self::Hundred => 100,
        }
    }

    fn label_bytes(self) -> usize {
        match self {
            Self::Ten => 1,
            Self::Hundred => 2,
        }
    }

    /// File names of a split.
    pub fn files(self, train: bool) -> Vec<String> {
        match (self, train) {
            (Self::Ten, true) => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            (Self::Ten, false) => vec!["test_batch.bin".into()],
            (Self::Hundred, true) => vec!["train.bin".into()],
            (Self::Hundred, false) => vec!["test.bin".into()],
        }
    }
}

/// Reads a split: HWC pixels (32x32x3 per image) and labels.
pub fn read_split(dir: &Path, which: Cifar, train: bool) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for name in which.files(train) {
        let path = dir.join(&name);
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        parse_file(&path, &bytes, which, &mut pixels, &mut labels)?;
    }
    Ok((pixels, labels))
}

/// Parses one binary batch file's bytes, appending HWC pixels and labels; `path` names it in
/// errors.
pub fn parse_file(path: &Path, bytes: &[u8], which: Cifar, pixels: &mut Vec<u8>, labels: &mut Vec<u8>) -> Result<()> {
    let record = which.label_bytes() + PIXELS;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(DataError::Format {
            path: path.into(),
            offset: (bytes.len() / record * record) as u64,
            message: format!(
                "size {} is not a whole number of {record}-byte records (truncated or not a CIFAR-{} binary batch)",
                bytes.len(),
                which.classes()
            ),
        });
    }
    for (i, chunk) in bytes.chunks_exact(record).enumerate() {
        let label = chunk[which.label_bytes() - 1];
        if label as usize >= which.classes() {
            return Err(DataError::LabelOutOfRange {
                path: path.into(),
                index: i,
                label: label as i64,
                classes: which.classes(),
                offset: (i * record + which.label_bytes() - 1) as u64,
            });
        }
        labels.push(label);
        let planes = &chunk[which.label_bytes()..];
        // CHW planes -> HWC.
        for p in 0..1024 {
            pixels.extend_from_slice(&[planes[p], planes[1024 + p], planes[2048 + p]]);
        }
    }
    Ok(())
}

/// Writes a CIFAR binary file from HWC images (used by tests to make small files).
pub fn write_file(path: &Path, which: Cifar, pixels_hwc: &[u8], labels: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::new();
    for (i, &label) in labels.iter().enumerate() {
        if which == Cifar::Hundred {
            out.push(label / 5); // a coarse label; unused by kdkit
        }
        out.push(label);
        let image = &pixels_hwc[i * PIXELS..(i + 1) * PIXELS];
        for c in 0..3 {
            out.extend((0..1024).map(|p| image[p * 3 + c]));
        }
    }
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_cifar100_and_reject_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..2 * PIXELS).map(|i| (i % 251) as u8).collect();
        write_file(&dir.path().join("train.bin"), Cifar::Hundred, &pixels, &[7, 99]).unwrap();
        let (read, labels) = read_split(dir.path(), Cifar::Hundred, true).unwrap();
        assert_eq!(labels, vec![7, 99]);
        assert_eq!(read, pixels);

        let path = dir.path().join("train.bin");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = read_split(dir.path(), Cifar::Hundred, true).unwrap_err().to_string();
        assert!(err.contains("train.bin") && err.contains("3074-byte records"), "{err}");
    }

    #[test]
    fn cifar10_label_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let pixels = vec![0u8; PIXELS];
        write_file(&dir.path().join("test_batch.bin"), Cifar::Ten, &pixels, &[10]).unwrap();
        let err = read_split(dir.path(), Cifar::Ten, false).unwrap_err().to_string();
        assert!(err.contains("label 10 of image 0 is out of range 0..10"), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Records with arbitrary label bytes and sizes around whole records: images or an
        /// error naming the file, never a panic.
        #[test]
        fn arbitrary_batches_never_panic(
            len in proptest::prop_oneof![0usize..40, 3070usize..3080, 6140usize..6150],
            fill in proptest::prelude::any::<u8>(),
            hundred in proptest::prelude::any::<bool>(),
        ) {
            let which = if hundred { Cifar::Hundred } else { Cifar::Ten };
            let bytes = vec![fill; len];
            let (mut pixels, mut labels) = (Vec::new(), Vec::new());
            match parse_file(Path::new("batch.bin"), &bytes, which, &mut pixels, &mut labels) {
                Ok(()) => proptest::prop_assert_eq!(pixels.len(), labels.len() * PIXELS),
                Err(e) => proptest::prop_assert!(e.to_string().contains("batch.bin")),
            }
        }
    }
}

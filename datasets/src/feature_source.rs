//! Batches of feature vectors held in memory: what a linear probe trains on once the frozen
//! encoder's features are computed and cached. Shuffled per pass with the loader's seeded
//! permutation, so a pass's batches depend only on (seed, pass).

use crate::error::{DataError, Result};
use crate::loader::{Batch, BatchSource, HostTensor, Targets, permutation};

/// `rows` feature vectors of `dim` values with a class label each.
#[derive(Clone, Debug)]
pub struct FeatureSource {
    features: Vec<f32>,
    dim: usize,
    labels: Vec<usize>,
    classes: usize,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
}

impl FeatureSource {
    /// Checks that `features` holds `labels.len()` rows of `dim` values and every label is a
    /// class below `classes`.
    pub fn new(
        features: Vec<f32>,
        dim: usize,
        labels: Vec<usize>,
        classes: usize,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
    ) -> Result<Self> {
        if dim == 0 || batch_size == 0 || labels.is_empty() {
            return Err(DataError::Invalid("features need a positive dimension, batch size and row count".into()));
        }
        if features.len() != labels.len() * dim {
            return Err(DataError::Invalid(format!(
                "{} feature values for {} rows of {dim}",
                features.len(),
                labels.len()
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l >= classes) {
            return Err(DataError::Invalid(format!("label {bad} is not below the {classes} classes")));
        }
        Ok(Self { features, dim, labels, classes, batch_size, shuffle, seed })
    }
}

impl BatchSource for FeatureSource {
    fn batches_per_pass(&self) -> usize {
        self.labels.len().div_ceil(self.batch_size)
    }

    fn rows_per_pass(&self) -> usize {
        self.labels.len()
    }

    fn num_classes(&self) -> usize {
        self.classes
    }

    fn pass(&self, pass: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        let n = self.labels.len();
        let order = if self.shuffle { permutation(n, self.seed, pass) } else { (0..n).collect() };
        let batches: Vec<Vec<usize>> = order.chunks(self.batch_size).map(<[usize]>::to_vec).collect();
        Box::new(batches.into_iter().map(move |rows| {
            let mut values = Vec::with_capacity(rows.len() * self.dim);
            for &r in &rows {
                values.extend_from_slice(&self.features[r * self.dim..(r + 1) * self.dim]);
            }
            Ok(Batch {
                views: vec![HostTensor { values, shape: vec![rows.len(), self.dim] }],
                targets: Targets::Labels(rows.iter().map(|&r| self.labels[r]).collect()),
                indices: rows,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_once_per_pass_with_its_label() {
        // Row r is the vector [r, r] with label r % 3.
        let features: Vec<f32> = (0..7).flat_map(|r| [r as f32, r as f32]).collect();
        let source = FeatureSource::new(features, 2, (0..7).map(|r| r % 3).collect(), 3, 3, true, 5).unwrap();
        assert_eq!(source.batches_per_pass(), 3);
        let mut seen = Vec::new();
        for batch in source.pass(1) {
            let batch = batch.unwrap();
            let Targets::Labels(labels) = &batch.targets else { panic!("labelled") };
            for (row, &index) in batch.indices.iter().enumerate() {
                assert_eq!(batch.views[0].values[row * 2], index as f32);
                assert_eq!(labels[row], index % 3);
                seen.push(index);
            }
        }
        seen.sort();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn mismatched_sizes_are_refused() {
        assert!(FeatureSource::new(vec![0.0; 5], 2, vec![0, 1, 2], 3, 2, false, 0).is_err());
        assert!(FeatureSource::new(vec![0.0; 6], 2, vec![0, 1, 3], 3, 2, false, 0).is_err());
    }
}

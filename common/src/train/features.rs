//! The pooled backbone features of a labelled split, computed once and kept on the host: what
//! the linear probe trains on and the kNN classifier compares (one forward pass per image for
//! both).

use super::upload;
use crate::error::{Error, Result};
use crate::models::Network;
use burn::module::Module;
use burn::tensor::Device;
use kd_datasets::BatchSource;

/// Features of a labelled split, computed once.
#[derive(Clone, Debug)]
pub struct CachedFeatures {
    /// Row-major `[rows, dim]`.
    pub values: Vec<f32>,
    /// Feature width.
    pub dim: usize,
    /// Class of every row.
    pub labels: Vec<usize>,
    /// Classes.
    pub classes: usize,
}

impl CachedFeatures {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }
}

/// The pooled backbone features of every image of `source` (labelled), in order.
pub fn cache_features(network: &Network, source: &dyn BatchSource, device: &Device) -> Result<CachedFeatures> {
    let network = network.valid();
    let (mut values, mut labels, mut dim) = (Vec::new(), Vec::new(), 0);
    for batch in source.pass(0) {
        let batch = batch?;
        let batch_labels =
            batch.labels().ok_or_else(|| Error::InvalidConfig("a linear probe or kNN needs labelled images".into()))?;
        labels.extend_from_slice(batch_labels);
        let features = network.forward_features(upload::images(&batch, 0, device)?);
        dim = features.dims()[1];
        values.extend(features.into_data().try_to_vec::<f32>().map_err(|e| Error::Shape(format!("{e:?}")))?);
    }
    if labels.is_empty() {
        return Err(Error::InvalidConfig("a linear probe or kNN got no images".into()));
    }
    Ok(CachedFeatures { values, dim, labels, classes: source.num_classes() })
}

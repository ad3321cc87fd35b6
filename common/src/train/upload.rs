//! Host batches to device tensors, with their shapes checked (a malformed batch is an error,
//! never a panic inside the backend).

use crate::error::{Error, Result};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kd_datasets::{Batch, HostTensor, Targets};

fn checked<const D: usize>(tensor: &HostTensor, what: &str) -> Result<[usize; D]> {
    let shape: [usize; D] = tensor
        .shape
        .clone()
        .try_into()
        .map_err(|_| Error::Shape(format!("{what} has shape {:?}, expected {D} dimensions", tensor.shape)))?;
    if shape.iter().product::<usize>() != tensor.values.len() {
        return Err(Error::Shape(format!("{what}: {} values for shape {:?}", tensor.values.len(), tensor.shape)));
    }
    Ok(shape)
}

/// View `view` of the batch as images `[rows, C, H, W]`.
pub fn images(batch: &Batch, view: usize, device: &Device) -> Result<Tensor<4>> {
    let tensor = batch.views.get(view).ok_or_else(|| {
        Error::Shape(format!("the batch has {} view(s), view {view} was asked for", batch.views.len()))
    })?;
    let shape = checked::<4>(tensor, "an image batch")?;
    Ok(Tensor::from_data(TensorData::new(tensor.values.clone(), shape), device))
}

/// View `view` as feature vectors `[rows, dim]`.
pub fn features(batch: &Batch, view: usize, device: &Device) -> Result<Tensor<2>> {
    let tensor = batch.views.get(view).ok_or_else(|| {
        Error::Shape(format!("the batch has {} view(s), view {view} was asked for", batch.views.len()))
    })?;
    let shape = checked::<2>(tensor, "a feature batch")?;
    Ok(Tensor::from_data(TensorData::new(tensor.values.clone(), shape), device))
}

/// The class labels `[rows]`; an error for an unlabelled batch.
pub fn labels(batch: &Batch, device: &Device) -> Result<Tensor<1, Int>> {
    let labels =
        batch.labels().ok_or_else(|| Error::InvalidConfig("this method needs labelled batches".to_string()))?;
    let host: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Ok(Tensor::from_data(TensorData::new(host, [labels.len()]), device))
}

/// The soft targets `[rows, classes]`; an error unless the batch carries them with `classes`
/// values per row.
pub fn soft_targets(batch: &Batch, classes: usize, device: &Device) -> Result<Tensor<2>> {
    let Targets::Soft { distributions, classes: batch_classes, .. } = &batch.targets else {
        return Err(Error::InvalidConfig("this method needs batches with soft labels (a label file)".to_string()));
    };
    let n = batch.rows();
    if *batch_classes != classes || distributions.len() != n * classes {
        return Err(Error::Shape(format!(
            "{} soft-label values of {batch_classes} classes for a batch of {n} x {classes}",
            distributions.len()
        )));
    }
    Ok(Tensor::from_data(TensorData::new(distributions.clone(), [n, classes]), device))
}

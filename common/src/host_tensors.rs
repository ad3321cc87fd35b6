//! Host copies of a network's tensors by PyTorch name (`layer1.0.conv1.weight`, PyTorch layout)
//! and their safetensors bytes: what pruning selects on, what a student is transplanted from,
//! and how a momentum encoder is saved with a run's state.

use crate::error::{Error, Result};
use crate::models::Network;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot};
use std::collections::BTreeMap;

/// Host copies of weights by name: `(shape, values)`.
pub type HostWeights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Host copies of `network`'s float tensors (PyTorch names and layout) that `keep(name, rank)`.
pub fn host_tensors(network: &Network, keep: impl Fn(&str, usize) -> bool) -> Result<HostWeights> {
    let mut weights = BTreeMap::new();
    for tensor in network.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        if !keep(&tensor.name, tensor.shape.len()) {
            continue;
        }
        let bytes = tensor.to_bytes().map_err(|e| Error::Shape(format!("reading {}: {e}", tensor.name)))?;
        if bytes.len() % 4 != 0 {
            return Err(Error::Shape(format!("{} is not an f32 tensor", tensor.name)));
        }
        let values = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        weights.insert(tensor.name.clone(), (tensor.shape.iter().copied().collect(), values));
    }
    Ok(weights)
}

/// `tensors` as safetensors bytes (f32), which `checkpoint::apply_safetensors_bytes` loads.
pub fn to_safetensors(tensors: &HostWeights) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, values))| {
            (name.clone(), shape.clone(), values.iter().flat_map(|v| v.to_le_bytes()).collect())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(|e| Error::Shape(format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::Shape(format!("serialising the student: {e}")))
}

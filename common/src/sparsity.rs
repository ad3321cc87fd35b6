//! Sparsity of a network's prunable weights and the masks file of a pruned checkpoint.
//!
//! Prunable weights are the convolution and linear weights (rank >= 2), as in global
//! unstructured magnitude pruning (Han et al., NeurIPS 2015; prune-then-distill, Park & No,
//! ECCV 2022, §3.2); batch-norm parameters and biases are never pruned. A mask is 1 where the
//! weight is kept. Masks are written as u8 tensors with the weights' PyTorch names into a
//! safetensors file of their own, so `model.safetensors` stays loadable by plain PyTorch.

use crate::atomic;
use crate::checkpoint::LayerSparsity;
use crate::error::{Error, Result};
pub use crate::host_tensors::HostWeights;
use crate::host_tensors::host_tensors;
use crate::models::Network;
use std::collections::BTreeMap;
use std::path::Path;

/// A layer's mask: one byte per weight (1 kept, 0 pruned) in the weight's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    /// Shape of the weight.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` bytes.
    pub keep: Vec<u8>,
}

/// Masks by tensor name (`layer1.0.conv1.weight`).
pub type Masks = BTreeMap<String, Mask>;

/// The prunable weights of `network` by PyTorch name, as host values with their shapes.
pub fn prunable_weights(network: &Network) -> Result<HostWeights> {
    host_tensors(network, |name, rank| name.ends_with(".weight") && rank >= 2)
}

/// Global sparsity (zero weights / prunable weights) and per-layer counts of `network`.
pub fn sparsity(network: &Network) -> Result<(f64, Vec<LayerSparsity>)> {
    let layers: Vec<LayerSparsity> = prunable_weights(network)?
        .into_iter()
        .map(|(name, (_, values))| LayerSparsity {
            name,
            weights: values.len(),
            nonzero: values.iter().filter(|&&v| v != 0.0).count(),
        })
        .collect();
    let total: usize = layers.iter().map(|l| l.weights).sum();
    let nonzero: usize = layers.iter().map(|l| l.nonzero).sum();
    Ok((if total == 0 { 0.0 } else { 1.0 - nonzero as f64 / total as f64 }, layers))
}

/// `masks` as a safetensors file's bytes (u8 tensors named like the weights).
pub fn masks_to_bytes(masks: &Masks) -> Result<Vec<u8>> {
    let mut views = Vec::new();
    for (name, mask) in masks {
        if mask.shape.iter().product::<usize>() != mask.keep.len() {
            return Err(Error::Shape(format!("mask {name}: {} values for shape {:?}", mask.keep.len(), mask.shape)));
        }
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::U8, mask.shape.clone(), &mask.keep)
            .map_err(|e| Error::Shape(format!("mask {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, None).map_err(|e| Error::Shape(format!("serialising masks: {e}")))
}

/// Parses what [`masks_to_bytes`] wrote; every tensor must be u8 with values 0 or 1. Errors
/// are plain messages; [`read_masks`] adds the file.
pub fn masks_from_bytes(bytes: &[u8]) -> std::result::Result<Masks, String> {
    let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut masks = Masks::new();
    for (name, view) in tensors.tensors() {
        if view.dtype() != safetensors::Dtype::U8 {
            return Err(format!("mask {name} is {:?}, expected U8", view.dtype()));
        }
        if view.data().iter().any(|&v| v > 1) {
            return Err(format!("mask {name} holds values other than 0 and 1"));
        }
        masks.insert(name, Mask { shape: view.shape().to_vec(), keep: view.data().to_vec() });
    }
    Ok(masks)
}

/// Writes `masks` to `path` (safetensors, u8 tensors), atomically.
pub fn write_masks(path: &Path, masks: &Masks) -> Result<()> {
    atomic::write_bytes(path, &masks_to_bytes(masks)?)
}

/// Reads a masks file written by [`write_masks`].
pub fn read_masks(path: &Path) -> Result<Masks> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    masks_from_bytes(&bytes).map_err(|message| Error::Checkpoint { path: path.into(), message })
}

/// Kept and total weights over all masks.
pub fn kept_and_total(masks: &Masks) -> (usize, usize) {
    masks.values().fold((0, 0), |(kept, total), m| {
        (kept + m.keep.iter().map(|&k| k as usize).sum::<usize>(), total + m.keep.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, ModelSpec};
    use burn::tensor::Device;

    /// A fresh network has no zero weights; small-cnn with widths 4, 8, 16 on 1 channel and 3
    /// classes has prunable weights 9*1*4, 9*4*8, 9*8*16 and 16*3 (by hand).
    #[test]
    fn dense_network_sparsity_and_layer_sizes() {
        let mut spec = ModelSpec::new(Arch::SmallCnn, 1, 3);
        spec.channels = Some(vec![4, 8, 16]);
        let network = spec.init(&Device::flex()).unwrap();
        let (global, layers) = sparsity(&network).unwrap();
        assert_eq!(global, 0.0);
        let sizes: Vec<(String, usize)> = layers.iter().map(|l| (l.name.clone(), l.weights)).collect();
        assert_eq!(
            sizes,
            vec![
                ("conv1.conv.weight".to_string(), 36),
                ("conv2.conv.weight".to_string(), 288),
                ("conv3.conv.weight".to_string(), 1152),
                ("fc.weight".to_string(), 48)
            ]
        );
    }

    #[test]
    fn masks_round_trip_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.masks.safetensors");
        let masks = Masks::from([("fc.weight".to_string(), Mask { shape: vec![2, 3], keep: vec![1, 0, 1, 1, 0, 0] })]);
        write_masks(&path, &masks).unwrap();
        assert_eq!(read_masks(&path).unwrap(), masks);
        let twos = Masks::from([("fc.weight".to_string(), Mask { shape: vec![2], keep: vec![2, 0] })]);
        write_masks(&path, &twos).unwrap();
        assert!(read_masks(&path).unwrap_err().to_string().contains("other than 0 and 1"));
    }
}

//! Inference over a loader: logits per batch, and the metrics of [`crate::metrics`].

use crate::error::{Error, Result};
use crate::metrics::{EvalAccumulator, EvalReport};
use crate::models::Network;
use burn::tensor::{Device, Tensor, TensorData};
use kd_datasets::{Batch, BatchLoader};

/// Uploads a host batch's images.
pub fn images_tensor(batch: &Batch, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(batch.images.clone(), batch.shape), device)
}

fn logits_to_host(logits: Tensor<2>) -> Result<Vec<f32>> {
    logits.into_data().try_to_vec::<f32>().map_err(|e| Error::Shape(format!("reading logits back: {e:?}")))
}

/// Runs `network` (in eval mode) over every batch of `loader` (epoch 0) on `device` and hands
/// each batch with its logits (row-major `[B, classes]`) to `on_batch`; `reference`, if given,
/// runs on the same images and its logits are passed too.
pub fn predict(
    network: &Network,
    reference: Option<&Network>,
    loader: &BatchLoader,
    device: &Device,
    mut on_batch: impl FnMut(&Batch, &[f32], Option<&[f32]>) -> Result<()>,
) -> Result<()> {
    use burn::module::Module;
    let network = network.valid();
    let reference = reference.map(Module::valid);
    let bar = crate::progress::bar(loader.batches_per_epoch() as u64, "evaluate");
    for batch in loader.epoch(0) {
        let batch = batch.map_err(|e| Error::InvalidConfig(e.to_string()))?;
        let images = images_tensor(&batch, device);
        let logits = logits_to_host(network.forward(images.clone()))?;
        let reference_logits = match &reference {
            Some(reference) => Some(logits_to_host(reference.forward(images))?),
            None => None,
        };
        on_batch(&batch, &logits, reference_logits.as_deref())?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Top-1/top-5/NLL/ECE (and agreement/KL to `reference`) of `network` on `loader`.
pub fn evaluate(network: &Network, reference: Option<&Network>, loader: &BatchLoader, device: &Device) -> Result<EvalReport> {
    let mut accumulator = EvalAccumulator::new(loader.dataset().num_classes());
    predict(network, reference, loader, device, |batch, logits, reference| {
        accumulator.add_batch(logits, &batch.labels, reference);
        Ok(())
    })?;
    Ok(accumulator.report())
}

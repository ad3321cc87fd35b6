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

/// Logits of a reference: the network's own with one network; for an ensemble
/// `log(mean_t softmax(z_t))`, whose softmax is the ensemble's average distribution.
pub fn ensemble_logits(networks: &[Network], images: Tensor<4>) -> Tensor<2> {
    if networks.len() == 1 {
        return networks[0].forward(images);
    }
    let mut sum: Option<Tensor<2>> = None;
    for network in networks {
        let p = burn::tensor::activation::softmax(network.forward(images.clone()), 1);
        sum = Some(match sum {
            Some(s) => s + p,
            None => p,
        });
    }
    sum.expect("at least one network").div_scalar(networks.len() as f32).clamp_min(1e-30).log()
}

/// Runs `network` (in eval mode) over every batch of `loader` (epoch 0) on `device` and hands
/// each batch with its logits (row-major `[B, classes]`) to `on_batch`; `references`, if any,
/// run on the same images and their (ensemble) logits are passed too.
pub fn predict(
    network: &Network,
    references: &[Network],
    loader: &BatchLoader,
    device: &Device,
    mut on_batch: impl FnMut(&Batch, &[f32], Option<&[f32]>) -> Result<()>,
) -> Result<()> {
    use burn::module::Module;
    let network = network.valid();
    let references: Vec<Network> = references.iter().map(Module::valid).collect();
    let bar = crate::progress::bar(loader.batches_per_epoch() as u64, "evaluate");
    for batch in loader.epoch(0) {
        let batch = batch.map_err(|e| Error::InvalidConfig(e.to_string()))?;
        let images = images_tensor(&batch, device);
        let logits = logits_to_host(network.forward(images.clone()))?;
        let reference_logits =
            if references.is_empty() { None } else { Some(logits_to_host(ensemble_logits(&references, images))?) };
        on_batch(&batch, &logits, reference_logits.as_deref())?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Top-1/top-5/NLL/ECE (and agreement/KL to `references`) of `network` on `loader`.
pub fn evaluate(
    network: &Network,
    references: &[Network],
    loader: &BatchLoader,
    device: &Device,
) -> Result<EvalReport> {
    let mut accumulator = EvalAccumulator::new(loader.dataset().num_classes());
    predict(network, references, loader, device, |batch, logits, reference| {
        accumulator.add_batch(logits, &batch.labels, reference);
        Ok(())
    })?;
    Ok(accumulator.report())
}

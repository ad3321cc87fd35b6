//! Inference over a batch source: logits per batch, and the metrics of [`crate::metrics`].

use super::upload;
use crate::ensemble::ensemble_logits;
use crate::error::{Error, Result};
use crate::metrics::{EvalAccumulator, EvalReport};
use crate::models::Network;
use burn::tensor::{Device, Tensor};
use kd_datasets::{Batch, BatchSource};

fn logits_to_host(logits: Tensor<2>) -> Result<Vec<f32>> {
    logits.into_data().try_to_vec::<f32>().map_err(|e| Error::Shape(format!("reading logits back: {e:?}")))
}

/// Runs `network` (in eval mode) over every batch of `source` (pass 0) on `device` and hands
/// each batch with its logits (row-major `[B, classes]`) to `on_batch`; `references`, if any,
/// run on the same images and their (ensemble) logits are passed too.
pub fn predict(
    network: &Network,
    references: &[Network],
    source: &dyn BatchSource,
    device: &Device,
    mut on_batch: impl FnMut(&Batch, &[f32], Option<&[f32]>) -> Result<()>,
) -> Result<()> {
    use burn::module::Module;
    let network = network.valid();
    let references: Vec<Network> = references.iter().map(Module::valid).collect();
    let bar = crate::progress::bar(source.batches_per_pass() as u64, "evaluate");
    for batch in source.pass(0) {
        let batch = batch?;
        let images = upload::images(&batch, 0, device)?;
        let logits = logits_to_host(network.forward(images.clone()))?;
        let reference_logits =
            if references.is_empty() { None } else { Some(logits_to_host(ensemble_logits(&references, images))?) };
        on_batch(&batch, &logits, reference_logits.as_deref())?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Top-1/top-5/NLL/ECE (and agreement/KL to `references`) of `network` on `source`.
pub fn evaluate(
    network: &Network,
    references: &[Network],
    source: &dyn BatchSource,
    device: &Device,
) -> Result<EvalReport> {
    let mut accumulator = EvalAccumulator::new(source.num_classes());
    predict(network, references, source, device, |batch, logits, reference| {
        let labels =
            batch.labels().ok_or_else(|| Error::InvalidConfig("classification metrics need labelled images".into()))?;
        accumulator.add_batch(logits, labels, reference);
        Ok(())
    })?;
    Ok(accumulator.report())
}

//! The network a training run starts from: a fresh one of the configured architecture, or a
//! checkpoint (`--init`) whose architecture, classes and input it must match.

use super::train_args::ModelChoice;
use anyhow::{Context, Result, ensure};
use kd_common::checkpoint::{self, InputSpec};
use kd_common::models::{ModelSpec, Network};
use std::path::Path;

/// A fresh `model` for `input` and `classes`, or the checkpoint `init` (its architecture is
/// used; its class count and input must be the dataset's).
pub fn initial_network(
    init: Option<&Path>,
    model: &ModelChoice,
    input: &InputSpec,
    classes: usize,
    device: &burn::tensor::Device,
) -> Result<(Network, ModelSpec)> {
    let Some(init) = init else {
        let spec = model.spec(input.channels, classes);
        return Ok((spec.init(device)?, spec));
    };
    let (network, meta) =
        checkpoint::load(init, device).with_context(|| format!("loading the initial network {}", init.display()))?;
    ensure!(
        meta.model.num_classes == classes,
        "initial network {} has {} classes, the dataset {classes}",
        init.display(),
        meta.model.num_classes
    );
    ensure!(
        &meta.input == input,
        "initial network {} expects another input (size or normalisation) than the dataset gives",
        init.display()
    );
    Ok((network, meta.model))
}

/// The SHA-256 of the initial checkpoint's weights (from its sidecar), so that a run started
/// from other weights under the same path is another run.
pub fn init_identity(init: Option<&Path>) -> Result<Option<String>> {
    init.map(|path| {
        checkpoint::read_meta(path)
            .map(|meta| meta.weights_sha256)
            .with_context(|| format!("reading the initial network {}", path.display()))
    })
    .transpose()
}

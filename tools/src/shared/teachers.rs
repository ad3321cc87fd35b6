//! Frozen teachers: loaded once in eval mode on the inner (non-autodiff) device, checked
//! against each other, and combined as MEAL V2 does: the ensemble's target is the average of the
//! teachers' softmax probabilities (Shen & Savvides, MEAL V2, 2020, §3.1).

use anyhow::{Context, Result, ensure};
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use kd_common::checkpoint::{self, CheckpointMeta};
pub use kd_common::ensemble::EnsembleOutput;
use kd_common::ensemble::ensemble;
use kd_common::models::Network;
use std::path::PathBuf;

/// Teachers loaded and checked against each other.
pub struct Teachers {
    /// Networks in eval mode.
    pub networks: Vec<Network>,
    /// Their sidecars.
    pub metas: Vec<CheckpointMeta>,
}

impl Teachers {
    /// Loads every checkpoint; all must share class count and input size.
    pub fn load(paths: &[PathBuf], device: &burn::tensor::Device) -> Result<Self> {
        let mut networks = Vec::new();
        let mut metas: Vec<CheckpointMeta> = Vec::new();
        for path in paths {
            let (network, meta) =
                checkpoint::load(path, device).with_context(|| format!("loading teacher {}", path.display()))?;
            if let Some(first) = metas.first() {
                ensure!(
                    meta.model.num_classes == first.model.num_classes,
                    "teacher {} has {} classes, the first teacher {}",
                    path.display(),
                    meta.model.num_classes,
                    first.model.num_classes
                );
                ensure!(
                    (meta.input.channels, meta.input.height, meta.input.width)
                        == (first.input.channels, first.input.height, first.input.width),
                    "teacher {} expects {}x{}x{} inputs, the first teacher {}x{}x{}",
                    path.display(),
                    meta.input.channels,
                    meta.input.height,
                    meta.input.width,
                    first.input.channels,
                    first.input.height,
                    first.input.width
                );
            }
            networks.push(network.valid());
            metas.push(meta);
        }
        Ok(Self { networks, metas })
    }

    /// Average of the teachers' `softmax(z / T)` for crops normalised per teacher:
    /// `inputs[t]` holds teacher t's normalised batch `[n, c, h, w]`.
    pub fn probabilities(
        &self,
        inputs: &[Vec<f32>],
        shape: [usize; 4],
        temperature: f32,
        device: &burn::tensor::Device,
    ) -> Result<Vec<f32>> {
        let input =
            |t: usize| Tensor::<4>::from_data(TensorData::new(inputs[t.min(inputs.len() - 1)].clone(), shape), device);
        let mean = ensemble(&self.networks, input, temperature, false).probs;
        mean.into_data().try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("reading teacher output: {e:?}"))
    }

    /// Runs every teacher on `images` (already normalised for them, inner device); `standardize`
    /// z-scores each teacher's logits first (logit standardisation).
    pub fn ensemble(&self, images: Tensor<4>, temperature: f32, standardize: bool) -> EnsembleOutput {
        ensemble(&self.networks, |_| images.clone(), temperature, standardize)
    }
}

impl Teachers {
    /// Classes of the teachers.
    pub fn num_classes(&self) -> usize {
        self.metas[0].model.num_classes
    }

    /// SHA-256 of every teacher's weights, in order.
    pub fn weights_sha256(&self) -> Vec<String> {
        self.metas.iter().map(|m| m.weights_sha256.clone()).collect()
    }
}

//! MoCo v2 self-supervised pretraining (He et al., CVPR 2020; Chen et al. 2020, "Improved
//! Baselines with Momentum Contrastive Learning"): two augmented views of every image, the
//! query encoder (the trained network, with an MLP projection head) embeds view 0, a momentum
//! copy of it (the key encoder, updated after every step as `theta_k <- m theta_k + (1 - m)
//! theta_q`) embeds view 1, and InfoNCE at temperature tau contrasts each query with its key
//! against a FIFO queue of earlier keys. No labels are read. The key encoder and the queue are
//! saved with the run's state, so a resumed run continues with the queue it had.

use crate::shared::data::{eval_transform, input_spec};
use crate::shared::encoder::{KnnSources, TrainedEncoder, save_encoder, with_projection_head};
use crate::shared::finish::print_summary;
use crate::shared::run::{Output, claim_output, run_hash, training_record};
use crate::shared::ssl_data::{SslData, fit_moco_augment};
use anyhow::Result as AnyResult;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kd_common::checkpoint::apply_safetensors_bytes;
use kd_common::contrastive::{EmbeddingQueue, l2_normalize, momentum_update};
use kd_common::device::ResolvedDevice;
use kd_common::host_tensors::{host_tensors, to_safetensors};
use kd_common::losses::info_nce;
use kd_common::models::HeadSpec;
use kd_common::models::Network;
use kd_common::train::{self, KnnConfig, Objective, ObjectiveState, Phase, Run, StepInfo, StepOutput, upload};
use kd_common::{Error, Result};
use kd_datasets::Batch;
use kd_datasets::{BatchLoader, LoaderConfig, Transform};
use std::path::Path;

/// MoCo v2's hyper-parameters besides the loop's.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MocoConfig {
    /// Keys in the queue K, a multiple of the batch size (MoCo: 65,536; the quick profile a
    /// size that fits Fashion-MNIST's 55,000 images several times over per epoch).
    pub queue: usize,
    /// Momentum m of the key encoder (MoCo: 0.999).
    pub momentum: f32,
    /// InfoNCE temperature tau (MoCo v2: 0.2).
    pub temperature: f32,
    /// Output width of the projection head (MoCo v2: 128; its hidden width is the embedding's).
    pub projection_dim: usize,
    /// Training images whose embeddings vote in the kNN monitor (0: all).
    pub knn_bank: usize,
    /// The kNN monitor's k and temperature.
    pub knn: KnnConfig,
}

impl MocoConfig {
    /// MoCo v2's values with a queue of `queue` keys and momentum `momentum`.
    pub fn new(queue: usize, momentum: f32) -> Self {
        Self { queue, momentum, temperature: 0.2, projection_dim: 128, knn_bank: 10_000, knn: KnnConfig::default() }
    }

    /// Checks what the objective cannot run with.
    pub fn validate(&self, batch_size: usize) -> AnyResult<()> {
        anyhow::ensure!(
            self.queue > 0 && self.queue.is_multiple_of(batch_size),
            "the queue size ({}) must be a positive multiple of the batch size ({batch_size})",
            self.queue
        );
        anyhow::ensure!((0.0..=1.0).contains(&self.momentum), "the momentum must be in [0, 1], got {}", self.momentum);
        anyhow::ensure!(
            self.temperature.is_finite() && self.temperature > 0.0,
            "the temperature must be positive, got {}",
            self.temperature
        );
        anyhow::ensure!(self.projection_dim > 0, "the projection width must be at least 1");
        anyhow::ensure!(self.knn.k > 0 && self.knn.temperature > 0.0, "kNN needs k >= 1 and a positive temperature");
        Ok(())
    }
}

/// The MoCo objective: the key encoder and the queue live here, on the non-autodiff device.
pub struct Moco {
    config: MocoConfig,
    /// The momentum encoder (inference mode); `None` only while it is being replaced.
    key: Option<Network>,
    queue: EmbeddingQueue,
    /// This step's keys, pushed into the queue after the optimizer step.
    pending: Option<Tensor<2>>,
    inner: Device,
}

impl Moco {
    /// Starts the key encoder as a copy of `query` (MoCo initialises both alike) and a queue of
    /// random unit keys.
    pub fn new(config: MocoConfig, query: &Network, batch_size: usize, seed: u64, inner: &Device) -> Result<Self> {
        let queue = EmbeddingQueue::new(config.queue, config.projection_dim, batch_size, seed, inner)?;
        Ok(Self { config, key: Some(query.clone().valid()), queue, pending: None, inner: inner.clone() })
    }

    fn key(&self) -> &Network {
        self.key.as_ref().expect("the key encoder is only absent inside after_step")
    }
}

/// Names of the saved state.
const KEY_ENCODER: &str = "moco_key_encoder";
const QUEUE: &str = "moco_queue";

impl Objective<Network> for Moco {
    fn step(&mut self, model: &Network, batch: &Batch, device: &Device) -> Result<StepOutput> {
        if batch.views.len() < 2 {
            return Err(Error::InvalidConfig("MoCo needs two augmented views per image".into()));
        }
        let queries = l2_normalize(model.forward(upload::images(batch, 0, device)?));
        let keys = l2_normalize(self.key().forward(upload::images(batch, 1, &self.inner)?));
        let [_, dim] = queries.dims();
        if dim != self.config.projection_dim {
            return Err(Error::Shape(format!(
                "the network embeds into {dim} dimensions, the queue holds {}",
                self.config.projection_dim
            )));
        }
        let loss = info_nce(queries, keys.clone(), self.queue.rows(), self.config.temperature);
        self.pending = Some(keys);
        Ok(StepOutput { loss, metrics: Vec::new(), logits: None })
    }

    fn network<'a>(&self, model: &'a Network) -> Option<&'a Network> {
        Some(model)
    }

    fn after_step(&mut self, model: Network, _info: &StepInfo) -> Result<Network> {
        let key = self.key.take().expect("the key encoder is present between steps");
        self.key = Some(momentum_update(key, &model, self.config.momentum)?);
        if let Some(keys) = self.pending.take() {
            self.queue.push(keys)?;
        }
        Ok(model)
    }

    fn identity(&self) -> serde_json::Value {
        serde_json::json!({ "moco": self.config })
    }

    fn save_state(&self) -> Result<ObjectiveState> {
        let key = to_safetensors(&host_tensors(self.key(), |_, _| true)?)?;
        Ok(ObjectiveState::from([(KEY_ENCODER.to_string(), key), (QUEUE.to_string(), self.queue.to_bytes()?)]))
    }

    fn load_state(&mut self, mut state: ObjectiveState) -> Result<()> {
        let missing = |name: &str| Error::InvalidConfig(format!("the saved MoCo state has no {name}"));
        let key_bytes = state.remove(KEY_ENCODER).ok_or_else(|| missing("key encoder"))?;
        let mut key = self.key.take().expect("the key encoder is present between steps");
        let applied = apply_safetensors_bytes(&mut key, key_bytes, Path::new("<saved key encoder>"));
        self.key = Some(key);
        applied?;
        self.queue.load_bytes(&state.remove(QUEUE).ok_or_else(|| missing("queue"))?)
    }
}

/// `kd-pretrain --method moco`: trains the configured network (its head replaced by the
/// projection head) with MoCo v2 through the one loop, monitoring kNN top-1 on the validation
/// split; writes `<out>/model.safetensors` with test kNN top-1 and prints the summary. A finished
/// run of the same configuration is a no-op.
pub fn run(config: &super::PretrainConfig, moco: &MocoConfig, device: &ResolvedDevice, out: &Path) -> AnyResult<()> {
    let data = SslData::open(&config.ssl_data())?;
    let input = input_spec(config.run.dataset, &data.train, config.run.image_size)?;
    let mut config = config.clone();
    fit_moco_augment(&mut config.augment, config.run.dataset, input.height);
    let hash = run_hash(&config, &serde_json::Value::Null)?;
    let weights = out.join("model.safetensors");
    if let Output::Finished(summary) = claim_output(out, &weights, &config, &hash)? {
        return print_summary(summary, serde_json::Value::Null);
    }
    let (workers, seed) = (config.run.workers, config.run.seed);
    let inner = device.device.clone();
    let spec = config.model.spec(input.channels, data.train.classes.len());
    let spec = with_projection_head(spec, &input, moco.projection_dim, &inner)?;
    let HeadSpec::Projection { hidden: embedding, .. } = spec.head else { unreachable!("a projection head") };
    inner.seed(seed);
    let network = spec.init(&inner.clone().autodiff())?;
    tracing::info!(
        "MoCo v2: {} ({:.3} M parameters, {embedding}-d embedding -> {}-d projection), queue {}, m {}, tau {}; {} unlabelled training images",
        spec.arch,
        kd_common::models::trainable_params(&network) as f64 / 1e6,
        moco.projection_dim,
        moco.queue,
        moco.momentum,
        moco.temperature,
        data.train.len()
    );
    let batch = config.train.batch_size;
    let mut two_views = LoaderConfig::new(batch, true, true, workers, seed);
    two_views.views = 2;
    two_views.labelled = false;
    let train_transform = Transform { augment: config.augment.clone(), ..eval_transform(&input) };
    let train_loader = BatchLoader::new(data.train.clone(), train_transform, two_views)?;
    let sources = data.knn_sources(&input, moco.knn_bank, workers, seed)?;
    let mut objective = Moco::new(moco.clone(), &network, batch, seed, &inner)?;
    let fit_run = Run {
        config: &config.train,
        phases: vec![Phase::epochs(&train_loader, config.train.epochs)],
        validation: KnnSources::validation(sources.as_ref(), moco.knn),
        device,
        out_dir: out,
        run_hash: &hash,
    };
    let outcome = train::fit(network, &mut objective, &fit_run)?;
    let network = outcome.model.valid();
    let encoder = TrainedEncoder {
        network: &network,
        spec,
        input,
        train: &data.train,
        config: training_record(&config, &hash)?,
        rows: &outcome.rows,
        resumed_after: outcome.resumed_after,
        tool: "kd-pretrain (MoCo v2)",
    };
    print_summary(save_encoder(encoder, sources.as_ref(), moco.knn, &inner, &weights)?, serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kd_common::models::{Arch, HeadSpec, ModelSpec};
    use kd_datasets::{HostTensor, Targets};

    fn batch(views: usize) -> Batch {
        let view =
            HostTensor { values: (0..4 * 64).map(|i| (i % 13) as f32 / 13.0).collect(), shape: vec![4, 1, 8, 8] };
        Batch { views: vec![view; views], indices: vec![0, 1, 2, 3], targets: Targets::None }
    }

    /// One step then the hook: the loss is finite, the queue takes the step's keys at its
    /// pointer, and the saved state (key encoder + queue) restores into a fresh objective.
    #[test]
    fn a_step_enqueues_its_keys_and_the_state_round_trips() {
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let mut spec = ModelSpec::new(Arch::SmallCnn, 1, 10);
        spec.channels = Some(vec![4, 8, 16]);
        spec.head = HeadSpec::Projection { hidden: 16, out: 8 };
        let network = spec.init(&ad).unwrap();
        let mut config = MocoConfig::new(8, 0.9);
        config.projection_dim = 8;
        let mut moco = Moco::new(config.clone(), &network, 4, 0, &device).unwrap();
        let before = moco.queue.rows().into_data().try_to_vec::<f32>().unwrap();
        let out = moco.step(&network, &batch(2), &ad).unwrap();
        assert!(out.loss.into_scalar::<f32>().is_finite());
        let network = moco.after_step(network, &StepInfo { step: 1, epoch: 0, total_steps: 1, lr: 0.1 }).unwrap();
        let after = moco.queue.rows().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(moco.queue.pointer(), 4);
        assert_ne!(&after[..32], &before[..32]);
        assert_eq!(&after[32..], &before[32..]);

        let state = moco.save_state().unwrap();
        let mut fresh = Moco::new(config, &network, 4, 7, &device).unwrap();
        fresh.load_state(state).unwrap();
        assert_eq!(fresh.queue.rows().into_data().try_to_vec::<f32>().unwrap(), after);
        assert_eq!(fresh.queue.pointer(), 4);
        assert!(moco.step(&network, &batch(1), &ad).is_err(), "one view is refused");
    }
}

//! The contract between the training loop and a method: an [`Objective`] turns a batch into a
//! loss (plus named metrics), may change the model after every optimizer step, and may carry
//! state that must survive a kill.

use crate::error::Result;
use crate::models::Network;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kd_datasets::Batch;
use std::collections::BTreeMap;

/// What an objective returns for one batch.
pub struct StepOutput {
    /// Scalar loss to minimise, `[1]`.
    pub loss: Tensor<1>,
    /// Named scalar metrics of the batch, `[1]` each (averaged over the pass by rows; a column
    /// `train_<name>` of `metrics.csv`). Keep the names the same from batch to batch.
    pub metrics: Vec<(&'static str, Tensor<1>)>,
    /// Logits `[rows, classes]` of the trained network, when it has a classifier: with the
    /// batch's labels the loop reports training top-1 from them.
    pub logits: Option<Tensor<2>>,
}

impl StepOutput {
    /// A loss with the logits it was computed from.
    pub fn with_logits(loss: Tensor<1>, logits: Tensor<2>) -> Self {
        Self { loss, metrics: Vec::new(), logits: Some(logits) }
    }
}

/// Named binary blobs of an objective's persistent state (a queue of embeddings, pruning
/// masks, a momentum encoder), saved in `<out>/state/` with the model and optimizer.
pub type ObjectiveState = BTreeMap<String, Vec<u8>>;

/// Where the loop is when it calls [`Objective::before_step`] and [`Objective::after_step`].
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// Optimizer steps taken so far, this one included.
    pub step: usize,
    /// The schedule's epoch this step belongs to, counted from 0.
    pub epoch: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// Learning rate of this step.
    pub lr: f64,
}

/// A training method. `M` is the trained module: a network, or a network together with
/// auxiliary modules trained in the same optimizer step (MEAL V2's discriminator).
pub trait Objective<M: Module> {
    /// Loss of `model` on `batch`; `device` is the autodiff device the model lives on.
    fn step(&mut self, model: &M, batch: &Batch, device: &Device) -> Result<StepOutput>;

    /// The network that validation measures and that is exported; `None` for a trained module
    /// that is no zoo network (a linear probe on cached features), which validates nothing.
    fn network<'a>(&self, model: &'a M) -> Option<&'a Network>;

    /// Runs before every step's [`Objective::step`] (a loss weight that warms up with the
    /// epoch reads it here); a resumed run calls it with the resumed position.
    fn before_step(&mut self, _info: &StepInfo) {}

    /// Runs after every optimizer step and may change the model (re-apply pruning masks) or
    /// the objective's own state (update a momentum encoder, push keys into a queue).
    fn after_step(&mut self, model: M, _info: &StepInfo) -> Result<M> {
        Ok(model)
    }

    /// What a resumed run must agree on besides the configuration (for example the queue
    /// size); it enters the run hash.
    fn identity(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The state to persist after a pass (empty: none).
    fn save_state(&self) -> Result<ObjectiveState> {
        Ok(ObjectiveState::new())
    }

    /// Restores what [`Objective::save_state`] returned, when a killed run resumes.
    fn load_state(&mut self, _state: ObjectiveState) -> Result<()> {
        Ok(())
    }
}

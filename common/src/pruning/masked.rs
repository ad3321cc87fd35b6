//! Pruned weights stay exactly zero while a network trains: after every optimizer step each
//! masked weight is multiplied by its 0/1 mask on the device, `W <- M ⊙ W` (the forward pass then
//! computes with `M ⊙ W`, as prune-then-distill's masked layers do; Park & No, ECCV 2022, §3.2).
//! [`Masked`] wraps any objective with this step and persists the masks with the run's state, so
//! a resumed run keeps them.

use crate::error::{Error, Result};
use crate::models::Network;
use crate::module_path::ModulePath;
use crate::sparsity::{Masks, masks_from_bytes, masks_to_bytes};
use crate::train::{Objective, ObjectiveState, StepInfo, StepOutput};
use burn::module::{Module, ModuleMapper, Param};
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot};
use burn::tensor::{Device, Tensor, TensorData};
use kd_datasets::Batch;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Masks resident on the training device, keyed by the parameter's path in the module tree.
#[derive(Debug)]
pub struct DeviceMasks {
    /// Flat 0/1 masks in Burn's layout (a linear weight is stored `[in, out]`).
    by_path: HashMap<String, Tensor<1>>,
    /// The masks as given (PyTorch names and layout).
    host: Masks,
}

impl DeviceMasks {
    /// Places `masks` (PyTorch names and shapes, as [`crate::sparsity::prunable_weights`] gives
    /// them) on `device` for `module`'s parameters. Every mask must name a weight of the module
    /// with the same shape.
    pub fn new<M: Module>(module: &M, masks: Masks, device: &Device) -> Result<Self> {
        // The same traversal with and without the PyTorch adapter: pairs of (Burn path and
        // shape, PyTorch name and shape).
        let burn = module.collect(None, None, true);
        let torch = module.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
        if burn.len() != torch.len() {
            return Err(Error::Shape("the network's tensors could not be paired with their PyTorch names".into()));
        }
        let inner = device.clone().inner();
        let mut by_path = HashMap::new();
        for (b, t) in burn.iter().zip(&torch) {
            let Some(mask) = masks.get(&t.name) else { continue };
            let torch_shape: Vec<usize> = t.shape.iter().copied().collect();
            if mask.shape != torch_shape {
                return Err(Error::Shape(format!(
                    "mask {} has shape {:?}, the weight {torch_shape:?}",
                    t.name, mask.shape
                )));
            }
            let burn_shape: Vec<usize> = b.shape.iter().copied().collect();
            let values: Vec<f32> = if burn_shape == torch_shape {
                mask.keep.iter().map(|&k| k as f32).collect()
            } else if burn_shape.len() == 2 && burn_shape[0] == torch_shape[1] && burn_shape[1] == torch_shape[0] {
                // A linear weight: PyTorch [out, in], Burn [in, out].
                let (rows, cols) = (torch_shape[0], torch_shape[1]);
                (0..cols * rows).map(|i| mask.keep[(i % rows) * cols + i / rows] as f32).collect()
            } else {
                return Err(Error::Shape(format!("weight {} has no layout the mask can follow", t.name)));
            };
            let len = values.len();
            by_path.insert(b.name.clone(), Tensor::<1>::from_data(TensorData::new(values, [len]), &inner));
        }
        if let Some(stray) = masks.keys().find(|name| !torch.iter().any(|t| &t.name == *name)) {
            return Err(Error::Shape(format!("mask {stray} names no weight of the network")));
        }
        Ok(Self { by_path, host: masks })
    }

    /// `module` with every masked weight multiplied by its mask.
    pub fn apply<M: Module>(&self, module: M) -> M {
        module.map(&mut Apply { masks: &self.by_path, path: ModulePath::default() })
    }

    /// The masks (PyTorch names and layout).
    pub fn host(&self) -> &Masks {
        &self.host
    }

    /// SHA-256 of the masks' safetensors bytes.
    pub fn sha256(&self) -> Result<String> {
        Ok(Sha256::digest(masks_to_bytes(&self.host)?).iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// The mapper: multiplies the parameters at the masks' paths.
struct Apply<'a> {
    masks: &'a HashMap<String, Tensor<1>>,
    path: ModulePath,
}

impl ModuleMapper for Apply<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.path.exit(container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(mask) = self.masks.get(&self.path.current()) else { return param };
        param.map(|weight| {
            // On the inner backend, then back as a fresh leaf (an op result cannot require grad).
            let (autodiff, tracked) = (weight.is_autodiff(), weight.is_require_grad());
            let dims = weight.dims();
            let masked = weight.inner() * mask.clone().reshape(dims);
            if autodiff { masked.autodiff().set_require_grad(tracked) } else { masked }
        })
    }
}

/// An objective whose network is pruned: the inner objective's steps, then the masks applied
/// after every optimizer step; the masks are part of the run's identity and state.
pub struct Masked<O> {
    /// The training objective (cross-entropy for retraining, a distillation loss, ...).
    pub inner: O,
    masks: DeviceMasks,
}

impl<O> Masked<O> {
    /// Wraps `inner`; the masks must live on the device the model trains on.
    pub fn new(inner: O, masks: DeviceMasks) -> Self {
        Self { inner, masks }
    }

    /// The masks.
    pub fn masks(&self) -> &DeviceMasks {
        &self.masks
    }
}

/// Name of the masks in the objective's saved state.
const STATE_KEY: &str = "pruning_masks";

impl<M: Module, O: Objective<M>> Objective<M> for Masked<O> {
    fn step(&mut self, model: &M, batch: &Batch, device: &Device) -> Result<StepOutput> {
        self.inner.step(model, batch, device)
    }

    fn network<'a>(&self, model: &'a M) -> Option<&'a Network> {
        self.inner.network(model)
    }

    fn after_step(&mut self, model: M, info: &StepInfo) -> Result<M> {
        let model = self.inner.after_step(model, info)?;
        Ok(self.masks.apply(model))
    }

    fn identity(&self) -> serde_json::Value {
        serde_json::json!({
            "objective": self.inner.identity(),
            "pruning_masks_sha256": self.masks.sha256().unwrap_or_default(),
        })
    }

    fn save_state(&self) -> Result<ObjectiveState> {
        let mut state = self.inner.save_state()?;
        state.insert(STATE_KEY.into(), masks_to_bytes(self.masks.host())?);
        Ok(state)
    }

    fn load_state(&mut self, mut state: ObjectiveState) -> Result<()> {
        let bytes = state
            .remove(STATE_KEY)
            .ok_or_else(|| Error::InvalidConfig("the saved state of this pruned run has no masks".into()))?;
        let saved = masks_from_bytes(&bytes).map_err(|m| Error::InvalidConfig(format!("saved pruning masks: {m}")))?;
        if &saved != self.masks.host() {
            return Err(Error::InvalidConfig("the saved pruning masks differ from this run's masks".into()));
        }
        self.inner.load_state(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{DeviceSpec, resolve};
    use crate::sparsity::Mask;
    use crate::train::{
        Decay, LinearCrossEntropy, OptimizerConfig, Phase, Run, ScheduleConfig, TrainConfig, Validation, fit,
    };
    use burn::nn::{Linear, LinearConfig};
    use kd_datasets::FeatureSource;

    /// The weight in PyTorch's layout `[out, in]`, row-major.
    fn torch_weight(model: &Linear) -> Vec<f32> {
        let weight = model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
        let weight = weight.iter().find(|t| t.name == "weight").unwrap();
        weight.to_bytes().unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    /// A linear classifier (PyTorch weight `[2, 3]`, Burn stores `[3, 2]`) trained with SGD,
    /// momentum and weight decay under a mask: the pruned entries are exactly zero after every
    /// step (momentum keeps pushing them, the mask puts them back), the kept ones train. The
    /// classes differ in feature 0, which the mask keeps for class 0 only.
    #[test]
    fn masked_weights_stay_exactly_zero_through_training() {
        let device = resolve(&DeviceSpec::Cpu).unwrap();
        let ad = device.device.clone().autodiff();
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for i in 0..16 {
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            values.extend([sign * (1.0 + i as f32 * 0.01), 0.3 * ((i * 7 % 5) as f32 - 2.0), 0.5]);
            labels.push(i % 2);
        }
        let source = FeatureSource::new(values, 3, labels, 2, 4, true, 1).unwrap();
        let keep = vec![1, 0, 1, 0, 1, 0];
        let masks = Masks::from([("weight".to_string(), Mask { shape: vec![2, 3], keep: keep.clone() })]);
        let model = LinearConfig::new(3, 2).init(&ad);
        let device_masks = DeviceMasks::new(&model, masks, &ad).unwrap();
        let model = device_masks.apply(model);
        let before = torch_weight(&model);
        let mut objective = Masked::new(LinearCrossEntropy, device_masks);
        let config = TrainConfig {
            epochs: 3,
            batch_size: 4,
            optimizer: OptimizerConfig::Sgd { momentum: 0.9, nesterov: false, weight_decay: 1e-3 },
            schedule: ScheduleConfig { lr: 0.5, warmup_epochs: 0.0, decay: Decay::Constant },
            grad_clip_norm: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let run = Run {
            config: &config,
            phases: vec![Phase::epochs(&source, 3)],
            validation: Validation::None,
            device: &device,
            out_dir: dir.path(),
            run_hash: "masked",
        };
        let outcome = fit(model, &mut objective, &run).unwrap();
        let after = torch_weight(&outcome.model);
        for (i, &k) in keep.iter().enumerate() {
            if k == 0 {
                assert_eq!((before[i], after[i]), (0.0, 0.0), "entry {i}");
            } else {
                assert!(after[i] != before[i], "entry {i} trained");
            }
        }
        assert_eq!(outcome.rows.last().unwrap().train_top1, Some(100.0));
        // The state carries the masks; other masks are refused on resume.
        let state = Objective::<Linear>::save_state(&objective).unwrap();
        assert!(state.contains_key(STATE_KEY));
        let other = Masks::from([("weight".to_string(), Mask { shape: vec![2, 3], keep: vec![1; 6] })]);
        let mut other = Masked::new(LinearCrossEntropy, DeviceMasks::new(&outcome.model, other, &ad).unwrap());
        assert!(Objective::<Linear>::load_state(&mut other, state).unwrap_err().to_string().contains("differ"));
    }

    #[test]
    fn masks_must_fit_the_module() {
        let ad = Device::flex().autodiff();
        let model = LinearConfig::new(3, 2).init(&ad);
        let wrong = Masks::from([("weight".to_string(), Mask { shape: vec![3, 2], keep: vec![1; 6] })]);
        assert!(DeviceMasks::new(&model, wrong, &ad).unwrap_err().to_string().contains("shape"));
        let stray = Masks::from([("conv.weight".to_string(), Mask { shape: vec![1], keep: vec![1] })]);
        assert!(DeviceMasks::new(&model, stray, &ad).unwrap_err().to_string().contains("conv.weight"));
    }
}

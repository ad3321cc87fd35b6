//! The momentum (exponential moving average) key encoder of MoCo (He et al., CVPR 2020, §3.2,
//! Eq. 2): after every optimizer step `theta_k <- m theta_k + (1 - m) theta_q` for every float
//! tensor of the two networks, which share one architecture. Batch-norm running statistics are
//! averaged the same way, so the key encoder, run in inference mode on the non-autodiff device,
//! normalises with statistics that follow the query encoder's (MoCo's key encoder computes batch
//! statistics in training mode with shuffled BN across GPUs instead; one device has nothing to
//! shuffle across).

use crate::error::{Error, Result};
use crate::module_path::ModulePath;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use std::collections::HashMap;

/// `key` moved towards `query` with momentum `m` (in [0, 1]); `query` may live on the autodiff
/// device, `key` on its inner device.
pub fn momentum_update<M: Module>(key: M, query: &M, momentum: f32) -> Result<M> {
    if !(0.0..=1.0).contains(&momentum) {
        return Err(Error::InvalidConfig(format!("the momentum must be in [0, 1], got {momentum}")));
    }
    let mut collect = Collect { path: ModulePath::default(), values: HashMap::new() };
    query.visit(&mut collect);
    let mut update = Update { path: ModulePath::default(), values: collect.values, momentum, missing: Vec::new() };
    let key = key.map(&mut update);
    if let Some(path) = update.missing.first() {
        return Err(Error::Shape(format!("the key encoder's {path} has no counterpart in the query encoder")));
    }
    Ok(key)
}

/// The query's float tensors by path, flattened, without autodiff.
struct Collect {
    path: ModulePath,
    values: HashMap<String, Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.path.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().detach().inner();
        let n = value.shape().num_elements();
        self.values.insert(self.path.current(), value.reshape([n]));
    }
}

struct Update {
    path: ModulePath,
    values: HashMap<String, Tensor<1>>,
    momentum: f32,
    missing: Vec<String>,
}

impl ModuleMapper for Update {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.path.exit(container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.current();
        let Some(query) = self.values.get(&path) else {
            self.missing.push(path);
            return param;
        };
        let m = self.momentum;
        param.map(|key| {
            let dims = key.dims();
            key.mul_scalar(m) + query.clone().reshape(dims).mul_scalar(1.0 - m)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;
    use burn::tensor::TensorData;

    fn weights(linear: &Linear) -> Vec<f32> {
        linear.weight.val().into_data().try_to_vec().unwrap()
    }

    /// Key weights w_k, query weights w_q on the autodiff device: after one update with m = 0.9
    /// the key holds 0.9 w_k + 0.1 w_q element by element (the formula, computed on the host),
    /// the bias too; m = 1 leaves the key as it was.
    #[test]
    fn follows_the_formula() {
        let device = Device::flex();
        let key = LinearConfig::new(3, 2).init(&device);
        let query = LinearConfig::new(3, 2).init(&device.clone().autodiff());
        let (k, q) = (weights(&key), weights(&query));
        let (kb, qb): (Vec<f32>, Vec<f32>) = (
            key.bias.as_ref().unwrap().val().into_data().try_to_vec().unwrap(),
            query.bias.as_ref().unwrap().val().into_data().try_to_vec().unwrap(),
        );
        let unchanged = momentum_update(key.clone(), &query, 1.0).unwrap();
        assert_eq!(weights(&unchanged), k);
        let updated = momentum_update(key, &query, 0.9).unwrap();
        let expected: Vec<f32> = k.iter().zip(&q).map(|(k, q)| 0.9 * k + 0.1 * q).collect();
        TensorData::new(weights(&updated), [6])
            .assert_approx_eq::<f32>(&TensorData::new(expected, [6]), Default::default());
        let bias: Vec<f32> = updated.bias.unwrap().val().into_data().try_to_vec().unwrap();
        let expected: Vec<f32> = kb.iter().zip(&qb).map(|(k, q)| 0.9 * k + 0.1 * q).collect();
        TensorData::new(bias, [2]).assert_approx_eq::<f32>(&TensorData::new(expected, [2]), Default::default());
        assert!(momentum_update(LinearConfig::new(3, 2).init(&device), &query, 1.5).is_err());
    }
}

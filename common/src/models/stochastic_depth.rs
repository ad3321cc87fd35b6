//! Stochastic depth (Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016, §3; the
//! "drop connect" of EfficientNet): while training, each sample's residual branch is dropped
//! with probability `p` and the surviving ones are scaled by `1 / (1 - p)`, so the block is
//! the identity shortcut for that sample; at evaluation the branch is kept whole. Follows
//! `torchvision.ops.StochasticDepth(p, mode="row")`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::Tensor;

/// `torchvision.ops.StochasticDepth` in `"row"` mode: one Bernoulli draw per sample.
#[derive(Module, Debug)]
pub struct StochasticDepth {
    /// Draws the per-sample mask; active only while training on an autodiff device.
    dropout: Dropout,
}

impl StochasticDepth {
    /// Drops a sample's branch with probability `p` in `[0, 1)`.
    pub fn new(p: f64) -> Self {
        Self { dropout: DropoutConfig::new(p).init() }
    }

    /// The drop probability.
    pub fn prob(&self) -> f64 {
        self.dropout.prob
    }

    /// The residual branch `x` `[B, ...]` with whole samples zeroed (and the others rescaled)
    /// while training; `x` itself otherwise, and always for `p = 0`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        // The conditions under which `Dropout` passes its input through: skip the mask entirely.
        if self.dropout.prob == 0.0 || !self.dropout.training.is_enabled() || !x.device().is_autodiff() {
            return x;
        }
        let mut mask_shape = [1; D];
        mask_shape[0] = x.dims()[0];
        let mask = self.dropout.forward(Tensor::<D>::ones(mask_shape, &x.device()));
        x * mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn identity_in_eval_and_for_zero_probability() {
        let x = Tensor::<4>::ones([8, 2, 3, 3], &Device::flex().autodiff());
        let same = |y: Tensor<4>| assert_eq!(y.into_data(), x.to_data());
        same(StochasticDepth::new(0.5).valid().forward(x.clone()));
        same(StochasticDepth::new(0.0).forward(x.clone()));
        same(StochasticDepth::new(0.5).forward(Tensor::<4>::ones([8, 2, 3, 3], &Device::flex())));
    }

    /// With p = 1/2 every sample is either all zeros or all 2 (scaled by 1 / (1 - p)); among 64
    /// samples both occur (all alike has probability 2^-63).
    #[test]
    fn drops_whole_samples_in_training() {
        let x = Tensor::<4>::ones([64, 2, 3, 3], &Device::flex().autodiff());
        let y = StochasticDepth::new(0.5).forward(x).into_data().try_to_vec::<f32>().unwrap();
        let samples: Vec<&[f32]> = y.chunks(18).collect();
        for sample in &samples {
            assert!(sample.iter().all(|&v| v == sample[0]) && (sample[0] == 0.0 || sample[0] == 2.0), "{sample:?}");
        }
        let dropped = samples.iter().filter(|s| s[0] == 0.0).count();
        assert!(dropped > 0 && dropped < 64, "{dropped} of 64 dropped");
    }
}

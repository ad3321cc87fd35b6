//! Optimizer choice: SGD with (Nesterov) momentum or AdamW, with weight decay and optional
//! gradient-norm clipping.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig};

/// The optimizer and its hyper-parameters (learning rate: see [`super::ScheduleConfig`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// SGD, PyTorch semantics: `v = mu * v + (g + wd * w)`, `w -= lr * (g + mu * v)` with
    /// Nesterov, `w -= lr * v` without; no dampening.
    Sgd {
        /// Momentum factor (0.9 in every anchor recipe).
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 weight decay added to the gradient.
        weight_decay: f32,
    },
    /// AdamW (Loshchilov & Hutter, ICLR 2019) with decoupled weight decay.
    Adamw {
        /// (beta1, beta2).
        betas: [f32; 2],
        /// Denominator epsilon.
        eps: f32,
        /// Decoupled weight decay.
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    /// Builds the optimizer; `clip_norm` clips each parameter's gradient to that L2 norm.
    pub fn build(&self, clip_norm: Option<f32>) -> ModuleOptimizer {
        let clipping = clip_norm.map(GradientClippingConfig::Norm);
        match self {
            Self::Sgd { momentum, nesterov, weight_decay } => {
                let momentum = (*momentum > 0.0).then_some(MomentumConfig {
                    momentum: *momentum,
                    dampening: 0.0,
                    nesterov: *nesterov,
                });
                let decay = (*weight_decay > 0.0).then_some(WeightDecayConfig { penalty: *weight_decay });
                SgdConfig::new()
                    .with_momentum(momentum)
                    .with_weight_decay(decay)
                    .with_gradient_clipping(clipping)
                    .init()
            }
            Self::Adamw { betas, eps, weight_decay } => AdamWConfig::new()
                .with_beta_1(betas[0])
                .with_beta_2(betas[1])
                .with_epsilon(*eps)
                .with_weight_decay(*weight_decay)
                .with_grad_clipping(clipping)
                .init(),
        }
    }

    /// Checks the hyper-parameters (momentum in [0, 1), betas in [0, 1), non-negative decay).
    pub fn validate(&self) -> crate::Result<()> {
        let ok = match self {
            Self::Sgd { momentum, weight_decay, .. } => {
                (0.0..1.0).contains(momentum) && weight_decay.is_finite() && *weight_decay >= 0.0
            }
            Self::Adamw { betas, eps, weight_decay } => {
                betas.iter().all(|b| (0.0..1.0).contains(b))
                    && eps.is_finite()
                    && *eps > 0.0
                    && weight_decay.is_finite()
                    && *weight_decay >= 0.0
            }
        };
        if ok {
            Ok(())
        } else {
            Err(crate::Error::InvalidConfig(format!("optimizer hyper-parameters out of range: {self:?}")))
        }
    }
}

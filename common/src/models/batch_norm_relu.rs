//! `relu(batch_norm(x))` as one operation on the CPU backend while training: batch norm with
//! the batch's statistics (Ioffe & Szegedy, "Batch Normalization", 2015, Algorithm 1) followed by
//! ReLU, forward and backward in the fused kernels of the patched burn-flex
//! (`burn_flex::ops::batch_norm_relu`), which read and write each activation fewer times than
//! the two operations and their two backward passes; every value is bitwise that composition's.
//!
//! The operation is a Burn backend extension (`#[backend_extension]`) implemented for Flex and
//! for Flex under autodiff, whose backward is written here as burn-autodiff writes its own batch
//! norm's. [`batch_norm_relu`] takes it on Flex in training mode and `relu(bn.forward(x))`
//! everywhere else (inference, wgpu, CUDA), so a model calls one function on every backend.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, ExtensionType, Flex, backend_extension};
use burn::nn::BatchNorm;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use burn_flex::FlexTensor;
use burn_flex::ops::batch_norm_relu::{batch_norm_relu_train, batch_norm_relu_train_backward};

/// The fused operation's results: the activation and the batch's statistics (the latter for the
/// running estimates, outside the graph).
#[derive(ExtensionType)]
pub struct BatchNormReluOutput<B: Backend> {
    /// `relu(γ·x̂ + β)`, `[N, C, ...]`.
    pub output: FloatTensor<B>,
    /// The batch mean per channel, `[C]`.
    pub mean: FloatTensor<B>,
    /// The batch's biased variance per channel, `[C]`.
    pub variance: FloatTensor<B>,
}

/// Backends that run training-mode batch norm followed by ReLU as one operation.
#[backend_extension(Flex, Autodiff)]
pub trait BatchNormReluBackend: Backend {
    /// `relu(batch_norm_train(x, γ, β, ε))` with the batch's statistics.
    fn batch_norm_relu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> BatchNormReluOutput<Self>;
}

impl BatchNormReluBackend for Flex {
    fn batch_norm_relu_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> BatchNormReluOutput<Self> {
        let [output, mean, variance, _scale] = batch_norm_relu_train(&x, &gamma, &beta, epsilon);
        BatchNormReluOutput { output, mean, variance }
    }
}

/// The backward step: the gradients of `x`, `γ` and `β` from the fused kernel's backward.
#[derive(Debug)]
struct BatchNormReluBackward;

/// What the backward needs besides `x` (checkpointed): `γ`, `β`, the batch statistics, the
/// per-channel scale the forward used, and `ε`.
type BackwardState = (NodeId, [FlexTensor; 5], f64);

impl Backward<Flex, 3> for BatchNormReluBackward {
    type State = BackwardState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let output_grad = grads.consume::<Flex>(&ops.node);
        let (x_state, [gamma, beta, mean, variance, scale], epsilon) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let [x_grad, gamma_grad, beta_grad] =
            batch_norm_relu_train_backward(&x, [&gamma, &beta, &mean, &variance, &scale], epsilon, &output_grad);
        for (node, grad) in [(node_x, x_grad), (node_gamma, gamma_grad), (node_beta, beta_grad)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

impl<C: CheckpointStrategy> BatchNormReluBackend for Autodiff<Flex, C> {
    fn batch_norm_relu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> BatchNormReluOutput<Self> {
        let prepared =
            BatchNormReluBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful();
        let (gamma, beta) = (gamma.into_primitive(), beta.into_primitive());
        let [output, mean, variance, scale] = batch_norm_relu_train(x.primitive(), &gamma, &beta, epsilon);
        let output = match prepared {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                prep.finish((x_state, [gamma, beta, mean.clone(), variance.clone(), scale], epsilon), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(output),
        };
        BatchNormReluOutput { output, mean: untracked::<C>(mean), variance: untracked::<C>(variance) }
    }
}

/// A statistic as a tensor outside the graph, as burn-autodiff returns batch norm's.
fn untracked<C: CheckpointStrategy>(tensor: FlexTensor) -> FloatTensor<Autodiff<Flex, C>> {
    FloatTensor::<Autodiff<Flex, C>>::new(tensor)
}

/// Whether `device` computes on Flex (with or without autodiff).
fn is_flex(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

/// `relu(bn.forward(x))`, fused on Flex while training (the device tracks gradients and the
/// layer's training flag is on, as [`BatchNorm::forward`] decides), with the running statistics
/// updated exactly as [`BatchNorm::forward`] updates them:
/// `running ← (1 - momentum)·running + momentum·batch`.
pub fn batch_norm_relu(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let device = x.device();
    if !(device.is_autodiff() && bn.training.is_enabled() && is_flex(&device)) {
        return relu(bn.forward(x));
    }
    let [channels] = bn.gamma.shape().dims();
    assert_eq!(x.dims()[1], channels, "batch norm of {channels} channels given {:?}", x.dims());
    let result = <burn::backend::Dispatch as BatchNormReluBackend>::batch_norm_relu_train(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
    );
    let mean = Tensor::<1>::from_dispatch(result.mean);
    let variance = Tensor::<1>::from_dispatch(result.variance);
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    let running_mean = running_mean.mul_scalar(1.0 - bn.momentum).add(mean.detach().mul_scalar(bn.momentum));
    let running_var = running_var.mul_scalar(1.0 - bn.momentum).add(variance.detach().mul_scalar(bn.momentum));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
    Tensor::from_dispatch(result.output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::{Distribution, TensorData};

    /// The tensor's values as bits, to compare bitwise.
    fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap().into_iter().map(f32::to_bits).collect()
    }

    /// A batch norm of 4 channels with a γ of 0 and a β that clips its whole channel.
    fn batch_norm(device: &Device) -> BatchNorm {
        let mut bn = super::super::layers::bn(4, device);
        bn.gamma = Param::from_data(TensorData::from([1.5f32, 0.0, 0.7, 2.0]), device);
        bn.beta = Param::from_data(TensorData::from([0.1f32, 0.3, -100.0, -0.2]), device);
        bn
    }

    /// `(output, ∂x, ∂γ, ∂β, running mean, running variance)` of `forward` on a new
    /// [batch_norm] (clones would share its running statistics) for `x`, with the loss
    /// `Σ output·w`.
    fn run(x: &Tensor<4>, w: &Tensor<4>, forward: impl Fn(&BatchNorm, Tensor<4>) -> Tensor<4>) -> [Vec<u32>; 6] {
        let bn = batch_norm(&x.device());
        let x = x.clone().require_grad();
        let output = forward(&bn, x.clone());
        let grads = (output.clone() * w.clone()).sum().backward();
        [
            bits(output),
            bits(x.grad(&grads).unwrap()),
            bits(bn.gamma.val().grad(&grads).unwrap()),
            bits(bn.beta.val().grad(&grads).unwrap()),
            bits(bn.running_mean.value_sync()),
            bits(bn.running_var.value_sync()),
        ]
    }

    /// On Flex under autodiff the fused path is taken, and its output, all three gradients and
    /// the running statistics are bitwise those of `relu(bn.forward(x))` (the composition it
    /// replaces, computed by Burn's own batch norm and ReLU), including a channel whose every
    /// output is clipped (β = -100) and one with γ = 0.
    #[test]
    fn fused_matches_the_composition_bitwise() {
        let device = Device::flex().autodiff();
        assert!(is_flex(&device) && is_flex(&Device::flex()));
        let x = Tensor::<4>::random([3, 4, 5, 7], Distribution::Normal(0.5, 2.0), &device);
        let w = Tensor::<4>::random([3, 4, 5, 7], Distribution::Uniform(-1.0, 1.0), &device);
        let fused = run(&x, &w, batch_norm_relu);
        let composed = run(&x, &w, |bn, x| relu(bn.forward(x)));
        let names = ["output", "dx", "dgamma", "dbeta", "running mean", "running variance"];
        for ((name, fused), composed) in names.iter().zip(&fused).zip(&composed) {
            assert_eq!(fused, composed, "{name}");
        }
        // the running statistics moved from (0, 1)
        assert_ne!(fused[4], bits(Tensor::<1>::zeros([4], &device)));
        assert_ne!(fused[5], bits(Tensor::<1>::ones([4], &device)));
    }
}

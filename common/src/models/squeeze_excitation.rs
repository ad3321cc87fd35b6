//! Squeeze-and-excitation (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018, §3): global
//! average pooling squeezes each channel to one value, a bottleneck of two 1x1 convolutions
//! turns those values into per-channel gates, and the input is rescaled by them. Follows
//! `torchvision.ops.SqueezeExcitation`: `avgpool -> fc1 -> activation -> fc2 -> scale_activation`,
//! then `x * scale`, with biased 1x1 convolutions named `fc1` and `fc2`. MobileNetV3 uses ReLU
//! and a hard sigmoid, EfficientNet SiLU and a sigmoid.

use super::layers::global_avg_pool;
use super::sequential::Activation;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::{hard_sigmoid, sigmoid};
use burn::tensor::{Device, Tensor};

/// The function turning the excitation into channel gates (torchvision's `scale_activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleActivation {
    /// `nn.Sigmoid` (the paper, EfficientNet).
    Sigmoid,
    /// `nn.Hardsigmoid`, `relu6(x + 3) / 6` (MobileNetV3).
    HardSigmoid,
}

/// `torchvision.ops.SqueezeExcitation`.
#[derive(Module, Debug)]
pub struct SqueezeExcitation {
    /// 1x1 convolution with bias, `input_channels -> squeeze_channels`.
    pub fc1: Conv2d,
    /// 1x1 convolution with bias, `squeeze_channels -> input_channels`.
    pub fc2: Conv2d,
    /// The activation between `fc1` and `fc2` (no parameters).
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    scale_activation: ScaleActivation,
}

/// A 1x1 convolution with bias, initialised as torchvision initialises the convolutions of
/// MobileNetV3 and EfficientNet: Kaiming normal (fan-out) weights, zero bias.
fn pointwise_with_bias(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    let mut conv = Conv2dConfig::new([c_in, c_out], [1, 1])
        .with_initializer(Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: true })
        .init(device);
    conv.bias = Some(Param::from_tensor(Tensor::zeros([c_out], device)));
    conv
}

impl SqueezeExcitation {
    /// Gates for `input_channels` channels through a bottleneck of `squeeze_channels`.
    pub fn new(
        input_channels: usize,
        squeeze_channels: usize,
        activation: Activation,
        scale_activation: ScaleActivation,
        device: &Device,
    ) -> Self {
        Self {
            fc1: pointwise_with_bias(input_channels, squeeze_channels, device),
            fc2: pointwise_with_bias(squeeze_channels, input_channels, device),
            activation,
            scale_activation,
        }
    }

    /// The per-channel gates `[B, C, 1, 1]` of `x`.
    pub fn scale(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, _, _] = x.dims();
        let squeezed = global_avg_pool(x).reshape([b, c, 1, 1]);
        let excited = self.fc2.forward(self.activation.forward(self.fc1.forward(squeezed)));
        match self.scale_activation {
            ScaleActivation::Sigmoid => sigmoid(excited),
            // max(0, min(1, x / 6 + 1/2)) = relu6(x + 3) / 6.
            ScaleActivation::HardSigmoid => hard_sigmoid(excited, 1.0 / 6.0, 0.5),
        }
    }

    /// `x` with every channel multiplied by its gate.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.scale(x.clone()) * x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    /// 16 channels squeezed to 8: fc1 16*8 + 8, fc2 8*16 + 16 parameters.
    #[test]
    fn parameters_and_shape() {
        let device = Device::flex();
        let se = SqueezeExcitation::new(16, 8, Activation::Relu, ScaleActivation::HardSigmoid, &device);
        assert_eq!(super::super::trainable_params(&se), 16 * 8 + 8 + 8 * 16 + 16);
        let x = Tensor::<4>::random([2, 16, 5, 5], Distribution::Default, &device);
        assert_eq!(se.forward(x).dims(), [2, 16, 5, 5]);
    }

    /// With zero weights the excitation is fc2's bias: the hard sigmoid of 0 is 1/2, of 3 is 1,
    /// of -3 is 0; the sigmoid of 0 is 1/2. Every pixel of a channel is scaled alike.
    #[test]
    fn gates_follow_the_scale_activation() {
        let device = Device::flex();
        let mut se = SqueezeExcitation::new(3, 2, Activation::Relu, ScaleActivation::HardSigmoid, &device);
        se.fc1.weight = Param::from_tensor(Tensor::zeros([2, 3, 1, 1], &device));
        se.fc2.weight = Param::from_tensor(Tensor::zeros([3, 2, 1, 1], &device));
        se.fc2.bias = Some(Param::from_tensor(Tensor::from_floats([0.0, 3.0, -3.0], &device)));
        let x = Tensor::<4>::ones([1, 3, 2, 2], &device) * 2.0;
        let expected =
            TensorData::new(vec![1.0f32, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0], [1, 3, 2, 2]);
        se.forward(x.clone()).into_data().assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));

        se.scale_activation = ScaleActivation::Sigmoid;
        let gates = se.scale(x).into_data();
        let sigmoid_3 = 1.0 / (1.0 + (-3.0f32).exp());
        let expected = TensorData::new(vec![0.5f32, sigmoid_3, 1.0 - sigmoid_3], [1, 3, 1, 1]);
        gates.assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));
    }
}

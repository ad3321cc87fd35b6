//! MEAL V2's discriminator (Shen & Savvides, MEAL V2, 2020, §3.2; `models/discriminator.py`,
//! Shen & Savvides, MEAL V2, 2020, §3.1): three fully connected layers `C -> C/8 -> C/64 -> 2`, each followed by ReLU,
//! telling the student's output vectors from the teachers'. MEAL V2 also applies ReLU after the
//! last layer, so both logits are >= 0 before `BCEWithLogitsLoss` (sigmoid >= 0.5); that quirk
//! is the `final_relu` switch, on by default in `kd-distill` for parity with MEAL V2's code.
//!
//! Hidden widths are `C/8` and `C/8/8` with integer division as in MEAL V2 (1000 -> 125 -> 15),
//! but at least [`MIN_HIDDEN`] so that small label spaces (10 classes) still get a usable
//! discriminator.

use super::layers::linear;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Smallest hidden width.
pub const MIN_HIDDEN: usize = 8;

/// The three-layer discriminator.
#[derive(Module, Debug)]
pub struct Discriminator {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    /// ReLU after the last layer (MEAL V2 parity).
    final_relu: bool,
}

/// Hidden widths for `classes` inputs.
pub fn hidden_widths(classes: usize) -> (usize, usize) {
    let first = classes / 8;
    (first.max(MIN_HIDDEN), (first / 8).max(MIN_HIDDEN))
}

impl Discriminator {
    /// A discriminator over `classes`-dimensional output vectors.
    pub fn new(classes: usize, final_relu: bool, device: &Device) -> Self {
        let (h1, h2) = hidden_widths(classes);
        Self { fc1: linear(classes, h1, device), fc2: linear(h1, h2, device), fc3: linear(h2, 2, device), final_relu }
    }

    /// `[N, C]` output vectors to `[N, 2]` logits.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        let x = self.fc3.forward(x);
        if self.final_relu { relu(x) } else { x }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_meal_v2_with_a_floor() {
        assert_eq!(hidden_widths(1000), (125, 15));
        assert_eq!(hidden_widths(100), (12, 8));
        assert_eq!(hidden_widths(10), (8, 8));
    }

    #[test]
    fn final_relu_makes_logits_non_negative() {
        let device = Device::default();
        let x = Tensor::<2>::random([16, 10], burn::tensor::Distribution::Normal(0.0, 3.0), &device);
        let d = Discriminator::new(10, true, &device);
        let out: Vec<f32> = d.forward(x).into_data().try_to_vec().unwrap();
        assert_eq!(out.len(), 32);
        assert!(out.iter().all(|&v| v >= 0.0));
    }
}

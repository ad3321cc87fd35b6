//! The teacher ensemble of MEAL V2 (Shen & Savvides, 2020, §3.1), the one place kdkit averages
//! teachers: the target is the mean of the teachers' softmax at temperature T,
//! `p = 1/n sum_t softmax(z_t / T)`, and the discriminator reads the mean logits `1/n sum_t z_t`.
//! With logit standardisation (Sun et al., CVPR 2024, §3.2) each `z_t` is z-scored before the
//! temperature: `p = 1/n sum_t softmax(Z(z_t) / T)`.

use crate::losses::standardize_logits;
use crate::models::Network;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

/// The ensemble's outputs on one batch.
pub struct EnsembleOutput {
    /// `1/n sum_t softmax(z_t / T)`, `[B, C]`.
    pub probs: Tensor<2>,
    /// `1/n sum_t z_t`, `[B, C]`.
    pub mean_logits: Tensor<2>,
}

/// Runs every network on its input (`input(t)`: teacher `t`'s normalised batch, the same
/// tensor when all share a normalisation) and averages; `standardize` z-scores each network's
/// logits before the temperature. `networks` must not be empty.
pub fn ensemble(
    networks: &[Network],
    input: impl Fn(usize) -> Tensor<4>,
    temperature: f32,
    standardize: bool,
) -> EnsembleOutput {
    assert!(!networks.is_empty(), "an ensemble needs at least one network");
    let n = networks.len() as f32;
    let mut probs: Option<Tensor<2>> = None;
    let mut logits: Option<Tensor<2>> = None;
    for (t, network) in networks.iter().enumerate() {
        let z = network.forward(input(t));
        let scaled = if standardize { standardize_logits(z.clone()) } else { z.clone() };
        let p = softmax(scaled.div_scalar(temperature), 1);
        probs = Some(probs.map_or(p.clone(), |s| s + p));
        logits = Some(logits.map_or(z.clone(), |s| s + z));
    }
    let (probs, logits) = (probs.expect("one network at least"), logits.expect("one network at least"));
    if networks.len() == 1 {
        return EnsembleOutput { probs, mean_logits: logits };
    }
    EnsembleOutput { probs: probs.div_scalar(n), mean_logits: logits.div_scalar(n) }
}

/// Logits whose softmax is the ensemble's mean distribution at T = 1: the network's own logits
/// for one network, else `log p`.
pub fn ensemble_logits(networks: &[Network], images: Tensor<4>) -> Tensor<2> {
    if networks.len() == 1 {
        return networks[0].forward(images);
    }
    ensemble(networks, |_| images.clone(), 1.0, false).probs.clamp_min(1e-30).log()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, ModelSpec};
    use burn::tensor::{Device, Distribution, Tolerance};

    /// Against a by-hand average of two networks' softmax at T = 2.
    #[test]
    fn mean_of_softmax_and_of_logits() {
        let device = Device::default();
        let spec = ModelSpec { width: 0.25, ..ModelSpec::new(Arch::SmallCnn, 1, 4) };
        let (a, b) = (spec.init(&device).unwrap(), spec.init(&device).unwrap());
        let x = Tensor::<4>::random([3, 1, 8, 8], Distribution::Default, &device);
        let (za, zb) = (a.forward(x.clone()), b.forward(x.clone()));
        let expected =
            (softmax(za.clone().div_scalar(2.0), 1) + softmax(zb.clone().div_scalar(2.0), 1)).div_scalar(2.0);
        let out = ensemble(&[a.clone(), b.clone()], |_| x.clone(), 2.0, false);
        out.probs.into_data().assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
        let mean = (za + zb).div_scalar(2.0);
        out.mean_logits.into_data().assert_approx_eq::<f32>(&mean.into_data(), Tolerance::absolute(1e-6));
        let sums = softmax(ensemble_logits(&[a, b], x), 1).sum_dim(1).into_data();
        sums.assert_approx_eq::<f32>(&Tensor::<2>::ones([3, 1], &device).into_data(), Tolerance::absolute(1e-5));
    }

    /// With standardisation, the mean of the softmax of each network's z-scored logits.
    #[test]
    fn standardised_members() {
        let device = Device::default();
        let spec = ModelSpec { width: 0.25, ..ModelSpec::new(Arch::SmallCnn, 1, 4) };
        let (a, b) = (spec.init(&device).unwrap(), spec.init(&device).unwrap());
        let x = Tensor::<4>::random([3, 1, 8, 8], Distribution::Default, &device);
        let member = |z: Tensor<2>| softmax(standardize_logits(z).div_scalar(2.0), 1);
        let expected = (member(a.forward(x.clone())) + member(b.forward(x.clone()))).div_scalar(2.0);
        let out = ensemble(&[a, b], |_| x.clone(), 2.0, true);
        out.probs.into_data().assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
    }
}

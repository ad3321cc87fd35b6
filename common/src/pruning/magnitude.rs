//! One round of L1-magnitude pruning over host copies of the prunable weights: of the weights
//! still kept, the `fraction` with the smallest `|w|` are pruned, over all layers at once
//! (global, as PyTorch's `prune.global_unstructured` with `L1Unstructured`) or in every layer
//! separately. Ties at the threshold are broken by layer name and position, so a round is
//! deterministic.

use crate::error::{Error, Result};
use crate::sparsity::{HostWeights, Mask, Masks};

/// Where the fraction is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Over all prunable weights together.
    Global,
    /// In every layer separately.
    Layer,
}

/// Masks after one round: `current` (all kept where a layer has none) with
/// `round(fraction * kept)` more weights pruned.
pub fn prune_round(weights: &HostWeights, current: &Masks, fraction: f64, scope: Scope) -> Result<Masks> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::InvalidConfig(format!("the fraction pruned per round must be in (0, 1), got {fraction}")));
    }
    let mut masks = complete_masks(weights, current)?;
    match scope {
        Scope::Global => {
            let mut layers: Vec<(&[f32], &mut Mask)> =
                weights.values().zip(masks.values_mut()).map(|((_, values), mask)| (values.as_slice(), mask)).collect();
            prune_smallest(&mut layers, fraction);
        }
        Scope::Layer => {
            for ((_, values), mask) in weights.values().zip(masks.values_mut()) {
                prune_smallest(&mut [(values.as_slice(), mask)], fraction);
            }
        }
    }
    Ok(masks)
}

/// `current` checked against the weights (same names, same shapes), with an all-kept mask for
/// every prunable weight it lacks.
pub fn complete_masks(weights: &HostWeights, current: &Masks) -> Result<Masks> {
    if weights.is_empty() {
        return Err(Error::InvalidModel("the network has no prunable (convolution or linear) weights".into()));
    }
    let mut masks = Masks::new();
    for (name, (shape, values)) in weights {
        let mask = match current.get(name) {
            Some(mask) if mask.keep.len() == values.len() && &mask.shape == shape => mask.clone(),
            Some(mask) => {
                return Err(Error::Shape(format!("mask {name} has shape {:?}, the weight {shape:?}", mask.shape)));
            }
            None => Mask { shape: shape.clone(), keep: vec![1; values.len()] },
        };
        masks.insert(name.clone(), mask);
    }
    if let Some(extra) = current.keys().find(|name| !weights.contains_key(*name)) {
        return Err(Error::Shape(format!("mask {extra} names no prunable weight of the network")));
    }
    Ok(masks)
}

/// Prunes the `round(fraction * kept)` kept weights of `layers` with the smallest magnitude;
/// ties at the threshold go in layer order, then position. Selection works on a copy of the
/// kept magnitudes only (4 bytes a weight: 80 MB for VGG-19's 20 M weights).
fn prune_smallest(layers: &mut [(&[f32], &mut Mask)], fraction: f64) {
    let mut magnitudes: Vec<f32> = layers
        .iter()
        .flat_map(|(values, mask)| values.iter().zip(&mask.keep).filter(|&(_, &k)| k == 1).map(|(v, _)| v.abs()))
        .collect();
    let count = (fraction * magnitudes.len() as f64).round() as usize;
    if count == 0 {
        return;
    }
    let (_, threshold, _) = magnitudes.select_nth_unstable_by(count - 1, f32::total_cmp);
    let threshold = *threshold;
    // Everything strictly below the threshold goes, then ties in order until `count` are gone.
    let below: usize = magnitudes.iter().filter(|m| m.total_cmp(&threshold).is_lt()).count();
    drop(magnitudes);
    let mut ties = count - below;
    for (values, mask) in layers.iter_mut() {
        for (value, keep) in values.iter().zip(mask.keep.iter_mut()) {
            if *keep == 0 {
                continue;
            }
            match value.abs().total_cmp(&threshold) {
                std::cmp::Ordering::Less => *keep = 0,
                std::cmp::Ordering::Equal if ties > 0 => {
                    *keep = 0;
                    ties -= 1;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two layers of distinct magnitudes 1..=N (a permutation), so the weights pruned by each
    /// round are known exactly.
    fn weights() -> HostWeights {
        let a: Vec<f32> =
            (0..600).map(|i| ((i * 7919) % 600 + 1) as f32 * if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let b: Vec<f32> = (0..400).map(|i| ((i * 7907) % 400) as f32 + 600.5).collect();
        HostWeights::from([("a.weight".into(), (vec![20, 30], a)), ("b.weight".into(), (vec![400, 1], b))])
    }

    fn kept(masks: &Masks) -> usize {
        masks.values().map(|m| m.keep.iter().map(|&k| k as usize).sum::<usize>()).sum()
    }

    /// After n global rounds of 20%, the kept count is the repeated rounding of 0.8 x kept, so
    /// the sparsity is 1 - 0.8^n to within rounding; the smallest magnitudes go first (all of
    /// layer a's 1..=200 in round 1, layer b untouched until a's weights are exhausted).
    #[test]
    fn global_rounds_reach_one_minus_point_eight_to_the_n() {
        let w = weights();
        let mut masks = Masks::new();
        let mut expected_kept = 1000usize;
        for n in 1..=7 {
            masks = prune_round(&w, &masks, 0.2, Scope::Global).unwrap();
            expected_kept -= (0.2 * expected_kept as f64).round() as usize;
            assert_eq!(kept(&masks), expected_kept, "round {n}");
            let sparsity = 1.0 - kept(&masks) as f64 / 1000.0;
            assert!((sparsity - (1.0 - 0.8f64.powi(n))).abs() < 2e-3, "round {n}: {sparsity}");
        }
        let first = prune_round(&w, &Masks::new(), 0.2, Scope::Global).unwrap();
        let (_, a) = &w["a.weight"];
        for (i, v) in a.iter().enumerate() {
            assert_eq!(first["a.weight"].keep[i] == 0, v.abs() <= 200.0, "weight {v}");
        }
        assert!(first["b.weight"].keep.iter().all(|&k| k == 1));
    }

    /// Layer-wise: every layer loses its own 20%.
    #[test]
    fn layer_rounds_take_the_fraction_in_every_layer() {
        let masks = prune_round(&weights(), &Masks::new(), 0.2, Scope::Layer).unwrap();
        let kept = |name: &str| masks[name].keep.iter().filter(|&&k| k == 1).count();
        assert_eq!((kept("a.weight"), kept("b.weight")), (480, 320));
    }

    /// Equal magnitudes: the threshold ties are pruned in layer order, then position, and
    /// weights pruned before are not counted again (4 kept of 6 -> round(0.5 x 4) = 2 more).
    #[test]
    fn ties_go_in_layer_and_position_order() {
        let w = HostWeights::from([
            ("a.weight".into(), (vec![3, 1], vec![1.0, -1.0, 1.0])),
            ("b.weight".into(), (vec![3, 1], vec![-1.0, 1.0, 1.0])),
        ]);
        let start = Masks::from([("a.weight".to_string(), Mask { shape: vec![3, 1], keep: vec![0, 1, 0] })]);
        let masks = prune_round(&w, &start, 0.5, Scope::Global).unwrap();
        assert_eq!(masks["a.weight"].keep, vec![0, 0, 0]);
        assert_eq!(masks["b.weight"].keep, vec![0, 1, 1]);
    }

    #[test]
    fn bad_masks_and_fractions_are_refused() {
        let w = weights();
        let wrong = Masks::from([("a.weight".to_string(), Mask { shape: vec![30, 20], keep: vec![1; 600] })]);
        assert!(prune_round(&w, &wrong, 0.2, Scope::Global).unwrap_err().to_string().contains("mask a.weight"));
        let stray = Masks::from([("c.weight".to_string(), Mask { shape: vec![1], keep: vec![1] })]);
        assert!(prune_round(&w, &stray, 0.2, Scope::Global).unwrap_err().to_string().contains("c.weight"));
        assert!(prune_round(&w, &Masks::new(), 1.0, Scope::Global).is_err());
        assert!(prune_round(&HostWeights::new(), &Masks::new(), 0.2, Scope::Global).is_err());
    }
}

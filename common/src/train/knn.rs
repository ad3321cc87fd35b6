//! Weighted k-nearest-neighbour classification of embeddings (Wu et al., "Unsupervised Feature
//! Learning via Non-Parametric Instance Discrimination", CVPR 2018, §3.4; the monitor of MoCo
//! and SEED): embeddings are L2-normalised, a query's k most cosine-similar bank entries vote
//! for their class with weight `exp(s / tau)`, and the class with the largest total wins.

use crate::error::{Error, Result};
use crate::models::Network;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kd_datasets::BatchSource;

/// k and the temperature of the vote.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnnConfig {
    /// Neighbours that vote (MoCo's monitor: 200).
    pub k: usize,
    /// Temperature of the weights `exp(s / tau)` (0.07).
    pub temperature: f32,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self { k: 200, temperature: 0.07 }
    }
}

/// The predicted class of each query from its neighbours: `similarities` and `neighbours` are
/// `[queries, k]` row-major (most similar first), `bank_labels[j]` the class of bank entry `j`.
pub fn vote(
    similarities: &[f32],
    neighbours: &[usize],
    k: usize,
    bank_labels: &[usize],
    classes: usize,
    temperature: f32,
) -> Vec<usize> {
    let mut predicted = Vec::with_capacity(similarities.len() / k.max(1));
    let mut scores = vec![0.0f64; classes];
    for (sims, idx) in similarities.chunks(k).zip(neighbours.chunks(k)) {
        scores.iter_mut().for_each(|s| *s = 0.0);
        for (&s, &j) in sims.iter().zip(idx) {
            scores[bank_labels[j]] += (s as f64 / temperature as f64).exp();
        }
        let best = scores.iter().enumerate().fold(0, |best, (c, &v)| if v > scores[best] { c } else { best });
        predicted.push(best);
    }
    predicted
}

fn embeddings(network: &Network, source: &dyn BatchSource, device: &Device) -> Result<(Tensor<2>, Vec<usize>)> {
    let mut parts = Vec::new();
    let mut labels = Vec::new();
    for batch in source.pass(0) {
        let batch = batch?;
        let x = super::upload::images(&batch, 0, device)?;
        parts.push(crate::contrastive::l2_normalize(network.forward_features(x)));
        labels.extend_from_slice(
            batch.labels().ok_or_else(|| Error::InvalidConfig("kNN validation needs labelled images".into()))?,
        );
    }
    if parts.is_empty() {
        return Err(Error::InvalidConfig("kNN validation got no images".into()));
    }
    Ok((Tensor::cat(parts, 0), labels))
}

/// Top-1 (%) of the weighted kNN classifier: `bank` images with their labels classify the
/// `queries` images, on `network`'s pooled embedding.
pub fn knn_top1(
    network: &Network,
    bank: &dyn BatchSource,
    queries: &dyn BatchSource,
    config: KnnConfig,
    device: &Device,
) -> Result<f64> {
    let network = network.valid();
    let classes = bank.num_classes();
    let (bank_z, bank_labels) = embeddings(&network, bank, device)?;
    let k = config.k.min(bank_labels.len());
    if k == 0 || classes == 0 {
        return Err(Error::InvalidConfig("kNN validation needs k >= 1 and labelled bank images".into()));
    }
    let bank_t = bank_z.transpose();
    let (mut correct, mut total) = (0usize, 0usize);
    for batch in queries.pass(0) {
        let batch = batch?;
        let labels = batch.labels().ok_or_else(|| Error::InvalidConfig("kNN queries need labels".into()))?.to_vec();
        let z = crate::contrastive::l2_normalize(network.forward_features(super::upload::images(&batch, 0, device)?));
        let (sims, idx) = z.matmul(bank_t.clone()).topk_with_indices(k, 1);
        let sims = sims.into_data().try_to_vec::<f32>().map_err(|e| Error::Shape(format!("{e:?}")))?;
        let idx: Vec<usize> = idx
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| Error::Shape(format!("{e:?}")))?
            .into_iter()
            .map(|i| i as usize)
            .collect();
        let predicted = vote(&sims, &idx, k, &bank_labels, classes, config.temperature);
        correct += predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
        total += labels.len();
    }
    Ok(100.0 * correct as f64 / total.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed: query 0's neighbours are (0.9, class 1), (0.8, class 0), (0.7, class 0);
    /// at tau = 0.1 the weights are e^9 = 8103 for class 1 and e^8 + e^7 = 2981 + 1097 = 4078
    /// for class 0, so class 1 wins although class 0 has more votes. At tau = 10 the weights
    /// are almost equal (e^0.09 vs e^0.08 + e^0.07) and the majority, class 0, wins.
    #[test]
    fn temperature_weights_the_vote() {
        let sims = [0.9, 0.8, 0.7];
        let neighbours = [2, 0, 1];
        let bank_labels = [0, 0, 1];
        assert_eq!(vote(&sims, &neighbours, 3, &bank_labels, 2, 0.1), vec![1]);
        assert_eq!(vote(&sims, &neighbours, 3, &bank_labels, 2, 10.0), vec![0]);
    }
}

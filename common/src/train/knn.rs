//! Weighted k-nearest-neighbour classification of embeddings (Wu et al., "Unsupervised Feature
//! Learning via Non-Parametric Instance Discrimination", CVPR 2018, §3.4; the monitor of MoCo
//! and SEED): embeddings are L2-normalised, a query's k most cosine-similar bank entries vote
//! for their class with weight `exp(s / tau)`, and the class with the largest total wins.

use super::features::{CachedFeatures, cache_features};
use crate::error::{Error, Result};
use crate::models::Network;
use burn::tensor::{Device, Tensor, TensorData};
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

/// Queries compared with the bank per matrix product (`[QUERY_CHUNK, bank]` similarities).
const QUERY_CHUNK: usize = 256;

/// The `k` largest of `row` with their positions, most similar first (ties: lower position
/// first). A linear-time selection (`select_nth_unstable_by`) keeps the `k`, then only those are
/// sorted: O(n + k log k) per query instead of sorting the whole bank.
pub fn nearest(row: &[f32], k: usize) -> Vec<(f32, usize)> {
    let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    let mut entries: Vec<(f32, usize)> = row.iter().copied().zip(0..).collect();
    let k = k.min(entries.len());
    if k == 0 {
        return Vec::new();
    }
    if k < entries.len() {
        entries.select_nth_unstable_by(k - 1, order);
        entries.truncate(k);
    }
    entries.sort_unstable_by(order);
    entries
}

/// `[rows, dim]` features as unit rows on `device`.
fn unit_rows(values: &[f32], rows: usize, dim: usize, device: &Device) -> Tensor<2> {
    crate::contrastive::l2_normalize(Tensor::from_data(TensorData::new(values.to_vec(), [rows, dim]), device))
}

/// Top-1 (%) of the weighted kNN classifier on features computed once ([`cache_features`]):
/// the `bank` rows with their labels classify the `queries` rows by cosine similarity.
pub fn knn_top1_features(
    bank: &CachedFeatures,
    queries: &CachedFeatures,
    config: KnnConfig,
    device: &Device,
) -> Result<f64> {
    if bank.dim != queries.dim {
        return Err(Error::Shape(format!("kNN bank features are {}-d, the queries {}-d", bank.dim, queries.dim)));
    }
    let k = config.k.min(bank.rows());
    if k == 0 || bank.classes == 0 || queries.rows() == 0 {
        return Err(Error::InvalidConfig("kNN validation needs k >= 1, labelled bank images and queries".into()));
    }
    let dim = bank.dim;
    let bank_t = unit_rows(&bank.values, bank.rows(), dim, device).transpose();
    let mut correct = 0usize;
    for (values, labels) in queries.values.chunks(QUERY_CHUNK * dim).zip(queries.labels.chunks(QUERY_CHUNK)) {
        let similarities = unit_rows(values, labels.len(), dim, device)
            .matmul(bank_t.clone())
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| Error::Shape(format!("{e:?}")))?;
        let (mut sims, mut idx) = (Vec::with_capacity(labels.len() * k), Vec::with_capacity(labels.len() * k));
        for row in similarities.chunks(bank.rows()) {
            for (s, j) in nearest(row, k) {
                sims.push(s);
                idx.push(j);
            }
        }
        let predicted = vote(&sims, &idx, k, &bank.labels, bank.classes, config.temperature);
        correct += predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    }
    Ok(100.0 * correct as f64 / queries.rows() as f64)
}

/// Top-1 (%) of the weighted kNN classifier: `bank` images with their labels classify the
/// `queries` images, on `network`'s pooled embedding (each image's features computed once).
pub fn knn_top1(
    network: &Network,
    bank: &dyn BatchSource,
    queries: &dyn BatchSource,
    config: KnnConfig,
    device: &Device,
) -> Result<f64> {
    let bank = cache_features(network, bank, device)?;
    let queries = cache_features(network, queries, device)?;
    knn_top1_features(&bank, &queries, config, device)
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

    /// Against a full sort (the independent reference): the kept entries are the k largest,
    /// most similar first, ties broken by position; k larger than the row keeps every entry.
    #[test]
    fn nearest_matches_a_full_sort() {
        let row: Vec<f32> = (0..500u32).map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5).collect();
        let mut sorted: Vec<(f32, usize)> = row.iter().copied().zip(0..).collect();
        sorted.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
        for k in [1, 5, 97, 200, 499, 500, 800] {
            assert_eq!(nearest(&row, k), sorted[..k.min(500)].to_vec(), "k {k}");
        }
        assert!(nearest(&row, 0).is_empty());
    }

    /// Hand-built 2-d features: bank (1, 0) and (0.9, 0.1) of class 0, (0, 1) and (0.1, 0.9)
    /// of class 1. With k 2, query (1, 0.05)'s two nearest are the class-0 points and (0.05, 1)'s
    /// the class-1 points, so the queries labelled 0, 1 and 0 (the last one wrongly) score 2 of 3.
    #[test]
    fn cached_features_are_classified_by_their_neighbours() {
        let bank = CachedFeatures {
            values: vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9],
            dim: 2,
            labels: vec![0, 0, 1, 1],
            classes: 2,
        };
        let queries =
            CachedFeatures { values: vec![1.0, 0.05, 0.05, 1.0, 0.05, 1.0], dim: 2, labels: vec![0, 1, 0], classes: 2 };
        let device = Device::flex();
        let top1 = knn_top1_features(&bank, &queries, KnnConfig { k: 2, temperature: 0.07 }, &device).unwrap();
        assert!((top1 - 200.0 / 3.0).abs() < 1e-9, "{top1}");
        let wrong_dim = CachedFeatures { values: vec![1.0, 0.0, 0.0], dim: 3, labels: vec![0], classes: 2 };
        assert!(knn_top1_features(&bank, &wrong_dim, KnnConfig::default(), &device).is_err());
    }
}

//! SSLD's data (PaddleClas SSLD; Cui et al., 2021, §3): the labeled set joined with unlabeled images, optionally only
//! the top-k images per class by teacher score (after Yalniz et al. 2019, "Billion-scale
//! semi-supervised learning": for every class c, rank all unlabeled images by the teacher's
//! probability of c and keep the k best; an image kept for several classes appears once).
//! Unlabeled images carry the teacher's arg-max as their label, which only the training
//! accuracy column reads: SSLD's loss has no ground-truth term.

use super::methods::ssld::UnlabeledSource;
use crate::shared::data::{eval_transform, unlabeled_holdout};
use crate::shared::teachers::Teachers;
use anyhow::{Context, Result, ensure};
use kd_common::checkpoint::InputSpec;
use kd_common::train::upload;
use kd_datasets::{BatchLoader, Dataset, LoaderConfig};
use serde_json::{Value, json};

/// The two training sets of SSLD.
pub struct SsldData {
    /// Labeled images (the fine-tune stage).
    pub labeled: Dataset,
    /// Labeled plus selected unlabeled images (the distillation stage).
    pub distill: Dataset,
    /// Counts for the summary.
    pub summary: Value,
}

/// Opens the unlabeled pool; for `TrainHoldout` the labeled set shrinks.
fn pool(train: &Dataset, source: &UnlabeledSource, seed: u64) -> Result<(Dataset, Dataset)> {
    match source {
        UnlabeledSource::TrainHoldout { count } => unlabeled_holdout(train, *count, seed),
        UnlabeledSource::Folder { path } => {
            let pool = kd_datasets::folder::open_unlabeled(path, train.channels())
                .with_context(|| format!("unlabeled folder {}", path.display()))?;
            Ok((train.clone(), pool))
        }
        UnlabeledSource::Dataset { dataset, split, data_dir } => {
            let pool = dataset
                .open(data_dir.as_deref(), *split, train.channels(), crate::shared::run::FOLDER_TEST_FRACTION)
                .with_context(|| format!("unlabeled dataset {dataset}"))?;
            ensure!(
                pool.channels() == train.channels(),
                "unlabeled {dataset} images have {} channel(s), the labeled ones {}",
                pool.channels(),
                train.channels()
            );
            Ok((train.clone(), pool))
        }
    }
}

/// Teacher ensemble probabilities `[n, C]` (row-major) of every image of `dataset`, placed by
/// each row's dataset position; images skipped as unreadable (`--skip-bad-images`) keep scores
/// of minus infinity and `false` in the second vector.
fn teacher_scores(
    teachers: &Teachers,
    dataset: &Dataset,
    input: &InputSpec,
    workers: usize,
    device: &burn::tensor::Device,
) -> Result<(Vec<f32>, Vec<bool>)> {
    let config = LoaderConfig::new(256, false, false, workers, 0);
    let loader = BatchLoader::new(dataset.clone(), eval_transform(input), config)?;
    let bar = kd_common::progress::bar(loader.batches_per_epoch() as u64, "scoring unlabeled images");
    let classes = teachers.num_classes();
    let mut scores = vec![f32::NEG_INFINITY; dataset.len() * classes];
    let mut readable = vec![false; dataset.len()];
    for batch in loader.epoch(0) {
        let batch = batch?;
        let probs = teachers.ensemble(upload::images(&batch, 0, device)?, 1.0, false).probs;
        let probs =
            probs.into_data().try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("reading teacher output: {e:?}"))?;
        for (&i, row) in batch.indices.iter().zip(probs.chunks_exact(classes)) {
            scores[i * classes..(i + 1) * classes].copy_from_slice(row);
            readable[i] = true;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((scores, readable))
}

/// For every class, the `k` images with the highest probability of that class (sorted, unique).
pub fn top_k_per_class(scores: &[f32], classes: usize, k: usize) -> Vec<usize> {
    let n = scores.len() / classes;
    let mut chosen = vec![false; n];
    let mut order: Vec<usize> = (0..n).collect();
    for c in 0..classes {
        // Highest score first; ties by index for determinism.
        order.sort_by(|&a, &b| scores[b * classes + c].total_cmp(&scores[a * classes + c]).then(a.cmp(&b)));
        for &i in order.iter().take(k) {
            chosen[i] = true;
        }
    }
    (0..n).filter(|&i| chosen[i]).collect()
}

/// Builds SSLD's data from the training split and the configured unlabeled source.
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    train: &Dataset,
    source: Option<&UnlabeledSource>,
    select_per_class: Option<usize>,
    teachers: &Teachers,
    input: &InputSpec,
    workers: usize,
    seed: u64,
    device: &burn::tensor::Device,
) -> Result<SsldData> {
    let Some(source) = source else {
        ensure!(select_per_class.is_none(), "--select-per-class needs --unlabeled");
        return Ok(SsldData {
            labeled: train.clone(),
            distill: train.clone(),
            summary: json!({"labeled": train.len(), "unlabeled_pool": 0, "unlabeled_used": 0}),
        });
    };
    let (labeled, pool) = pool(train, source, seed)?;
    let classes = train.num_classes();
    let (scores, readable) = teacher_scores(teachers, &pool, input, workers, device)?;
    let mut selected: Vec<usize> = match select_per_class {
        Some(k) => top_k_per_class(&scores, classes, k),
        None => (0..pool.len()).collect(),
    };
    selected.retain(|&i| readable[i]);
    ensure!(!selected.is_empty(), "no unlabeled image was selected");
    let pseudo: Vec<usize> = selected
        .iter()
        .map(|&i| {
            let row = &scores[i * classes..(i + 1) * classes];
            (0..classes).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(0)
        })
        .collect();
    let mut per_class = vec![0usize; classes];
    for &c in &pseudo {
        per_class[c] += 1;
    }
    let unlabeled =
        pool.subset(&selected, &format!("{}[selected]", pool.split)).relabel(&pseudo, train.classes.clone())?;
    let distill = labeled.join(&unlabeled, &format!("{}+unlabeled", labeled.split))?;
    tracing::info!("SSLD: {} labeled + {} of {} unlabeled images", labeled.len(), unlabeled.len(), pool.len());
    let summary = json!({
        "labeled": labeled.len(),
        "unlabeled_pool": pool.len(),
        "unlabeled_used": unlabeled.len(),
        "unlabeled_per_teacher_class": per_class,
    });
    Ok(SsldData { labeled, distill, summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores of 5 images over 2 classes; k = 2 keeps images 0, 1 (class 0) and 3, 4 (class 1).
    #[test]
    fn top_k_per_class_keeps_the_best_of_every_class() {
        let scores = [0.9, 0.1, 0.8, 0.2, 0.5, 0.5, 0.3, 0.7, 0.1, 0.9];
        assert_eq!(top_k_per_class(&scores, 2, 2), vec![0, 1, 3, 4]);
        assert_eq!(top_k_per_class(&scores, 2, 1), vec![0, 4]);
        // An image best for both classes is kept once.
        assert_eq!(top_k_per_class(&[0.6, 0.6, 0.1, 0.1], 2, 1), vec![0]);
    }
}

//! `kd-pack-labels stats` (entropy, mass outside top-K, agreement with the dataset's labels,
//! bytes per crop) and `verify` (every chunk read, checksums and schema checked).

use anyhow::{Context, Result, ensure};
use kd_datasets::soft_labels::{LabelType, RegionLabels};
use kd_datasets::{DatasetKind, Split};
use std::path::Path;

/// Mean entropy (nats) of a distribution list.
fn entropy(p: &[f32]) -> f64 {
    p.iter().filter(|&&v| v > 0.0).map(|&v| -(v as f64) * (v as f64).ln()).sum()
}

pub fn stats(path: &Path, data_dir: Option<&Path>) -> Result<()> {
    let labels = RegionLabels::open(path)?;
    let meta = &labels.meta;
    let kind: Option<DatasetKind> = meta.dataset.name.parse().ok();
    let dataset = match kind {
        Some(kind) => Some(kind.open(data_dir, Split::Train, 1, crate::shared::run::FOLDER_TEST_FRACTION)?),
        None => None,
    };
    if let Some(dataset) = &dataset {
        let identity = dataset.identity();
        ensure!(
            identity.count == meta.dataset.count && identity.list_hash == meta.dataset.list_hash,
            "{} was packed for {} {} ({} images, list hash {}), but the dataset read from {} has {} images (list hash {}); pass the --data-dir it was packed from",
            path.display(),
            meta.dataset.name,
            meta.dataset.split,
            meta.dataset.count,
            &meta.dataset.list_hash[..12.min(meta.dataset.list_hash.len())],
            data_dir.map_or_else(|| "the standard location".to_string(), |d| d.display().to_string()),
            identity.count,
            &identity.list_hash[..12.min(identity.list_hash.len())],
        );
        ensure!(
            dataset.num_classes() == meta.num_classes,
            "{} has {} classes, the dataset {}",
            path.display(),
            meta.num_classes,
            dataset.num_classes()
        );
    }
    let classes = meta.num_classes;
    let (mut entropy_sum, mut outside, mut crops) = (0.0f64, 0.0f64, 0usize);
    let mut agree = vec![(0u64, 0u64); classes];
    let mut q = Vec::with_capacity(classes);
    for image in 0..meta.num_images {
        let label = dataset.as_ref().map(|d| d.label(meta.image_offset + image));
        for crop in 0..meta.crops_per_image {
            labels.distribution_into(image, crop, &mut q);
            entropy_sum += entropy(&q);
            let (indices, probs) = labels.raw(image, crop);
            let kept: f64 = match meta.compression.label_type {
                LabelType::Hard | LabelType::Full => 1.0,
                _ => probs.iter().map(|&r| meta.compression.encoding.decode(r) as f64).sum(),
            };
            outside += (1.0 - kept).max(0.0);
            if let Some(label) = label {
                let top = if indices.is_empty() { kd_common::metrics::argmax(&q) } else { indices[0] as usize };
                agree[label].0 += (top == label) as u64;
                agree[label].1 += 1;
            }
            crops += 1;
        }
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let per_class: Vec<Option<f64>> =
        agree.iter().map(|&(a, n)| (n > 0).then(|| 100.0 * a as f64 / n as f64)).collect();
    let overall = agree.iter().map(|a| a.0).sum::<u64>() as f64 / agree.iter().map(|a| a.1).sum::<u64>().max(1) as f64;
    let output = serde_json::json!({
        "file": path,
        "images": meta.num_images,
        "crops_per_image": meta.crops_per_image,
        "label_type": meta.compression.label_type.name(),
        "top_k": meta.k_indices(),
        "prob_encoding": meta.compression.encoding.name(),
        "geometry": meta.geometry,
        "mean_entropy_nats": entropy_sum / crops.max(1) as f64,
        "mean_mass_outside_top_k": outside / crops.max(1) as f64,
        "teacher_label_agreement": dataset.as_ref().map(|_| 100.0 * overall),
        "teacher_label_agreement_per_class": dataset.as_ref().map(|_| per_class),
        "raw_bytes_per_crop": meta.raw_bytes_per_crop(),
        "file_bytes_per_crop": size as f64 / crops.max(1) as f64,
    });
    outln!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

pub fn verify(path: &Path) -> Result<()> {
    let labels = RegionLabels::open(path).with_context(|| format!("verifying {}", path.display()))?;
    let meta = &labels.meta;
    let mut q = Vec::new();
    for image in 0..meta.num_images {
        for crop in 0..meta.crops_per_image {
            labels.distribution_into(image, crop, &mut q);
            let sum: f32 = q.iter().sum();
            ensure!(
                (sum - 1.0).abs() < 1e-3 && q.iter().all(|v| v.is_finite() && *v >= 0.0),
                "{}: crop {crop} of image {image} decodes to an invalid distribution (sum {sum})",
                path.display()
            );
        }
    }
    outln!(
        "{}: ok ({} images x {} crops, {} classes, {} {}, checksums verified)",
        path.display(),
        meta.num_images,
        meta.crops_per_image,
        meta.num_classes,
        meta.compression.label_type,
        meta.compression.encoding.name()
    );
    Ok(())
}

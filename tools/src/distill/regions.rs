//! Loaders of FKD region crops from a label file, planned with FKD's epoch accounting
//! (Shen & Xing, FKD, ECCV 2022, §3.2): passes with `num_crops` crops per image (`ceil(batch / num_crops)` images per
//! batch, so a batch still holds about `batch` crops, and each pass counts as `num_crops`
//! epochs), then single-crop epochs at the end.

use super::crops::RegionCrops;
use crate::shared::data::{Splits, eval_transform};
use anyhow::{Context, Result};
use kd_common::checkpoint::InputSpec;
use kd_common::train::Phase;
use kd_datasets::soft_labels::{LabelMeta, LabelReader};
use kd_datasets::{BatchLoader, LoaderConfig, RegionSampling};
use std::path::Path;
use std::sync::Arc;

/// The loaders of one region-label run.
pub struct RegionLoaders {
    /// `(loader, passes, epochs per pass)` in training order.
    pub phases: Vec<(BatchLoader, usize, usize)>,
    /// The label file's metadata.
    pub meta: LabelMeta,
}

impl RegionLoaders {
    /// The phases for `kd_common::train::fit_phases`.
    pub fn phases(&self) -> Vec<Phase<'_>> {
        self.phases
            .iter()
            .map(|(loader, passes, epochs_per_pass)| Phase {
                source: loader,
                passes: *passes,
                epochs_per_pass: *epochs_per_pass,
            })
            .collect()
    }
}

/// Opens `path`, checks it was packed for `splits.full_train`, and builds the loaders of
/// `epochs` epochs at `batch_size` crops per step.
#[allow(clippy::too_many_arguments)] // the run's loader settings, spelled out
pub fn region_loaders(
    path: &Path,
    crops: &RegionCrops,
    splits: &Splits,
    input: &InputSpec,
    epochs: usize,
    batch_size: usize,
    workers: usize,
    seed: u64,
) -> Result<RegionLoaders> {
    let reader = LabelReader::open(path, crops.memory_budget_mib << 20)
        .with_context(|| format!("opening label file {}", path.display()))?;
    reader.check_matches(path, &splits.full_train.identity(), splits.train.num_classes())?;
    let meta = reader.meta().clone();
    let reader = Arc::new(reader);
    let (passes, single) = crops.plan(epochs);
    let mut phases = Vec::new();
    let mut add =
        |crops_per_visit: usize, images_per_batch: usize, count: usize, epochs_per_pass: usize| -> Result<()> {
            if count == 0 {
                return Ok(());
            }
            let sampling =
                RegionSampling::new(reader.clone(), crops_per_visit, splits.train_positions.clone(), &splits.train)
                    .with_context(|| format!("label file {}", path.display()))?;
            let config = LoaderConfig::new(images_per_batch, true, true, workers, seed);
            phases.push((
                BatchLoader::with_regions(splits.train.clone(), eval_transform(input), config, sampling)?,
                count,
                epochs_per_pass,
            ));
            Ok(())
        };
    add(crops.num_crops, batch_size.div_ceil(crops.num_crops), passes, crops.num_crops)?;
    add(1, batch_size, single, 1)?;
    tracing::info!(
        "{}: {} crops per image stored; {passes} pass(es) with {} crops per image ({} epochs) then {single} single-crop epoch(s)",
        path.display(),
        meta.crops_per_image,
        crops.num_crops,
        passes * crops.num_crops
    );
    Ok(RegionLoaders { phases, meta })
}

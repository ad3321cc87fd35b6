//! FKD's multi-crop sampling and epoch accounting (Shen & Xing, FKD, ECCV 2022, §3.2), shared by
//! the methods that train from a region-label file (FKD, MEAL V2 with packed labels).

use super::methods::set_if;

/// FKD multi-crop sampling and epoch accounting.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionCrops {
    /// Stored crops drawn per image visit; a pass counts as this many epochs.
    pub num_crops: usize,
    /// Epochs at the end trained with one crop per image (FKD: `num_crops`).
    pub final_single_crop_epochs: usize,
    /// Label files up to this size are read into memory, larger ones chunk by chunk.
    pub memory_budget_mib: u64,
}

/// Multi-crop flags of the region-label methods.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CropArgs {
    /// Stored crops drawn per image visit (FKD: 4); a pass counts as this many epochs.
    #[arg(long)]
    pub num_crops: Option<usize>,
    /// Final epochs trained with one crop per image (FKD: num_crops).
    #[arg(long)]
    pub final_single_crop_epochs: Option<usize>,
    /// Label files up to this many MiB are read into memory, larger ones chunk by chunk.
    #[arg(long)]
    pub label_memory_mib: Option<u64>,
}

impl RegionCrops {
    /// The preset's crops: the quick preset's 5 epochs are one 4-crop pass (4 epochs) and one
    /// single-crop epoch; the converged and full presets end with FKD's 4 single-crop epochs.
    pub fn defaults(quick: bool) -> Self {
        Self { num_crops: 4, final_single_crop_epochs: if quick { 1 } else { 4 }, memory_budget_mib: 2048 }
    }

    /// Overrides the fields whose flags were given.
    pub fn apply(&mut self, flags: &CropArgs) {
        set_if(&mut self.num_crops, &flags.num_crops);
        set_if(&mut self.final_single_crop_epochs, &flags.final_single_crop_epochs);
        set_if(&mut self.memory_budget_mib, &flags.label_memory_mib);
    }

    /// `(multi-crop passes, single-crop epochs)` for `epochs` epochs: as many passes of
    /// `num_crops` epochs as fit before the final single-crop epochs; what is left over is
    /// trained with single crops too, so the total is exactly `epochs`.
    pub fn plan(&self, epochs: usize) -> (usize, usize) {
        let multi = epochs.saturating_sub(self.final_single_crop_epochs) / self.num_crops;
        (multi, epochs - multi * self.num_crops)
    }

    /// Checks the counts against the run's epochs.
    pub fn validate(&self, epochs: usize) -> Result<(), String> {
        if self.num_crops == 0 {
            return Err("--num-crops must be at least 1".into());
        }
        if self.final_single_crop_epochs > epochs {
            return Err(format!(
                "{} final single-crop epochs exceed the {epochs} epochs",
                self.final_single_crop_epochs
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FKD accounting: `--epochs 300 --num_crops 4` with 4 final single-crop epochs is 74
    /// passes (296 epochs) + 4 single-crop epochs; 5 epochs with 1 final gives 1 pass + 1.
    #[test]
    fn region_plan_counts_passes_as_num_crops_epochs() {
        let crops = |m, f| RegionCrops { num_crops: m, final_single_crop_epochs: f, memory_budget_mib: 1 };
        assert_eq!(crops(4, 4).plan(300), (74, 4));
        assert_eq!(crops(4, 1).plan(5), (1, 1));
        assert_eq!(crops(4, 0).plan(6), (1, 2), "leftover epochs run single-crop");
        assert_eq!(crops(1, 0).plan(3), (3, 0));
        assert_eq!(crops(8, 2).plan(5), (0, 5));
    }
}

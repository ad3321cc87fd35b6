//! Resume state of a training run, kept in `<out>/state/`: the model and optimizer of the last
//! finished epoch (burnpack, which keeps parameter ids so optimizer momentum survives) and
//! `progress.json`, written last, which names that epoch and the run's configuration hash.
//! A kill at any point leaves either the previous epoch's complete state or the new one.

use crate::atomic;
use crate::error::{Error, Result};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use std::path::{Path, PathBuf};

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochRow {
    /// 1-based epoch.
    pub epoch: usize,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training top-1 (%), on augmented images.
    pub train_top1: f64,
    /// Validation NLL (empty without validation).
    pub val_loss: Option<f64>,
    /// Validation top-1 (%).
    pub val_top1: Option<f64>,
    /// Validation top-5 (%).
    pub val_top5: Option<f64>,
    /// Training images per second (validation excluded).
    pub images_per_s: f64,
    /// Wall-clock seconds of the epoch, validation included.
    pub seconds: f64,
    /// Extra per-method columns (for example agreement with the teacher).
    #[serde(default)]
    pub extra: Vec<(String, f64)>,
}

/// `progress.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Hash of the resolved configuration of the run.
    pub run_hash: String,
    /// Epochs finished.
    pub epochs_done: usize,
    /// Optimizer steps taken.
    pub steps_done: usize,
    /// Metrics of the finished epochs.
    pub rows: Vec<EpochRow>,
}

/// The state directory of an output directory.
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// `<out>/state`.
    pub fn new(out_dir: &Path) -> Self {
        Self { dir: out_dir.join("state") }
    }

    fn model_path(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("model-epoch{epoch}.bpk"))
    }

    fn optim_path(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("optim-epoch{epoch}.bpk"))
    }

    fn progress_path(&self) -> PathBuf {
        self.dir.join("progress.json")
    }

    /// The saved progress, if any; an error if it belongs to another configuration.
    pub fn load_progress(&self, run_hash: &str) -> Result<Option<Progress>> {
        let path = self.progress_path();
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let progress: Progress =
            serde_json::from_str(&text).map_err(|e| Error::Parse { path: path.clone(), message: e.to_string() })?;
        if progress.run_hash != run_hash {
            return Err(Error::InvalidConfig(format!(
                "{} holds a run with another configuration (hash {} vs {run_hash}); use another --out or delete that directory",
                self.dir.display(),
                progress.run_hash
            )));
        }
        Ok(Some(progress))
    }

    /// Restores the model and optimizer saved with `progress`.
    pub fn restore<M: Module>(
        &self,
        model: M,
        optim: ModuleOptimizer,
        progress: &Progress,
    ) -> Result<(M, ModuleOptimizer)> {
        let epoch = progress.epochs_done;
        let (model_path, optim_path) = (self.model_path(epoch), self.optim_path(epoch));
        let model = model
            .try_load_file(&model_path)
            .map_err(|e| Error::Checkpoint { path: model_path.clone(), message: e.to_string() })?;
        let optim =
            optim.load(&optim_path).map_err(|e| Error::Checkpoint { path: optim_path, message: e.to_string() })?;
        Ok((model, optim))
    }

    /// Saves the state after an epoch, then removes the previous epoch's files.
    pub fn save<M: Module>(&self, model: &M, optim: &ModuleOptimizer, progress: &Progress) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let epoch = progress.epochs_done;
        let record_error =
            |path: &Path, e: burn::store::RecordError| Error::Checkpoint { path: path.into(), message: e.to_string() };
        let model_path = self.model_path(epoch);
        let bytes = model.clone().into_record().into_bytes().map_err(|e| record_error(&model_path, e))?;
        atomic::write_bytes(&model_path, &bytes)?;
        let optim_path = self.optim_path(epoch);
        let bytes = optim.into_bytes().map_err(|e| record_error(&optim_path, e))?;
        atomic::write_bytes(&optim_path, &bytes)?;
        atomic::write_json(&self.progress_path(), progress)?;
        // Older epochs' files, and temporary files of a write that a kill interrupted.
        let keep = [self.model_path(epoch), self.optim_path(epoch), self.progress_path()];
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
                if !keep.contains(&path) {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        Ok(())
    }
}

/// Writes `metrics.csv` from the rows (atomically, so a resumed run's file stays consistent).
pub fn write_metrics_csv(path: &Path, rows: &[EpochRow]) -> Result<()> {
    let extra_names: Vec<String> =
        rows.first().map(|r| r.extra.iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default();
    let mut text = String::from("epoch,lr,train_loss,train_top1,val_loss,val_top1,val_top5,images_per_s,seconds");
    for name in &extra_names {
        text.push(',');
        text.push_str(name);
    }
    text.push('\n');
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
    for r in rows {
        text.push_str(&format!(
            "{},{:.6},{:.5},{:.3},{},{},{},{:.1},{:.1}",
            r.epoch,
            r.lr,
            r.train_loss,
            r.train_top1,
            opt(r.val_loss),
            opt(r.val_top1),
            opt(r.val_top5),
            r.images_per_s,
            r.seconds
        ));
        for (_, value) in &r.extra {
            text.push_str(&format!(",{value:.4}"));
        }
        text.push('\n');
    }
    atomic::write_bytes(path, text.as_bytes())
}

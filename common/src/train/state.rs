//! Resume state of a training run, kept in `<out>/state/`: the model and optimizer after the
//! last finished pass (burnpack, which keeps parameter ids so optimizer momentum survives), the
//! objective's own state (queues, masks, momentum encoders) as named blobs, and
//! `progress.json`, written last, which names that pass and the run's hash. A kill at any point
//! leaves either the previous pass's complete state or the new one.
//!
//! `progress.json` written by kdkit 0.1 before passes were told apart from epochs
//! (`epochs_done`, fixed metric columns) is migrated on read.

use crate::atomic;
use crate::error::{Error, Result};
use crate::train::objective::ObjectiveState;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One row of `metrics.csv`: one pass over the training data.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PassRow {
    /// 1-based pass.
    pub pass: usize,
    /// Epochs of the schedule reached at the end of the pass (an FKD pass with m crops per
    /// image counts as m epochs; otherwise the pass number).
    pub epoch: usize,
    /// Learning rate at the end of the pass.
    pub lr: f64,
    /// Mean training loss per row.
    pub train_loss: f64,
    /// Training top-1 (%) on augmented rows, when the objective has logits and the batches
    /// labels.
    pub train_top1: Option<f64>,
    /// The objective's own metrics (`train_<name>` columns), means per row.
    #[serde(default)]
    pub train_metrics: Vec<(String, f64)>,
    /// Validation values (`val_top1`, `val_knn_top1`, ...).
    #[serde(default)]
    pub val: Vec<(String, f64)>,
    /// Training rows (images or crops) of the pass (0 in files older than this field).
    #[serde(default)]
    pub rows: usize,
    /// Training rows (images or crops) per second, validation excluded.
    pub images_per_s: f64,
    /// Wall-clock seconds of the pass, validation included.
    pub seconds: f64,
}

impl PassRow {
    /// A validation value by name.
    pub fn val(&self, name: &str) -> Option<f64> {
        self.val.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// `progress.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Hash of the run (configuration, inputs, objective identity).
    pub run_hash: String,
    /// Passes finished.
    pub passes_done: usize,
    /// Optimizer steps taken.
    pub steps_done: usize,
    /// Metrics of the finished passes.
    pub rows: Vec<PassRow>,
    /// Names of the objective's state blobs saved with the pass.
    #[serde(default)]
    pub objective_state: Vec<String>,
}

impl Progress {
    /// Parses `progress.json`, migrating the 0.1 layout.
    pub fn from_json(mut value: Value) -> std::result::Result<Self, String> {
        if let Some(object) = value.as_object_mut()
            && let Some(epochs) = object.remove("epochs_done")
        {
            object.insert("passes_done".into(), epochs);
            if let Some(Value::Array(rows)) = object.get_mut("rows") {
                for (i, row) in rows.iter_mut().enumerate() {
                    *row = migrate_row(row, i + 1);
                }
            }
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

/// A 0.1 metrics row (`val_loss`, `val_top1`, `val_top5` fields and `extra` pairs) as a
/// [`PassRow`] value.
fn migrate_row(row: &Value, pass: usize) -> Value {
    let mut val = Vec::new();
    for name in ["val_loss", "val_top1", "val_top5"] {
        if let Some(v) = row.get(name).and_then(Value::as_f64) {
            val.push(serde_json::json!([name, v]));
        }
    }
    if let Some(Value::Array(extra)) = row.get("extra") {
        val.extend(extra.iter().cloned());
    }
    serde_json::json!({
        "pass": pass,
        "epoch": row.get("epoch").cloned().unwrap_or(Value::from(pass)),
        "lr": row.get("lr").cloned().unwrap_or(Value::from(0.0)),
        "train_loss": row.get("train_loss").cloned().unwrap_or(Value::from(0.0)),
        "train_top1": row.get("train_top1").cloned().unwrap_or(Value::Null),
        "train_metrics": [],
        "val": val,
        "images_per_s": row.get("images_per_s").cloned().unwrap_or(Value::from(0.0)),
        "seconds": row.get("seconds").cloned().unwrap_or(Value::from(0.0)),
    })
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

    fn model_path(&self, pass: usize) -> PathBuf {
        self.dir.join(format!("model-pass{pass}.bpk"))
    }

    fn optim_path(&self, pass: usize) -> PathBuf {
        self.dir.join(format!("optim-pass{pass}.bpk"))
    }

    fn blob_path(&self, name: &str, pass: usize) -> PathBuf {
        self.dir.join(format!("objective-{name}-pass{pass}.bin"))
    }

    fn progress_path(&self) -> PathBuf {
        self.dir.join("progress.json")
    }

    /// The saved progress, if any; an error if it belongs to another run.
    pub fn load_progress(&self, run_hash: &str) -> Result<Option<Progress>> {
        let path = self.progress_path();
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let parse = |message: String| Error::Parse { path: path.clone(), message };
        let value: Value = serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?;
        let progress = Progress::from_json(value).map_err(parse)?;
        if progress.run_hash != run_hash {
            return Err(Error::InvalidConfig(format!(
                "{} holds a run with another configuration (hash {} vs {run_hash}); use another --out or delete that directory",
                self.dir.display(),
                progress.run_hash
            )));
        }
        Ok(Some(progress))
    }

    /// Restores the model, optimizer and objective state saved with `progress`.
    pub fn restore<M: Module>(
        &self,
        model: M,
        optim: ModuleOptimizer,
        progress: &Progress,
    ) -> Result<(M, ModuleOptimizer, ObjectiveState)> {
        let pass = progress.passes_done;
        // kdkit 0.1 named the files by epoch.
        let pick = |new: PathBuf, old: String| if new.exists() { new } else { self.dir.join(old) };
        let model_path = pick(self.model_path(pass), format!("model-epoch{pass}.bpk"));
        let optim_path = pick(self.optim_path(pass), format!("optim-epoch{pass}.bpk"));
        let model = model
            .try_load_file(&model_path)
            .map_err(|e| Error::Checkpoint { path: model_path.clone(), message: e.to_string() })?;
        let optim =
            optim.load(&optim_path).map_err(|e| Error::Checkpoint { path: optim_path, message: e.to_string() })?;
        let mut state = ObjectiveState::new();
        for name in &progress.objective_state {
            let path = self.blob_path(name, pass);
            state.insert(name.clone(), std::fs::read(&path).map_err(|e| Error::io(&path, e))?);
        }
        Ok((model, optim, state))
    }

    /// Saves the state after a pass (`progress.objective_state` is filled in here), then
    /// removes the previous pass's files.
    pub fn save<M: Module>(
        &self,
        model: &M,
        optim: &ModuleOptimizer,
        objective: &ObjectiveState,
        progress: &mut Progress,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let pass = progress.passes_done;
        let record_error =
            |path: &Path, e: burn::store::RecordError| Error::Checkpoint { path: path.into(), message: e.to_string() };
        let model_path = self.model_path(pass);
        let bytes = model.clone().into_record().into_bytes().map_err(|e| record_error(&model_path, e))?;
        atomic::write_bytes(&model_path, &bytes)?;
        let optim_path = self.optim_path(pass);
        let bytes = optim.into_bytes().map_err(|e| record_error(&optim_path, e))?;
        atomic::write_bytes(&optim_path, &bytes)?;
        let mut keep = vec![self.model_path(pass), self.optim_path(pass), self.progress_path()];
        progress.objective_state = Vec::new();
        for (name, bytes) in objective {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(Error::InvalidConfig(format!("objective state name `{name}` is not a plain file name")));
            }
            let path = self.blob_path(name, pass);
            atomic::write_bytes(&path, bytes)?;
            keep.push(path);
            progress.objective_state.push(name.clone());
        }
        atomic::write_json(&self.progress_path(), progress)?;
        // Older passes' files, and temporary files of a write that a kill interrupted.
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

/// Column names of `metrics.csv` for these rows: the fixed columns, then every objective
/// metric and validation value in the order they first appear.
fn columns(rows: &[PassRow]) -> (Vec<String>, Vec<String>) {
    let mut train = Vec::<String>::new();
    let mut val = Vec::<String>::new();
    for row in rows {
        for (name, _) in &row.train_metrics {
            if !train.contains(name) {
                train.push(name.clone());
            }
        }
        for (name, _) in &row.val {
            if !val.contains(name) {
                val.push(name.clone());
            }
        }
    }
    (train, val)
}

/// Writes `metrics.csv` from the rows (atomically, so a resumed run's file stays consistent):
/// `pass,epoch,lr,train_loss,train_top1,train_<metric>...,<validation>...,images_per_s,seconds`;
/// a value a row lacks is empty.
pub fn write_metrics_csv(path: &Path, rows: &[PassRow]) -> Result<()> {
    let (train, val) = columns(rows);
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = ["pass", "epoch", "lr", "train_loss", "train_top1"].map(String::from).to_vec();
    header.extend(train.iter().map(|n| format!("train_{n}")));
    header.extend(val.iter().cloned());
    header.extend(["images_per_s".to_string(), "seconds".to_string()]);
    let csv_error = |e: csv::Error| Error::io(path, std::io::Error::other(e.to_string()));
    writer.write_record(&header).map_err(csv_error)?;
    let lookup = |pairs: &[(String, f64)], name: &str| {
        pairs.iter().find(|(n, _)| n == name).map(|(_, v)| format!("{v:.4}")).unwrap_or_default()
    };
    for r in rows {
        let mut record = vec![
            r.pass.to_string(),
            r.epoch.to_string(),
            format!("{:.6}", r.lr),
            format!("{:.5}", r.train_loss),
            r.train_top1.map(|v| format!("{v:.3}")).unwrap_or_default(),
        ];
        record.extend(train.iter().map(|n| lookup(&r.train_metrics, n)));
        record.extend(val.iter().map(|n| lookup(&r.val, n)));
        record.extend([format!("{:.1}", r.images_per_s), format!("{:.1}", r.seconds)]);
        writer.write_record(&record).map_err(csv_error)?;
    }
    let bytes = writer.into_inner().map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))?;
    atomic::write_bytes(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The progress.json of a kdkit 0.1 run (`tests/fixtures/v1/progress.json`) still reads:
    /// epochs become passes.
    #[test]
    fn a_real_version_1_progress_file_is_migrated() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v1/progress.json");
        let value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let progress = Progress::from_json(value).unwrap();
        assert_eq!((progress.passes_done, progress.steps_done), (1, 468));
        let row = &progress.rows[0];
        assert_eq!((row.pass, row.epoch), (1, 1));
        assert!((row.train_top1.unwrap() - 72.048_611_111_111_11).abs() < 1e-9);
        assert!(row.val.is_empty(), "that run had no validation");
    }

    /// A 0.1 row with validation and an extra column: fixed validation fields become named
    /// values.
    #[test]
    fn old_progress_files_are_migrated() {
        let old = serde_json::json!({
            "run_hash": "abc", "epochs_done": 1, "steps_done": 429,
            "rows": [{"epoch": 1, "lr": 0.09, "train_loss": 0.61, "train_top1": 78.2, "val_loss": 0.41,
                      "val_top1": 85.5, "val_top5": 99.7, "images_per_s": 812.0, "seconds": 70.1,
                      "extra": [["val_agreement", 88.0]]}]
        });
        let progress = Progress::from_json(old).unwrap();
        assert_eq!(progress.passes_done, 1);
        let row = &progress.rows[0];
        assert_eq!((row.pass, row.epoch, row.train_top1), (1, 1, Some(78.2)));
        assert_eq!(row.val("val_top1"), Some(85.5));
        assert_eq!(row.val("val_agreement"), Some(88.0));
    }

    #[test]
    fn csv_has_a_column_per_metric_and_empty_cells_for_missing_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let row = |pass: usize, val: Vec<(String, f64)>| PassRow {
            pass,
            epoch: pass * 4,
            lr: 0.1,
            train_loss: 1.5,
            train_top1: None,
            train_metrics: vec![("infonce".into(), 2.0)],
            val,
            rows: 40,
            images_per_s: 10.0,
            seconds: 1.0,
        };
        write_metrics_csv(&path, &[row(1, vec![]), row(2, vec![("val_knn_top1".into(), 71.25)])]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "pass,epoch,lr,train_loss,train_top1,train_infonce,val_knn_top1,images_per_s,seconds");
        assert_eq!(lines[1], "1,4,0.100000,1.50000,,2.0000,,10.0,1.0");
        assert_eq!(lines[2], "2,8,0.100000,1.50000,,2.0000,71.2500,10.0,1.0");
    }
}

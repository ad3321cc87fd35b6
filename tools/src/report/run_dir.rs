//! Reads a `make` run directory: one sub-directory per run, named `<method>-s<seed>` for
//! students trained over several seeds and `<name>` for single runs (teachers, pruned teachers,
//! the MoCo teacher), each with the `eval.json` kd-eval printed, the checkpoint's sidecar
//! (`model.json`: training time, throughput, teachers, label file) and `metrics.csv` (one row
//! per pass).

use super::budget::Budget;
use anyhow::{Context, Result};
use kd_common::checkpoint::read_meta;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One evaluated run.
#[derive(Debug)]
pub struct RunRecord {
    /// Its directory.
    pub dir: PathBuf,
    /// The student seed (`-s<seed>`), if the directory names one.
    pub seed: Option<u64>,
    /// kd-eval's JSON.
    pub eval: Value,
    /// The resolved training configuration from the checkpoint's sidecar (null if unreadable).
    pub training: Value,
    /// The numbers the training run recorded in the sidecar (null if unreadable).
    pub trained: Value,
    /// Per-pass metrics: column name -> (epoch, value) points.
    pub curves: BTreeMap<String, Vec<(f64, f64)>>,
    /// Its training budget, its initial checkpoint's included.
    pub budget: Budget,
}

impl RunRecord {
    /// A number of kd-eval's JSON (`/`-separated pointer without the leading slash).
    pub fn eval_number(&self, key: &str) -> Option<f64> {
        self.eval.pointer(&format!("/{key}")).and_then(|v| v.as_f64())
    }

    /// A number the training run recorded in its sidecar.
    pub fn trained_number(&self, key: &str) -> Option<f64> {
        self.trained.get(key).and_then(|v| v.as_f64())
    }

    /// Checkpoints of the teachers this run was distilled from.
    pub fn teachers(&self) -> Vec<PathBuf> {
        let method = self.training.get("method");
        let listed = method.and_then(|m| m.get("teachers")).and_then(|t| t.as_array()).cloned().unwrap_or_default();
        let single = self.training.get("teacher").cloned().into_iter();
        listed.into_iter().chain(single).filter_map(|t| t.as_str().map(PathBuf::from)).collect()
    }

    /// The FKD label file this run trained on.
    pub fn label_file(&self) -> Option<PathBuf> {
        self.training.pointer("/method/labels").and_then(|l| l.as_str()).map(PathBuf::from)
    }

    /// Is this a frozen encoder (kNN / linear probe, no classifier)?
    pub fn is_encoder(&self) -> bool {
        self.eval.get("top1").is_none() && self.eval.get("knn_top1").is_some()
    }
}

/// The runs of one method (or one single run), in seed order.
#[derive(Debug)]
pub struct MethodRuns {
    /// The method's name (the directory name without `-s<seed>`).
    pub name: String,
    /// Its runs.
    pub runs: Vec<RunRecord>,
}

impl MethodRuns {
    /// `f` of every run, if every run has it.
    pub fn all(&self, f: impl Fn(&RunRecord) -> Option<f64>) -> Option<Vec<f64>> {
        self.runs.iter().map(f).collect()
    }

    /// The mean over runs of a per-pass column, per epoch present in every run.
    pub fn mean_curve(&self, column: &str) -> Vec<(f64, f64)> {
        let mut sums: BTreeMap<u64, (f64, usize)> = BTreeMap::new();
        for run in &self.runs {
            for &(epoch, value) in run.curves.get(column).map_or(&[][..], |c| c.as_slice()) {
                let entry = sums.entry((epoch * 1000.0).round() as u64).or_default();
                entry.0 += value;
                entry.1 += 1;
            }
        }
        sums.into_iter()
            .filter(|(_, (_, n))| *n == self.runs.len())
            .map(|(epoch, (sum, n))| (epoch as f64 / 1000.0, sum / n as f64))
            .collect()
    }
}

/// The seed of a directory name `<method>-s<seed>`.
fn split_seed(name: &str) -> (&str, Option<u64>) {
    if let Some((method, seed)) = name.rsplit_once("-s")
        && let Ok(seed) = seed.parse()
    {
        return (method, Some(seed));
    }
    (name, None)
}

/// Per-pass columns of a `metrics.csv` (epoch as x; empty cells skipped).
fn read_curves(path: &Path) -> Result<BTreeMap<String, Vec<(f64, f64)>>> {
    let mut curves = BTreeMap::new();
    if !path.exists() {
        return Ok(curves);
    }
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers().with_context(|| format!("reading {}", path.display()))?.clone();
    let epoch_column = headers.iter().position(|h| h == "epoch");
    for record in reader.records() {
        let record = record.with_context(|| format!("reading {}", path.display()))?;
        let Some(epoch) = epoch_column.and_then(|c| record.get(c)).and_then(|e| e.parse::<f64>().ok()) else {
            continue;
        };
        for (name, cell) in headers.iter().zip(record.iter()) {
            if let Ok(value) = cell.parse::<f64>() {
                curves.entry(name.to_string()).or_insert_with(Vec::new).push((epoch, value));
            }
        }
    }
    Ok(curves)
}

/// Every evaluated run under `dir`, grouped by method, methods in name order.
pub fn collect(dir: &Path) -> Result<Vec<MethodRuns>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading the run directory {}", dir.display()))?;
    let mut methods: BTreeMap<String, Vec<RunRecord>> = BTreeMap::new();
    for entry in entries {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        let eval_path = path.join("eval.json");
        if !eval_path.is_file() {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(&eval_path).with_context(|| format!("reading {}", eval_path.display()))?;
        let eval: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not kd-eval JSON", eval_path.display()))?;
        let checkpoint = eval.get("checkpoint").and_then(|c| c.as_str()).map(PathBuf::from);
        let meta =
            checkpoint.and_then(|c| read_meta(&c).ok()).or_else(|| read_meta(&path.join("model.safetensors")).ok());
        let (training, trained) = meta.map_or((Value::Null, Value::Null), |m| (m.training, m.metrics));
        let (method, seed) = split_seed(&name);
        let curves = read_curves(&path.join("metrics.csv"))?;
        let budget = Budget::of_run(&trained, &training);
        let run = RunRecord { dir: path, seed, eval, training, trained, curves, budget };
        methods.entry(method.to_string()).or_default().push(run);
    }
    Ok(methods
        .into_iter()
        .map(|(name, mut runs)| {
            runs.sort_by_key(|r| r.seed);
            MethodRuns { name, runs }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_split_off_directory_names() {
        assert_eq!(split_seed("kd-s0"), ("kd", Some(0)));
        assert_eq!(split_seed("kd-pruned0.210-s12"), ("kd-pruned0.210", Some(12)));
        assert_eq!(split_seed("teacher-b"), ("teacher-b", None));
        assert_eq!(split_seed("moco-student-s1"), ("moco-student", Some(1)));
        assert_eq!(split_seed("seed-s2"), ("seed", Some(2)));
    }

    #[test]
    fn runs_are_grouped_with_their_curves() {
        let dir = tempfile::tempdir().unwrap();
        for (name, top1, curve) in [("kd-s0", 80.0, "80,81"), ("kd-s1", 82.0, "82,83"), ("teacher", 90.0, "89,90")] {
            let run = dir.path().join(name);
            std::fs::create_dir(&run).unwrap();
            std::fs::write(run.join("eval.json"), format!("{{\"top1\": {top1}}}")).unwrap();
            let (a, b) = curve.split_once(',').unwrap();
            std::fs::write(run.join("metrics.csv"), format!("pass,epoch,val_top1\n1,1,{a}\n2,2,{b}\n")).unwrap();
        }
        std::fs::create_dir(dir.path().join("not-evaluated")).unwrap();
        let methods = collect(dir.path()).unwrap();
        let names: Vec<&str> = methods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["kd", "teacher"]);
        assert_eq!(methods[0].all(|r| r.eval_number("top1")), Some(vec![80.0, 82.0]));
        // Mean over the two seeds per epoch: (80 + 82) / 2, (81 + 83) / 2.
        assert_eq!(methods[0].mean_curve("val_top1"), vec![(1.0, 81.0), (2.0, 82.0)]);
    }
}

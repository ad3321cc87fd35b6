//! A run's training budget: epochs, images (rows: images or crops) and seconds, its initial
//! checkpoint's training included, so that a student continued from another (MEAL V2 from the
//! baseline) is compared with its control on everything it was trained for.

use super::run_dir::MethodRuns;
use kd_common::checkpoint::read_meta;
use serde_json::Value;
use std::path::Path;

/// How many initial checkpoints are followed (a chain longer than this, or a cycle, stops).
const MAX_CHAIN: usize = 8;

/// Epochs, images and seconds of training (means, for a method over its runs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Budget {
    /// Epochs of the schedule, the initial checkpoints' included.
    pub epochs: Option<f64>,
    /// Of `epochs`, those of the initial checkpoints.
    pub inherited_epochs: f64,
    /// Training rows seen (absent when a checkpoint of the chain did not record them).
    pub images: Option<f64>,
    /// Training seconds (absent when a checkpoint of the chain did not record them).
    pub seconds: Option<f64>,
    /// An initial checkpoint of the chain that could not be read (moved, or a relative path
    /// read from another directory): the whole budget is then unknown.
    pub unreadable_init: Option<String>,
}

impl Budget {
    /// The budget of a run from its sidecar's `metrics` (`trained`) and resolved configuration
    /// (`training`), followed through `training.init` to the checkpoints it started from.
    pub fn of_run(trained: &Value, training: &Value) -> Self {
        let number = |metrics: &Value, key: &str| metrics.get(key).and_then(|v| v.as_f64());
        let mut budget = Self {
            epochs: number(trained, "epochs"),
            inherited_epochs: 0.0,
            images: number(trained, "train_images"),
            seconds: number(trained, "train_seconds"),
            unreadable_init: None,
        };
        let mut init = training.get("init").and_then(|i| i.as_str()).map(str::to_string);
        let mut seen = Vec::new();
        while let Some(path) = init.take() {
            if seen.len() == MAX_CHAIN || seen.contains(&path) {
                break;
            }
            let meta = match read_meta(Path::new(&path)) {
                Ok(meta) => meta,
                // `init` of a derived student names a rule ("random"), not a file: nothing to add.
                Err(_) if !path.ends_with(".safetensors") => break,
                Err(_) => {
                    return Self { epochs: None, images: None, seconds: None, unreadable_init: Some(path), ..budget };
                }
            };
            let inherited = ["epochs", "train_images", "train_seconds"].map(|key| number(&meta.metrics, key));
            // A checkpoint that records no training (a derived or imported network) adds
            // nothing; one that records part of it (an older sidecar) leaves the rest unknown.
            if inherited.iter().any(Option::is_some) {
                let add = |own: Option<f64>, more: Option<f64>| own.zip(more).map(|(a, b)| a + b);
                budget.inherited_epochs += inherited[0].unwrap_or(0.0);
                budget.epochs = add(budget.epochs, inherited[0]);
                budget.images = add(budget.images, inherited[1]);
                budget.seconds = add(budget.seconds, inherited[2]);
            }
            seen.push(path);
            init = meta.training.get("init").and_then(|i| i.as_str()).map(str::to_string);
        }
        budget
    }

    /// "10 epochs (5 of them before its initial checkpoint), 600000 images, 85 s".
    pub fn words(&self) -> String {
        if let Some(path) = &self.unreadable_init {
            return format!("unknown (its initial checkpoint {path} cannot be read)");
        }
        if self.epochs.is_none() && self.images.is_none() && self.seconds.is_none() {
            return "not recorded".into();
        }
        let mut parts = Vec::new();
        match self.epochs {
            Some(e) if self.inherited_epochs > 0.0 => parts
                .push(format!("{e:.0} epochs ({:.0} of them before its initial checkpoint)", self.inherited_epochs)),
            Some(e) => parts.push(format!("{e:.0} epochs")),
            None => parts.push("epochs not recorded".into()),
        }
        parts.push(self.images.map_or_else(|| "images not recorded".into(), |i| format!("{i:.0} images")));
        parts.push(self.seconds.map_or_else(|| "seconds not recorded".into(), |s| format!("{s:.0} s")));
        parts.join(", ")
    }
}

/// The mean budget over a method's runs (a part absent from any run is absent).
pub fn mean_budget(method: &MethodRuns) -> Budget {
    let n = method.runs.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Budget) -> Option<f64>| -> Option<f64> {
        method.runs.iter().map(|r| f(&r.budget)).sum::<Option<f64>>().map(|s| s / n)
    };
    Budget {
        epochs: mean(&|b| b.epochs),
        inherited_epochs: method.runs.iter().map(|r| r.budget.inherited_epochs).sum::<f64>() / n,
        images: mean(&|b| b.images),
        seconds: mean(&|b| b.seconds),
        unreadable_init: method.runs.iter().find_map(|r| r.budget.unreadable_init.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_without_an_initial_checkpoint_is_its_own_budget() {
        let budget =
            Budget::of_run(&json!({"epochs": 5, "train_images": 30000, "train_seconds": 12.4}), &json!({"init": null}));
        assert_eq!(
            budget,
            Budget {
                epochs: Some(5.0),
                inherited_epochs: 0.0,
                images: Some(30000.0),
                seconds: Some(12.4),
                unreadable_init: None
            }
        );
        assert_eq!(budget.words(), "5 epochs, 30000 images, 12 s");
        // A derived student's `init` is a rule, not a file; an older sidecar lacks images.
        let budget = Budget::of_run(&json!({"epochs": 5, "train_seconds": 3.0}), &json!({"init": "random"}));
        assert_eq!(budget.images, None);
        assert_eq!(budget.words(), "5 epochs, images not recorded, 3 s");
        assert_eq!(Budget::default().words(), "not recorded");
    }

    /// A checkpoint (tiny network) whose sidecar records `metrics` and starts from `init`.
    fn checkpoint(path: &Path, metrics: Value, init: Option<&Path>) {
        use kd_common::checkpoint::{self, CheckpointMeta, InputSpec};
        use kd_common::models::{Arch, ModelSpec};
        let spec = ModelSpec { width: 0.25, ..ModelSpec::new(Arch::SmallCnn, 1, 2) };
        let meta = CheckpointMeta {
            format_version: checkpoint::FORMAT_VERSION,
            model: spec.clone(),
            input: InputSpec { channels: 1, height: 8, width: 8, mean: vec![0.0], std: vec![1.0], crop_fraction: None },
            dataset: json!({}),
            classes: vec!["a".into(), "b".into()],
            training: json!({ "init": init }),
            metrics,
            weights_sha256: String::new(),
            written_by: "test".into(),
            pruning: None,
            imported_from: None,
            other: Default::default(),
        };
        checkpoint::save(&spec.init(&burn::tensor::Device::default()).unwrap(), &meta, path).unwrap();
    }

    /// baseline (5 epochs, 300 images, 10 s) <- continued (5, 300, 12): 10 epochs, 600 images,
    /// 22 s; a cycle (a checkpoint naming itself) is followed once.
    #[test]
    fn initial_checkpoints_add_their_training() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.safetensors");
        checkpoint(&base, json!({"epochs": 5, "train_images": 300, "train_seconds": 10.0}), None);
        let own = json!({"epochs": 5, "train_images": 300, "train_seconds": 12.0});
        let budget = Budget::of_run(&own, &json!({ "init": base }));
        assert_eq!(
            budget,
            Budget {
                epochs: Some(10.0),
                inherited_epochs: 5.0,
                images: Some(600.0),
                seconds: Some(22.0),
                unreadable_init: None
            }
        );
        assert_eq!(budget.words(), "10 epochs (5 of them before its initial checkpoint), 600 images, 22 s");
        let looped = dir.path().join("looped.safetensors");
        checkpoint(&looped, json!({"epochs": 1, "train_images": 10, "train_seconds": 1.0}), Some(&looped));
        let budget = Budget::of_run(&own, &json!({ "init": looped }));
        assert_eq!(budget.epochs, Some(6.0), "the cycle is cut: {budget:?}");
        // A derived network records no training: the run's own budget stands.
        let derived = dir.path().join("derived.safetensors");
        checkpoint(&derived, json!({}), None);
        assert_eq!(Budget::of_run(&own, &json!({ "init": derived })).seconds, Some(12.0));
        // A checkpoint that cannot be read (moved since) makes the budget unknown, not smaller.
        let moved = Budget::of_run(&own, &json!({ "init": "gone/model.safetensors" }));
        assert_eq!(moved.epochs, None);
        assert_eq!(moved.words(), "unknown (its initial checkpoint gone/model.safetensors cannot be read)");
    }
}

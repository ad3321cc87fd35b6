//! The training loop of kdkit: every trainer (pretraining, every distillation method, pruning,
//! MoCo and SEED, linear probes) runs through [`fit`] with its own [`Objective`].

use super::objective::{Objective, StepInfo};
use super::optimizer::OptimizerConfig;
use super::schedule::ScheduleConfig;
use super::state::{PassRow, Progress, StateDir, write_metrics_csv};
use super::validation::Validation;
use crate::device::ResolvedDevice;
use crate::error::{Error, Result};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use kd_datasets::BatchSource;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Instant;

/// Hyper-parameters of the loop shared by every trainer.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Epochs of the schedule (passes over the data, unless a phase counts a pass as several).
    pub epochs: usize,
    /// Rows (images, crops or feature vectors) per optimizer step.
    pub batch_size: usize,
    /// Optimizer.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Clip each parameter's gradient to this L2 norm.
    #[serde(default)]
    pub grad_clip_norm: Option<f32>,
}

impl TrainConfig {
    /// Checks what the loop cannot run with (before any data is read).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("the batch size must be at least 1".into());
        }
        if !(self.schedule.lr.is_finite() && self.schedule.lr > 0.0) {
            return bad(format!("the learning rate must be positive, got {}", self.schedule.lr));
        }
        if !(self.schedule.warmup_epochs.is_finite() && self.schedule.warmup_epochs >= 0.0) {
            return bad(format!("warm-up epochs must be >= 0, got {}", self.schedule.warmup_epochs));
        }
        if self.grad_clip_norm.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return bad("the gradient clipping norm must be positive".into());
        }
        self.optimizer.validate()
    }
}

/// A stretch of training on one source: `passes` passes, each counting as `epochs_per_pass`
/// epochs of the schedule. FKD's multi-crop passes count `num_crops` epochs each (one pass with
/// `m` crops per image takes as many optimizer steps as `m` single-crop epochs; Shen & Xing,
/// ECCV 2022, §3.2).
#[derive(Clone, Copy)]
pub struct Phase<'a> {
    /// The batches.
    pub source: &'a dyn BatchSource,
    /// Passes over the source.
    pub passes: usize,
    /// Epochs each pass counts as.
    pub epochs_per_pass: usize,
}

impl<'a> Phase<'a> {
    /// `epochs` passes of one epoch each.
    pub fn epochs(source: &'a dyn BatchSource, epochs: usize) -> Self {
        Self { source, passes: epochs, epochs_per_pass: 1 }
    }
}

/// Everything a run needs besides the model and the objective.
pub struct Run<'a> {
    /// Loop hyper-parameters.
    pub config: &'a TrainConfig,
    /// The data, in training order; their epochs add up to `config.epochs`.
    pub phases: Vec<Phase<'a>>,
    /// What is measured after every pass.
    pub validation: Validation<'a>,
    /// Where to compute.
    pub device: &'a ResolvedDevice,
    /// `metrics.csv` and `state/` go here.
    pub out_dir: &'a Path,
    /// Hash of everything that shapes the result (configuration, input files); the
    /// objective's [`Objective::identity`] is added to it.
    pub run_hash: &'a str,
}

/// The result of [`fit`].
pub struct FitOutcome<M> {
    /// The trained module (autodiff device; call `.valid()` for inference).
    pub model: M,
    /// One row per pass, resumed passes included.
    pub rows: Vec<PassRow>,
    /// The pass a killed run was resumed after, if any.
    pub resumed_after: Option<usize>,
}

/// How often (in steps) the loss is read back to check it is finite.
const CHECK_EVERY: usize = 10;

fn full_hash(run_hash: &str, identity: &serde_json::Value) -> String {
    if identity.is_null() {
        return run_hash.to_string();
    }
    let digest = Sha256::digest(format!("{run_hash}\n{identity}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Trains `model` with `objective` over the run's phases. Resumes from `<out>/state` when a run
/// with the same hash was interrupted; writes `<out>/metrics.csv` after every pass.
pub fn fit<M: Module, O: Objective<M>>(model: M, objective: &mut O, run: &Run) -> Result<FitOutcome<M>> {
    let config = run.config;
    config.validate()?;
    let planned: usize = run.phases.iter().map(|p| p.passes * p.epochs_per_pass).sum();
    if planned != config.epochs {
        return Err(Error::InvalidConfig(format!(
            "the training phases cover {planned} epochs, the configuration {}",
            config.epochs
        )));
    }
    // (source, epochs reached) per pass.
    let mut passes = Vec::new();
    let mut reached = 0;
    for phase in &run.phases {
        if phase.source.batches_per_pass() == 0 {
            return Err(Error::InvalidConfig("a training pass would have no batch (too few images?)".into()));
        }
        for _ in 0..phase.passes {
            reached += phase.epochs_per_pass;
            passes.push((phase.source, reached));
        }
    }
    let total_steps: usize = passes.iter().map(|(source, _)| source.batches_per_pass()).sum();
    let steps_per_epoch = (total_steps / config.epochs).max(1);
    let run_hash = full_hash(run.run_hash, &objective.identity());
    let state = StateDir::new(run.out_dir);
    let mut optim = config.optimizer.build(config.grad_clip_norm);
    let mut model = model;
    let mut progress = Progress {
        run_hash: run_hash.clone(),
        passes_done: 0,
        steps_done: 0,
        rows: Vec::new(),
        objective_state: vec![],
    };
    let mut resumed_after = None;
    if let Some(saved) = state.load_progress(&run_hash)? {
        let (m, o, objective_state) = state.restore(model, optim, &saved)?;
        (model, optim) = (m, o);
        objective.load_state(objective_state)?;
        let epoch = saved.rows.last().map_or(0, |r| r.epoch);
        tracing::info!(
            "resuming after pass {} of {} (epoch {epoch} of {})",
            saved.passes_done,
            passes.len(),
            config.epochs
        );
        resumed_after = Some(saved.passes_done);
        progress = saved;
    }
    let ad_device = run.device.device.clone().autodiff();
    let inner = ad_device.clone().inner();
    // Test hook: abort the process (as a kill would, without unwinding) right after this pass's
    // state is saved, so resume tests stop at a deterministic point.
    let abort_after_pass: Option<usize> = std::env::var("KD_ABORT_AFTER_PASS").ok().and_then(|v| v.parse().ok());
    let metrics_path = run.out_dir.join("metrics.csv");

    for pass in progress.passes_done..passes.len() {
        let (source, epochs_reached) = passes[pass];
        let pass_steps = source.batches_per_pass();
        let started = Instant::now();
        let bar = crate::progress::bar(
            pass_steps as u64,
            &format!("pass {}/{} (epoch {epochs_reached}/{})", pass + 1, passes.len(), config.epochs),
        );
        let mut loss_sum = Tensor::<1>::zeros([1], &inner);
        let mut correct_sum: Option<Tensor<1, Int>> = None;
        let mut metric_sums: Vec<(&'static str, Tensor<1>)> = Vec::new();
        let (mut rows_seen, mut labelled_rows, mut lr) = (0usize, 0usize, 0.0);
        let mut last_read = (0.0f64, 0usize);
        for (i, batch) in source.pass(pass as u64).enumerate() {
            let batch = batch?;
            let step = progress.steps_done + i;
            lr = config.schedule.lr_at(step, steps_per_epoch, total_steps);
            let info =
                StepInfo { step: step + 1, epoch: (step / steps_per_epoch).min(config.epochs - 1), total_steps, lr };
            objective.before_step(&info);
            let output = objective.step(&model, &batch, &ad_device)?;
            let n = batch.rows();
            let grads = GradientsParams::from_grads(output.loss.backward(), &model);
            model = optim.step(lr, model, grads);
            model = objective.after_step(model, &info)?;

            loss_sum = loss_sum + output.loss.detach().inner().mul_scalar(n as f32);
            for (name, value) in output.metrics {
                let value = value.detach().inner().mul_scalar(n as f32);
                match metric_sums.iter_mut().find(|(m, _)| *m == name) {
                    Some((_, sum)) => *sum = sum.clone() + value,
                    None => metric_sums.push((name, value)),
                }
            }
            if let (Some(logits), Some(labels)) = (output.logits, batch.labels()) {
                let host: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
                let labels = Tensor::<1, Int>::from_data(TensorData::new(host, [n]), &inner);
                let predicted = logits.detach().inner().argmax(1).reshape([n]);
                let correct = predicted.equal(labels).int().sum();
                correct_sum = Some(match correct_sum {
                    Some(sum) => sum + correct,
                    None => correct,
                });
                labelled_rows += n;
            }
            rows_seen += n;
            if (i + 1) % CHECK_EVERY == 0 || i + 1 == pass_steps {
                let total = loss_sum.clone().into_scalar::<f32>() as f64;
                if !total.is_finite() {
                    bar.abandon();
                    return Err(Error::Diverged { value: total as f32, pass: pass + 1, step: step + 1 });
                }
                let window = (total - last_read.0) / (rows_seen - last_read.1).max(1) as f64;
                bar.set_message(format!("loss {window:.4} lr {lr:.4}"));
                last_read = (total, rows_seen);
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let train_seconds = started.elapsed().as_secs_f64();
        let per_row = |sum: Tensor<1>| sum.into_scalar::<f32>() as f64 / rows_seen.max(1) as f64;
        let train_loss = per_row(loss_sum);
        let train_top1 = correct_sum.map(|c| 100.0 * c.into_scalar::<i64>() as f64 / labelled_rows.max(1) as f64);
        let train_metrics = metric_sums.into_iter().map(|(name, sum)| (name.to_string(), per_row(sum))).collect();
        let val = match (objective.network(&model), &run.validation) {
            (_, Validation::None) => Vec::new(),
            (Some(network), validation) => validation.run(network, &run.device.device)?,
            (None, _) => return Err(Error::InvalidConfig("this objective has no network to validate".into())),
        };
        progress.steps_done += pass_steps;
        progress.passes_done = pass + 1;
        let row = PassRow {
            pass: pass + 1,
            epoch: epochs_reached,
            lr,
            train_loss,
            train_top1,
            train_metrics,
            val,
            rows: rows_seen,
            images_per_s: rows_seen as f64 / train_seconds,
            seconds: started.elapsed().as_secs_f64(),
        };
        log_row(&row, passes.len(), config.epochs);
        progress.rows.push(row);
        state.save(&model, &optim, &objective.save_state()?, &mut progress)?;
        write_metrics_csv(&metrics_path, &progress.rows)?;
        if abort_after_pass == Some(pass + 1) {
            std::process::abort();
        }
    }
    Ok(FitOutcome { model, rows: progress.rows, resumed_after })
}

fn log_row(row: &PassRow, passes: usize, epochs: usize) {
    let mut text =
        format!("pass {}/{passes} (epoch {}/{epochs}): train loss {:.4}", row.pass, row.epoch, row.train_loss);
    if let Some(top1) = row.train_top1 {
        text.push_str(&format!(" top-1 {top1:.2}%"));
    }
    for (name, value) in row.train_metrics.iter().chain(&row.val) {
        text.push_str(&format!(", {name} {value:.4}"));
    }
    tracing::info!("{text} | {:.0} rows/s, {:.1} s", row.images_per_s, row.seconds);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::resolve;
    use crate::losses::cross_entropy_with_smoothing;
    use crate::models::Network;
    use crate::train::objective::{ObjectiveState, StepOutput};
    use crate::train::upload;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;
    use kd_datasets::{Batch, FeatureSource};

    /// A linear classifier on cached feature vectors: the linear probe's objective.
    struct Probe {
        steps_seen: usize,
        fail_in_pass: Option<usize>,
        passes_started: usize,
    }

    impl Objective<Linear> for Probe {
        fn step(&mut self, model: &Linear, batch: &Batch, device: &Device) -> Result<StepOutput> {
            let logits = model.forward(upload::features(batch, 0, device)?);
            let loss = cross_entropy_with_smoothing(logits.clone(), upload::labels(batch, device)?, 0.0);
            Ok(StepOutput {
                loss: loss.clone(),
                metrics: vec![("twice_loss", loss.mul_scalar(2.0))],
                logits: Some(logits),
            })
        }

        fn network<'a>(&self, _model: &'a Linear) -> Option<&'a Network> {
            None
        }

        fn after_step(&mut self, model: Linear, info: &StepInfo) -> Result<Linear> {
            self.steps_seen += 1;
            assert_eq!(info.step, self.steps_seen, "the hook sees every step in order");
            assert_eq!(info.epoch, (info.step - 1) / 4, "one pass of 4 steps is one epoch");
            // 4 rows per batch, 16 rows: 4 steps a pass; fail at the start of a chosen pass
            // (a simulated kill after the previous pass was saved).
            if (info.step - 1).is_multiple_of(4) {
                self.passes_started += 1;
                if self.fail_in_pass == Some(self.passes_started) {
                    return Err(Error::InvalidConfig("simulated kill".into()));
                }
            }
            Ok(model)
        }

        fn identity(&self) -> serde_json::Value {
            serde_json::json!({"probe": 1})
        }

        fn save_state(&self) -> Result<ObjectiveState> {
            Ok(ObjectiveState::from([("steps".to_string(), (self.steps_seen as u64).to_le_bytes().to_vec())]))
        }

        fn load_state(&mut self, state: ObjectiveState) -> Result<()> {
            let bytes: [u8; 8] = state["steps"].clone().try_into().expect("8 bytes");
            self.steps_seen = u64::from_le_bytes(bytes) as usize;
            self.passes_started = self.steps_seen / 4;
            Ok(())
        }
    }

    /// Two separable classes of 3-d features: class 0 near (+1, 0, 0), class 1 near (-1, 0, 0).
    fn features() -> FeatureSource {
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for i in 0..16 {
            let class = i % 2;
            let sign = if class == 0 { 1.0 } else { -1.0 };
            values.extend([sign * (1.0 + (i as f32) * 0.01), 0.1 * ((i * 7 % 5) as f32 - 2.0), 0.05 * (i % 3) as f32]);
            labels.push(class);
        }
        FeatureSource::new(values, 3, labels, 2, 4, true, 3).unwrap()
    }

    fn config(epochs: usize) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: 4,
            optimizer: super::super::OptimizerConfig::Sgd { momentum: 0.9, nesterov: false, weight_decay: 0.0 },
            schedule: super::super::ScheduleConfig {
                lr: 0.5,
                warmup_epochs: 0.0,
                decay: super::super::Decay::Constant,
            },
            grad_clip_norm: None,
        }
    }

    /// The loop trains a linear probe on features held in memory (any batch source), reports
    /// the objective's metric as a column, and the probe separates the classes.
    #[test]
    fn a_linear_probe_trains_on_cached_features() {
        let device = resolve(&crate::device::DeviceSpec::Cpu).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let source = features();
        let config = config(5);
        let run = Run {
            config: &config,
            phases: vec![Phase::epochs(&source, 5)],
            validation: Validation::None,
            device: &device,
            out_dir: dir.path(),
            run_hash: "probe",
        };
        let probe = LinearConfig::new(3, 2).init(&device.device.clone().autodiff());
        let mut objective = Probe { steps_seen: 0, fail_in_pass: None, passes_started: 0 };
        let outcome = fit(probe, &mut objective, &run).unwrap();
        assert_eq!(objective.steps_seen, 20);
        let last = outcome.rows.last().unwrap();
        assert_eq!(last.train_top1, Some(100.0), "{:?}", outcome.rows);
        let (name, twice) = &last.train_metrics[0];
        assert_eq!(name, "twice_loss");
        assert!((twice - 2.0 * last.train_loss).abs() < 1e-4, "{twice} vs 2 x {}", last.train_loss);
        let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
        assert!(
            csv.starts_with("pass,epoch,lr,train_loss,train_top1,train_twice_loss,images_per_s,seconds\n"),
            "{csv}"
        );
    }

    /// A run stopped in pass 3 resumes after pass 2 with the objective's state as it was saved
    /// then (the hook continues counting from step 8), and ends with every step seen once.
    #[test]
    fn objective_state_survives_an_interruption() {
        let device = resolve(&crate::device::DeviceSpec::Cpu).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let source = features();
        let config = config(4);
        let run = Run {
            config: &config,
            phases: vec![Phase::epochs(&source, 4)],
            validation: Validation::None,
            device: &device,
            out_dir: dir.path(),
            run_hash: "probe",
        };
        let ad = device.device.clone().autodiff();
        let mut first = Probe { steps_seen: 0, fail_in_pass: Some(3), passes_started: 0 };
        let err = fit(LinearConfig::new(3, 2).init(&ad), &mut first, &run).err().unwrap();
        assert!(err.to_string().contains("simulated kill"));
        let saved = std::fs::read_dir(dir.path().join("state")).unwrap().count();
        assert_eq!(saved, 4, "model, optimizer, objective state, progress");

        let mut resumed = Probe { steps_seen: 0, fail_in_pass: None, passes_started: 0 };
        let outcome = fit(LinearConfig::new(3, 2).init(&ad), &mut resumed, &run).unwrap();
        assert_eq!(outcome.resumed_after, Some(2));
        assert_eq!(resumed.steps_seen, 16, "8 restored + 8 new steps");
        assert_eq!(outcome.rows.len(), 4);

        // Another objective identity is another run: its state is not resumed into.
        struct Other(Probe);
        impl Objective<Linear> for Other {
            fn step(&mut self, model: &Linear, batch: &Batch, device: &Device) -> Result<StepOutput> {
                self.0.step(model, batch, device)
            }
            fn network<'a>(&self, _model: &'a Linear) -> Option<&'a Network> {
                None
            }
            fn identity(&self) -> serde_json::Value {
                serde_json::json!({"probe": 2})
            }
        }
        let mut other = Other(Probe { steps_seen: 0, fail_in_pass: None, passes_started: 0 });
        let err = fit(LinearConfig::new(3, 2).init(&ad), &mut other, &run).err().unwrap();
        assert!(err.to_string().contains("another configuration"), "{err}");
    }
}

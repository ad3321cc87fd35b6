//! The training loop.

use super::evaluate::{evaluate, images_tensor};
use super::optimizer::OptimizerConfig;
use super::schedule::ScheduleConfig;
use super::state::{EpochRow, Progress, StateDir, write_metrics_csv};
use crate::device::ResolvedDevice;
use crate::error::{Error, Result};
use crate::models::Network;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use kd_datasets::{Batch, BatchLoader};
use std::path::Path;
use std::time::Instant;

/// Hyper-parameters of the loop shared by every trainer.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Epochs (passes over the training loader).
    pub epochs: usize,
    /// Images per optimizer step.
    pub batch_size: usize,
    /// Optimizer.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Clip each parameter's gradient to this L2 norm.
    #[serde(default)]
    pub grad_clip_norm: Option<f32>,
}

/// What an objective returns for one batch.
pub struct StepOutput {
    /// Scalar loss to minimise, `[1]`.
    pub loss: Tensor<1>,
    /// Logits of the network being evaluated, `[B, classes]` (for training accuracy).
    pub logits: Tensor<2>,
}

/// A training method: turns a batch into a loss. `M` is the trained module (a network, or a
/// network together with auxiliary modules such as a discriminator).
pub trait Objective<M: Module> {
    /// Loss of `model` on `batch`; `images` is already on the autodiff device.
    fn step(&mut self, model: &M, images: Tensor<4>, labels: Tensor<1, Int>, batch: &Batch) -> Result<StepOutput>;

    /// The network that validation measures and that is exported.
    fn network<'a>(&self, model: &'a M) -> &'a Network;

    /// Networks whose (ensemble) predictions validation compares with: the teachers. Their
    /// agreement with the trained network becomes the `val_agreement` column.
    fn references(&self) -> &[Network] {
        &[]
    }
}

/// A stretch of training on one loader: `passes` passes, each counting as `epochs_per_pass`
/// epochs of the schedule. FKD's multi-crop passes count `num_crops` epochs each (one pass with
/// `m` crops per image takes as many optimizer steps as `m` single-crop epochs; anchors §A1.5).
#[derive(Clone, Copy)]
pub struct Phase<'a> {
    /// The batches.
    pub loader: &'a BatchLoader,
    /// Passes over the loader.
    pub passes: usize,
    /// Epochs each pass counts as.
    pub epochs_per_pass: usize,
}

/// The result of [`fit`].
pub struct FitOutcome<M> {
    /// The trained module (autodiff device; call `.valid()` for inference).
    pub model: M,
    /// One row per epoch, resumed epochs included.
    pub rows: Vec<EpochRow>,
    /// The epoch a killed run was resumed after, if any.
    pub resumed_after: Option<usize>,
}

/// How often (in steps) the loss is read back to check it is finite.
const CHECK_EVERY: usize = 10;

/// Trains `model` with `objective` for `config.epochs` passes over `train`. Resumes from
/// `<out>/state` when a run with the same `run_hash` was interrupted; writes
/// `<out>/metrics.csv` after every epoch.
#[allow(clippy::too_many_arguments)]
pub fn fit<M: Module, O: Objective<M>>(
    model: M,
    objective: &mut O,
    config: &TrainConfig,
    train: &BatchLoader,
    val: Option<&BatchLoader>,
    device: &ResolvedDevice,
    out_dir: &Path,
    run_hash: &str,
) -> Result<FitOutcome<M>> {
    let phases = [Phase { loader: train, passes: config.epochs, epochs_per_pass: 1 }];
    fit_phases(model, objective, config, &phases, val, device, out_dir, run_hash)
}

/// [`fit`] over a sequence of phases whose epochs add up to `config.epochs`; the learning-rate
/// schedule runs over all their steps, and a metrics row is written per pass (its `epoch` is
/// the epoch count reached).
#[allow(clippy::too_many_arguments)]
pub fn fit_phases<M: Module, O: Objective<M>>(
    model: M,
    objective: &mut O,
    config: &TrainConfig,
    phases: &[Phase],
    val: Option<&BatchLoader>,
    device: &ResolvedDevice,
    out_dir: &Path,
    run_hash: &str,
) -> Result<FitOutcome<M>> {
    if config.epochs == 0 {
        return Err(Error::InvalidConfig("epochs must be at least 1".into()));
    }
    let planned: usize = phases.iter().map(|p| p.passes * p.epochs_per_pass).sum();
    if planned != config.epochs {
        return Err(Error::InvalidConfig(format!(
            "the training phases cover {planned} epochs, the configuration {}",
            config.epochs
        )));
    }
    // (loader, epochs counted, epochs reached) per pass.
    let mut passes = Vec::new();
    let mut reached = 0;
    for phase in phases {
        for _ in 0..phase.passes {
            reached += phase.epochs_per_pass;
            passes.push((phase.loader, reached));
        }
    }
    let total_steps: usize = passes.iter().map(|(loader, _)| loader.batches_per_epoch()).sum();
    let steps_per_epoch = (total_steps / config.epochs).max(1);
    let state = StateDir::new(out_dir);
    let mut optim = config.optimizer.build(config.grad_clip_norm);
    let mut model = model;
    let mut progress = Progress { run_hash: run_hash.into(), epochs_done: 0, steps_done: 0, rows: Vec::new() };
    let mut resumed_after = None;
    if let Some(saved) = state.load_progress(run_hash)? {
        let (m, o) = state.restore(model, optim, &saved)?;
        (model, optim) = (m, o);
        tracing::info!("resuming after epoch {} of {}", saved.epochs_done, config.epochs);
        resumed_after = Some(saved.epochs_done);
        progress = saved;
    }
    let ad_device = device.device.clone().autodiff();
    let metrics_path = out_dir.join("metrics.csv");

    for epoch in progress.epochs_done..passes.len() {
        let (train, epochs_reached) = passes[epoch];
        let pass_steps = train.batches_per_epoch();
        let started = Instant::now();
        let bar = crate::progress::bar(pass_steps as u64, &format!("epoch {}/{}", epochs_reached, config.epochs));
        let mut loss_sum = Tensor::<1>::zeros([1], &ad_device.clone().inner());
        let mut correct_sum = Tensor::<1, Int>::zeros([1], &ad_device.clone().inner());
        let (mut images_seen, mut lr) = (0usize, 0.0);
        let mut last_read = (0.0f64, 0usize);
        for (i, batch) in train.epoch(epoch as u64).enumerate() {
            let batch = batch.map_err(|e| Error::InvalidConfig(e.to_string()))?;
            let step = progress.steps_done + i;
            lr = config.schedule.lr_at(step, steps_per_epoch, total_steps);
            let images = images_tensor(&batch, &ad_device);
            let labels_host: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
            let labels = Tensor::<1, Int>::from_data(TensorData::new(labels_host, [batch.labels.len()]), &ad_device);
            let output = objective.step(&model, images, labels.clone(), &batch)?;
            let n = batch.labels.len();
            let grads = output.loss.backward();
            let grads = GradientsParams::from_grads(grads, &model);
            model = optim.step(lr, model, grads);

            let batch_loss = output.loss.detach().inner().mul_scalar(n as f32);
            loss_sum = loss_sum + batch_loss;
            let predicted = output.logits.detach().inner().argmax(1).reshape([n]);
            correct_sum = correct_sum + predicted.equal(labels.inner()).int().sum();
            images_seen += n;
            if (i + 1) % CHECK_EVERY == 0 || i + 1 == pass_steps {
                let total = loss_sum.clone().into_scalar::<f32>() as f64;
                if !total.is_finite() {
                    bar.abandon();
                    return Err(Error::Diverged { value: total as f32, epoch: epoch + 1, step: step + 1 });
                }
                let window = (total - last_read.0) / (images_seen - last_read.1).max(1) as f64;
                bar.set_message(format!("loss {window:.4} lr {lr:.4}"));
                last_read = (total, images_seen);
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let train_seconds = started.elapsed().as_secs_f64();
        let train_loss = loss_sum.into_scalar::<f32>() as f64 / images_seen.max(1) as f64;
        let train_top1 = 100.0 * correct_sum.into_scalar::<i64>() as f64 / images_seen.max(1) as f64;

        let report = match val {
            Some(val) => Some(evaluate(objective.network(&model), objective.references(), val, &device.device)?),
            None => None,
        };
        progress.steps_done += pass_steps;
        progress.epochs_done = epoch + 1;
        let row = EpochRow {
            epoch: epochs_reached,
            lr,
            train_loss,
            train_top1,
            val_loss: report.as_ref().map(|r| r.nll),
            val_top1: report.as_ref().map(|r| r.top1),
            val_top5: report.as_ref().map(|r| r.top5),
            images_per_s: images_seen as f64 / train_seconds,
            seconds: started.elapsed().as_secs_f64(),
            extra: report
                .as_ref()
                .and_then(|r| r.agreement)
                .map(|a| vec![("val_agreement".to_string(), a)])
                .unwrap_or_default(),
        };
        tracing::info!(
            "epoch {}/{}: train loss {:.4} top-1 {:.2}%{}{} | {:.0} images/s, {:.1} s",
            row.epoch,
            config.epochs,
            row.train_loss,
            row.train_top1,
            report.as_ref().map(|r| format!(", val top-1 {:.2}% nll {:.4}", r.top1, r.nll)).unwrap_or_default(),
            report
                .as_ref()
                .and_then(|r| r.agreement)
                .map(|a| format!(", agreement with the teacher {a:.2}%"))
                .unwrap_or_default(),
            row.images_per_s,
            row.seconds
        );
        progress.rows.push(row);
        state.save(&model, &optim, &progress)?;
        write_metrics_csv(&metrics_path, &progress.rows)?;
    }
    Ok(FitOutcome { model, rows: progress.rows, resumed_after })
}

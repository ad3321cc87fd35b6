//! `kd-distill`: one binary, one training loop (`kd_common::train`), the method chosen by a typed
//! configuration ([`methods::Method`], one file per method under `methods/`): online Hinton KD,
//! FKD from packed region labels, MEAL V2 (online or packed), SSLD with unlabeled data and a
//! fine-tune stage, DKD and DIST.

pub mod config;
pub mod crops;
pub mod methods;
pub mod objective;
pub mod regions;
pub mod ssld;

use crate::shared::data::{input_spec, val_loader};
use crate::shared::finish::{TrainedRun, print_summary, save_trained};
use crate::shared::initial::initial_network;
use crate::shared::run::{Output, claim_output, run_hash, training_record};
use crate::shared::teachers::Teachers;
use crate::shared::train_args::ModelChoice;
use anyhow::{Context, Result, ensure};
use burn::module::Module;
use config::{Args, DistillConfig};
use kd_common::checkpoint::{self, InputSpec};
use kd_common::device;
use kd_datasets::soft_labels::LabelReader;
use methods::MethodRun;
use serde_json::json;

/// The image side the method's inputs were made for, the default of `--image-size` on image
/// folders: the first teacher's, the label file's crops', the initial checkpoint's or the first
/// reference's.
fn side_of_inputs(config: &DistillConfig) -> Result<Option<usize>> {
    let checkpoint_side = |path: &std::path::Path| -> Result<usize> {
        Ok(checkpoint::read_meta(path).with_context(|| format!("{}", path.display()))?.input.height)
    };
    if let Some(teacher) = config.method.teachers().first() {
        return checkpoint_side(teacher).map(Some);
    }
    if let Some(labels) = config.method.labels() {
        let reader =
            LabelReader::open(labels, 0).with_context(|| format!("opening label file {}", labels.display()))?;
        return Ok(Some(reader.meta().crop.output_size[0]));
    }
    config.init.iter().chain(&config.references).next().map(|p| checkpoint_side(p)).transpose()
}

/// Runs `kd-distill`.
pub fn run(args: Args) -> Result<()> {
    let run_args = args.method.run_args();
    run_args.common.init_output();
    let mut config = DistillConfig::resolve(&args.method)?;
    let out = run_args.out.clone();
    // Arguments and input files first, before any device is touched or data read.
    config.train.validate()?;
    config.model.validate()?;
    config.check_inputs()?;
    let device = device::resolve(&config.run.device)?;
    tracing::info!("{} on {}", config.method.name(), device.description);

    let splits = config.run.open_splits()?;
    let image_size = match config.run.image_size {
        Some(side) => Some(side),
        None => side_of_inputs(&config)?,
    };
    let input = input_spec(config.run.dataset, &splits.train, image_size)?;
    let teachers = load_teachers(&config, &input, splits.train.num_classes(), &device.device)?;
    let ad_device = device.device.clone().autodiff();
    device.device.seed(config.run.seed);
    let (network, spec) =
        initial_network(config.init.as_deref(), &config.model, &input, splits.train.num_classes(), &ad_device)?;
    if config.init.is_some() {
        // Record the architecture the initial checkpoint brought.
        config.model = ModelChoice::from_spec(&spec);
    }
    let hash = run_hash(&config, &inputs_identity(&config, &teachers)?)?;
    let weights = out.join("model.safetensors");
    if let Output::Finished(summary) = claim_output(&out, &weights, &config, &hash)? {
        outln!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    tracing::info!(
        "student {} ({:.3} M parameters){}",
        spec.arch,
        kd_common::models::trainable_params(&network) as f64 / 1e6,
        config.init.as_ref().map(|p| format!(" from {}", p.display())).unwrap_or_default(),
    );
    let val_loader = val_loader(&splits, &input, config.run.workers, config.run.seed)?;
    let references = teachers.networks.clone();
    let method_run = MethodRun {
        config: &config,
        hash: &hash,
        splits: &splits,
        input: &input,
        network,
        val: val_loader.as_ref(),
        references: &references,
        device: &device,
        out: &out,
    };
    let trained = config.method.train(&method_run, teachers)?;
    let mut extra = json!({"method": config.method.name()});
    if let Some(data) = trained.data {
        extra["data"] = data;
    }
    let network = trained.network.valid();
    let run = TrainedRun {
        network: &network,
        spec,
        input,
        train: &splits.train,
        test: &splits.test,
        config: training_record(&config, &hash)?,
        rows: &trained.rows,
        resumed_after: trained.resumed_after,
        references: &references,
        workers: config.run.workers,
        seed: config.run.seed,
        tool: "kd-distill",
        pruning: None,
    };
    print_summary(save_trained(run, &device.device, &weights)?, extra)
}

/// The teachers the method runs, else the references it measures agreement with; each must
/// fit the student's classes and input.
fn load_teachers(
    config: &DistillConfig,
    input: &InputSpec,
    classes: usize,
    device: &burn::tensor::Device,
) -> Result<Teachers> {
    let paths = if config.method.teachers().is_empty() { &config.references } else { config.method.teachers() };
    let teachers = Teachers::load(paths, device)?;
    for (path, meta) in paths.iter().zip(&teachers.metas) {
        ensure!(
            meta.model.num_classes == classes,
            "teacher {} has {} classes but the student's dataset {} has {classes}",
            path.display(),
            meta.model.num_classes,
            config.run.dataset
        );
        ensure!(
            meta.input == *input,
            "teacher {} expects {}x{}x{} inputs normalised with mean {:?} / std {:?}, the student {}x{}x{} with {:?} / {:?}",
            path.display(),
            meta.input.channels,
            meta.input.height,
            meta.input.width,
            meta.input.mean,
            meta.input.std,
            input.channels,
            input.height,
            input.width,
            input.mean,
            input.std
        );
    }
    tracing::info!(
        "teachers: {}",
        if paths.is_empty() {
            "none".to_string()
        } else {
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        }
    );
    Ok(teachers)
}

/// The input files' identities that enter the run hash: the teachers' weights and the label
/// file's metadata.
fn inputs_identity(config: &DistillConfig, teachers: &Teachers) -> Result<serde_json::Value> {
    let labels = match config.method.labels() {
        Some(path) => {
            let reader =
                LabelReader::open(path, 0).with_context(|| format!("opening label file {}", path.display()))?;
            Some(serde_json::to_value(reader.meta())?)
        }
        None => None,
    };
    Ok(json!({"teachers": teachers.weights_sha256(), "labels": labels}))
}

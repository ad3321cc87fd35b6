//! `kd-distill`: one binary, one training loop (`kd_common::train`), the method chosen by a typed
//! configuration ([`method::Method`]): online Hinton KD, FKD from packed region labels, MEAL V2
//! (online or packed) and SSLD with unlabeled data and a fine-tune stage.

pub mod config;
pub mod method;
pub mod objective;
pub mod regions;
pub mod ssld;

use crate::pretrain::CrossEntropy;
use crate::shared::data::{Splits, eval_transform, input_spec, loader, open_splits, train_transform};
use crate::shared::finish::{TrainedRun, save_trained};
use crate::shared::teachers::Teachers;
use crate::shared::train_args::ModelChoice;
use anyhow::{Context, Result, ensure};
use burn::module::Module;
use config::{Args, DistillConfig};
use kd_common::checkpoint::{self, InputSpec};
use kd_common::device::{self, ResolvedDevice};
use kd_common::models::{Discriminator, ModelSpec, Network};
use kd_common::train::{self, Decay, PassRow, Phase, Run, ScheduleConfig, TrainConfig, Validation};
use kd_datasets::BatchLoader;
use method::{DiscriminatorInput, Divergence, Method};
use objective::{DistillObjective, Loss, Student, Targets};
use serde_json::json;
use std::path::Path;

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
    let device = device::resolve(&config.device)?;
    tracing::info!("{} on {}", config.method.name(), device.description);

    let splits =
        open_splits(config.dataset, config.data_dir.as_deref(), config.val_size, config.seed, config.folder_channels)?;
    let input = input_spec(config.dataset, &splits.train, config.image_size)?;
    let classes = splits.train.num_classes();
    let teacher_paths =
        if config.method.teachers().is_empty() { &config.references } else { &config.method.teachers().to_vec() };
    let teachers = Teachers::load(teacher_paths, &device.device)?;
    for (path, meta) in teacher_paths.iter().zip(&teachers.metas) {
        ensure!(
            meta.model.num_classes == classes,
            "teacher {} has {} classes but the student's dataset {} has {classes}",
            path.display(),
            meta.model.num_classes,
            config.dataset
        );
        ensure!(
            meta.input == input,
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
    if let Method::Fkd { labels, .. } = &config.method {
        ensure!(!labels.as_os_str().is_empty(), "fkd needs --labels (a kd-pack-labels file)");
    }

    let ad_device = device.device.clone().autodiff();
    device.device.seed(config.seed);
    let (network, spec) = student_network(&config, &input, classes, &ad_device)?;
    if config.init.is_some() {
        // Record the architecture the initial checkpoint brought.
        config.model = ModelChoice::from_spec(&spec);
    }
    kd_common::atomic::ensure_writable_dir(&out).with_context(|| format!("output directory {}", out.display()))?;
    kd_common::atomic::write_json(&out.join("config.json"), &config)?;
    tracing::info!(
        "student {} ({:.3} M parameters){}; teachers: {}",
        spec.arch,
        kd_common::models::trainable_params(&network) as f64 / 1e6,
        config.init.as_ref().map(|p| format!(" from {}", p.display())).unwrap_or_default(),
        if teacher_paths.is_empty() {
            "none".to_string()
        } else {
            teacher_paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        }
    );

    let val_loader = match &splits.val {
        Some(val) => Some(loader(val.clone(), eval_transform(&input), 256, false, config.workers, config.seed)?),
        None => None,
    };
    let started = std::time::Instant::now();
    let trained = train_method(&config, &splits, &input, teachers, network, val_loader.as_ref(), &device, &out)?;
    let network = trained.network.valid();
    let mut summary = save_trained(
        TrainedRun {
            network: &network,
            spec,
            input,
            train: &splits.train,
            test: &splits.test,
            config: serde_json::to_value(&config)?,
            rows: &trained.rows,
            resumed_after: trained.resumed_after,
            references: &trained.references,
            workers: config.workers,
            seed: config.seed,
            tool: "kd-distill",
            pruning: None,
        },
        &device.device,
        &out.join("model.safetensors"),
    )?;
    summary["method"] = json!(config.method.name());
    if let Some(data) = trained.data {
        summary["data"] = data;
    }
    tracing::info!("finished after {:.0} s", started.elapsed().as_secs_f64());
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// The student: a fresh network of the configured architecture, or the `init` checkpoint.
fn student_network(
    config: &DistillConfig,
    input: &InputSpec,
    classes: usize,
    device: &burn::tensor::Device,
) -> Result<(Network, ModelSpec)> {
    let Some(init) = &config.init else {
        let spec = config.model.spec(input.channels, classes);
        return Ok((spec.init(device)?, spec));
    };
    let (network, meta) =
        checkpoint::load(init, device).with_context(|| format!("loading the initial student {}", init.display()))?;
    ensure!(
        meta.model.num_classes == classes,
        "initial student {} has {} classes, the dataset {classes}",
        init.display(),
        meta.model.num_classes
    );
    ensure!(
        &meta.input == input,
        "initial student {} expects another input (size or normalisation) than the dataset gives",
        init.display()
    );
    Ok((network, meta.model))
}

/// What training produced.
struct Trained {
    network: Network,
    rows: Vec<PassRow>,
    resumed_after: Option<usize>,
    references: Vec<Network>,
    data: Option<serde_json::Value>,
}

/// Run inputs that decide whether saved state can be resumed: teachers and label file.
fn inputs_identity(teachers: &Teachers, labels: Option<&serde_json::Value>) -> serde_json::Value {
    json!({"teachers": teachers.weights_sha256(), "labels": labels})
}

/// Validation against the held-out split, with the teachers as references.
fn validation<'a>(val: Option<&'a BatchLoader>, references: &'a [Network]) -> Validation<'a> {
    match val {
        Some(source) => Validation::Classification { source, references },
        None => Validation::None,
    }
}

#[allow(clippy::too_many_arguments)]
fn train_method(
    config: &DistillConfig,
    splits: &Splits,
    input: &InputSpec,
    teachers: Teachers,
    network: Network,
    val: Option<&BatchLoader>,
    device: &ResolvedDevice,
    out: &Path,
) -> Result<Trained> {
    let references = teachers.networks.clone();
    let online = |loss: Loss, temperature: f32, teachers: Teachers| DistillObjective {
        teachers,
        targets: Targets::Online { temperature },
        loss,
        discriminator_input: DiscriminatorInput::Logits,
    };
    let train_loader = |dataset: &kd_datasets::Dataset| {
        loader(
            dataset.clone(),
            train_transform(input, config.augment.clone()),
            config.train.batch_size,
            true,
            config.workers,
            config.seed,
        )
    };
    let region_loaders = |labels: &Path, crops| {
        regions::region_loaders(
            labels,
            crops,
            splits,
            input,
            config.train.epochs,
            config.train.batch_size,
            config.workers,
            config.seed,
        )
    };
    // One run of the loop: the student (with a discriminator or not) over `phases`.
    let fit = |objective: &mut DistillObjective,
               discriminator: Option<Discriminator>,
               phases: Vec<Phase>,
               hash: &str|
     -> Result<Trained> {
        let run = Run {
            config: &config.train,
            phases,
            validation: validation(val, &references),
            device,
            out_dir: out,
            run_hash: hash,
        };
        let outcome = train::fit(Student { network: network.clone(), discriminator }, objective, &run)?;
        Ok(Trained {
            network: outcome.model.network,
            rows: outcome.rows,
            resumed_after: outcome.resumed_after,
            references: references.clone(),
            data: None,
        })
    };
    match &config.method {
        Method::Kd { alpha, temperature, .. } => {
            let hash = config.run_hash(&inputs_identity(&teachers, None))?;
            let mut objective = online(Loss::Kd { alpha: *alpha, temperature: *temperature }, *temperature, teachers);
            let source = train_loader(&splits.train)?;
            fit(&mut objective, None, vec![Phase::epochs(&source, config.train.epochs)], &hash)
        }
        Method::Fkd { labels, crops, temperature } => {
            let regions = region_loaders(labels, crops)?;
            let hash = config.run_hash(&inputs_identity(&teachers, Some(&serde_json::to_value(&regions.meta)?)))?;
            let mut objective = DistillObjective {
                teachers,
                targets: Targets::Packed,
                loss: Loss::SoftCrossEntropy { temperature: *temperature },
                discriminator_input: DiscriminatorInput::Probs,
            };
            let trained = fit(&mut objective, None, regions.phases(), &hash)?;
            let data = json!({"label_file": labels, "crops_per_image_stored": regions.meta.crops_per_image, "teachers": regions.meta.teachers});
            Ok(Trained { data: Some(data), ..trained })
        }
        Method::MealV2 { labels, crops, discriminator, .. } => {
            let classes = splits.train.num_classes();
            let disc =
                discriminator.map(|d| Discriminator::new(classes, d.final_relu, &device.device.clone().autodiff()));
            let disc_input = discriminator.map_or(DiscriminatorInput::Probs, |d| d.input);
            let loss = Loss::SoftCrossEntropy { temperature: 1.0 };
            match labels {
                None => {
                    let hash = config.run_hash(&inputs_identity(&teachers, None))?;
                    let mut objective =
                        DistillObjective { discriminator_input: disc_input, ..online(loss, 1.0, teachers) };
                    let source = train_loader(&splits.train)?;
                    fit(&mut objective, disc, vec![Phase::epochs(&source, config.train.epochs)], &hash)
                }
                Some(path) => {
                    let regions = region_loaders(path, crops)?;
                    let hash =
                        config.run_hash(&inputs_identity(&teachers, Some(&serde_json::to_value(&regions.meta)?)))?;
                    let mut objective =
                        DistillObjective { teachers, targets: Targets::Packed, loss, discriminator_input: disc_input };
                    fit(&mut objective, disc, regions.phases(), &hash)
                }
            }
        }
        Method::Ssld { divergence, unlabeled, select_per_class, finetune_epochs, finetune_lr_scale, .. } => {
            let data = ssld::assemble(
                &splits.train,
                unlabeled.as_ref(),
                *select_per_class,
                &teachers,
                input,
                config.workers,
                config.seed,
                &device.device,
            )?;
            let hash = config.run_hash(&inputs_identity(&teachers, None))?;
            let loss = match divergence {
                Divergence::SymmetricKl => Loss::SymmetricKl,
                Divergence::JensenShannon => Loss::JensenShannon,
            };
            let mut objective = online(loss, 1.0, teachers);
            let source = train_loader(&data.distill)?;
            let distilled = fit(&mut objective, None, vec![Phase::epochs(&source, config.train.epochs)], &hash)?;
            let (mut rows, mut network) = (distilled.rows, distilled.network);
            if *finetune_epochs > 0 {
                // Stage 2: cross-entropy on the labeled set at a lower learning rate, to restore
                // the labeled distribution (PaddleClas SSLD; Cui et al., "Beyond Self-Supervision: A Simple Yet Effective Network Distillation Alternative", 2021, §3).
                let finetune = TrainConfig {
                    epochs: *finetune_epochs,
                    schedule: ScheduleConfig {
                        lr: config.train.schedule.lr * finetune_lr_scale,
                        warmup_epochs: 0.0,
                        decay: Decay::Cosine,
                    },
                    ..config.train.clone()
                };
                let labeled = train_loader(&data.labeled)?;
                let stage_dir = out.join("finetune");
                let stage_hash = format!("{hash}-finetune");
                let run = Run {
                    config: &finetune,
                    phases: vec![Phase::epochs(&labeled, *finetune_epochs)],
                    validation: validation(val, &references),
                    device,
                    out_dir: &stage_dir,
                    run_hash: &stage_hash,
                };
                let outcome = train::fit(network, &mut CrossEntropy { label_smoothing: 0.0 }, &run)?;
                let (pass_offset, epoch_offset) = rows.last().map_or((0, 0), |r| (r.pass, r.epoch));
                rows.extend(outcome.rows.into_iter().map(|r| PassRow {
                    pass: r.pass + pass_offset,
                    epoch: r.epoch + epoch_offset,
                    ..r
                }));
                network = outcome.model;
            }
            Ok(Trained { network, rows, data: Some(data.summary), ..distilled })
        }
    }
}

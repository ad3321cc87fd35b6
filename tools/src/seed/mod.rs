//! `kd-seed`: SEED self-supervised distillation (Fang et al., ICLR 2021): a small student with an
//! MLP projection head learns, without labels, to reproduce a frozen self-supervised teacher's
//! similarity distribution over a queue of teacher embeddings. Trained through the one loop,
//! monitored by kNN top-1 on the validation split; the queue survives a kill.

pub mod objective;

use crate::shared::cli::{CommonArgs, overlay_config};
use crate::shared::data::{eval_transform, input_spec, loader};
use crate::shared::encoder::{KnnSources, TrainedEncoder, save_encoder, with_projection_head};
use crate::shared::finish::print_summary;
use crate::shared::profiles::{self, Profile, Role};
use crate::shared::run::{EVAL_BATCH, Output, RunFlags, RunSettings, claim_output, run_hash, training_record};
use crate::shared::ssl_data::{SslData, SslDataSpec, fit_moco_augment};
use crate::shared::train_args::{ModelChoice, TrainArgs};
use anyhow::{Context, Result, bail, ensure};
use burn::module::Module;
use burn::tensor::Tensor;
use clap::Parser;
use kd_common::checkpoint;
use kd_common::checkpoint::{CheckpointMeta, InputSpec};
use kd_common::contrastive::EmbeddingQueue;
use kd_common::device;
use kd_common::models::HeadSpec;
use kd_common::models::Network;
use kd_common::train::{self, KnnConfig, Phase, Run, TrainConfig};
use kd_datasets::{Augment, BatchLoader, DatasetKind, LoaderConfig, Transform};
use objective::{Negatives, Seed, TeacherOutput};
use std::path::PathBuf;

/// Distil a self-supervised teacher into a small student without labels (SEED).
#[derive(Parser, Debug)]
#[command(name = "kd-seed", version, long_about = None)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The frozen teacher: a MoCo checkpoint, or any checkpoint with an embedding.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Which teacher output is its embedding (default: the projection head's when it has one,
    /// else the pooled features).
    #[arg(long, value_enum)]
    pub teacher_output: Option<TeacherOutput>,
    /// Output directory: config.json, metrics.csv, model.safetensors + model.json, state/.
    #[arg(long, default_value = "runs/seed")]
    pub out: PathBuf,
    /// Preset: quick, converged (quick 8x as long) or full.
    #[arg(long, value_enum, default_value_t = Profile::Quick)]
    pub profile: Profile,
    /// Teacher embeddings in the queue (a multiple of the batch size).
    #[arg(long)]
    pub queue: Option<usize>,
    /// Use the teacher embeddings of every training image, computed once, instead of a queue.
    #[arg(long)]
    pub dataset_bank: bool,
    /// Train on every PNG/JPEG under --data-dir (with --dataset folder), images without class
    /// folders or labels; no kNN monitor (evaluate the student with kd-eval).
    #[arg(long)]
    pub unlabeled: bool,
    /// Student temperature tau_S.
    #[arg(long)]
    pub tau_student: Option<f32>,
    /// Teacher temperature tau_T.
    #[arg(long)]
    pub tau_teacher: Option<f32>,
    #[command(flatten)]
    pub data: RunFlags,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Where the negatives come from.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum NegativesConfig {
    /// SEED's FIFO queue of this many teacher embeddings.
    Queue {
        /// K, a multiple of the batch size.
        size: usize,
    },
    /// Every training image's teacher embedding (no augmentation), computed once.
    DatasetBank,
}

/// The resolved configuration, written to `config.json` (unknown keys of a config file are
/// refused by the overlay, `shared::cli::merge`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SeedConfig {
    /// Preset the defaults came from.
    pub profile: Profile,
    /// The teacher checkpoint.
    pub teacher: PathBuf,
    /// Its embedding (null: chosen from its head).
    pub teacher_output: Option<TeacherOutput>,
    /// Data and execution settings (`image_size`: the teacher's).
    #[serde(flatten)]
    pub run: RunSettings,
    /// The folder's images carry no labels; absent in older configs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unlabeled: bool,
    /// The student backbone (its head becomes a projection to the teacher's dimension).
    pub model: ModelChoice,
    /// Negatives.
    pub negatives: NegativesConfig,
    /// Student temperature tau_S (SEED: 0.2).
    pub tau_student: f32,
    /// Teacher temperature tau_T (SEED's code: 1e-4).
    pub tau_teacher: f32,
    /// Loop hyper-parameters.
    pub train: TrainConfig,
    /// Training augmentation (MoCo v2's; teacher and student see the same view).
    pub augment: Augment,
    /// Training images in the kNN bank (0: all).
    pub knn_bank: usize,
    /// kNN monitor.
    pub knn: KnnConfig,
}

impl SeedConfig {
    fn defaults(profile: Profile, dataset: DatasetKind) -> Self {
        let (arch, width) = profiles::model(profile, Role::Student);
        let (moco, train) = profiles::moco(profile, dataset);
        Self {
            profile,
            teacher: PathBuf::new(),
            teacher_output: None,
            run: RunSettings::defaults(dataset),
            unlabeled: false,
            model: ModelChoice::new(arch, width),
            negatives: NegativesConfig::Queue { size: moco.queue },
            tau_student: 0.2,
            tau_teacher: 1e-4,
            train,
            augment: Augment::moco_v2(dataset.default_side().unwrap_or(224), dataset.mirrors()),
            knn_bank: moco.knn_bank,
            knn: moco.knn,
        }
    }

    /// Defaults of the preset, then the config file, then the flags; checked.
    pub fn resolve(args: &Args) -> Result<Self> {
        let (file, dataset) = args.data.config_file_and_dataset(&args.common)?;
        let mut config = overlay_config(&Self::defaults(args.profile, dataset), file.as_ref())?;
        config.run.apply(dataset, &args.common, &args.data);
        args.train.apply(&mut config.model, &mut config.train);
        ensure!(
            config.run.image_size.is_none(),
            "the student reads the teacher's input size: --image-size does not apply"
        );
        if let Some(teacher) = &args.teacher {
            config.teacher = teacher.clone();
        }
        ensure!(!config.teacher.as_os_str().is_empty(), "--teacher is required (the frozen self-supervised teacher)");
        if args.teacher_output.is_some() {
            config.teacher_output = args.teacher_output;
        }
        match (args.dataset_bank, args.queue) {
            (true, Some(_)) => bail!("--queue and --dataset-bank exclude each other"),
            (true, None) => config.negatives = NegativesConfig::DatasetBank,
            (false, Some(size)) => config.negatives = NegativesConfig::Queue { size },
            (false, None) => {}
        }
        if let Some(t) = args.tau_student {
            config.tau_student = t;
        }
        if let Some(t) = args.tau_teacher {
            config.tau_teacher = t;
        }
        for (name, t) in [("tau_S", config.tau_student), ("tau_T", config.tau_teacher)] {
            ensure!(t.is_finite() && t > 0.0, "{name} must be positive, got {t}");
        }
        if let NegativesConfig::Queue { size } = config.negatives {
            let batch = config.train.batch_size;
            ensure!(
                size > 0 && size.is_multiple_of(batch),
                "the queue size ({size}) must be a positive multiple of the batch size ({batch})"
            );
        }
        config.unlabeled |= args.unlabeled;
        config.ssl_data().validate()?;
        config.train.validate()?;
        config.model.validate()?;
        Ok(config)
    }

    /// The training images.
    fn ssl_data(&self) -> SslDataSpec<'_> {
        SslDataSpec { run: &self.run, unlabeled: self.unlabeled }
    }
}

/// Runs `kd-seed`.
pub fn run(args: Args) -> Result<()> {
    args.common.init_output();
    let mut config = SeedConfig::resolve(&args)?;
    let device = device::resolve(&config.run.device)?;
    tracing::info!("device: {}", device.description);
    let inner = device.device.clone();
    let (teacher, teacher_meta, output) = load_teacher(&config, &inner)?;
    let data = SslData::open(&config.ssl_data())?;
    let input = teacher_meta.input.clone();
    fit_moco_augment(&mut config.augment, config.run.dataset, input.height);
    check_data_fits(&config, &data, &input)?;
    let blank = Tensor::<4>::zeros([1, input.channels, input.height, input.width], &inner);
    let [_, teacher_dim] = output.embed(&teacher, blank).dims();
    // The student: the chosen backbone with a projection to the teacher's dimension.
    let spec = config.model.spec(input.channels, data.train.classes.len());
    let spec = with_projection_head(spec, &input, teacher_dim, &inner)?;
    let HeadSpec::Projection { hidden: embedding, .. } = spec.head else { unreachable!("a projection head") };
    let hash = run_hash(&config, &serde_json::json!({"teacher": teacher_meta.weights_sha256}))?;
    let weights = args.out.join("model.safetensors");
    if let Output::Finished(summary) = claim_output(&args.out, &weights, &config, &hash)? {
        return print_summary(summary, serde_json::Value::Null);
    }
    let negatives = negatives(&config, &teacher, output, teacher_dim, &data, &input, &inner)?;
    let mut seed = Seed::new(teacher, output, negatives, (config.tau_student, config.tau_teacher), &inner);
    inner.seed(config.run.seed);
    let network = spec.init(&inner.clone().autodiff())?;
    tracing::info!(
        "SEED: {} ({:.3} M parameters, {embedding}-d embedding -> {teacher_dim}-d) from {} ({:?} output), tau_S {} tau_T {}",
        spec.arch,
        kd_common::models::trainable_params(&network) as f64 / 1e6,
        config.teacher.display(),
        output,
        config.tau_student,
        config.tau_teacher
    );
    let (workers, run_seed) = (config.run.workers, config.run.seed);
    let mut loader_config = LoaderConfig::new(config.train.batch_size, true, true, workers, run_seed);
    loader_config.labelled = false;
    let transform = Transform { augment: config.augment.clone(), ..eval_transform(&input) };
    let train_loader = BatchLoader::new(data.train.clone(), transform, loader_config)?;
    let sources = data.knn_sources(&input, config.knn_bank, workers, run_seed)?;
    let run = Run {
        config: &config.train,
        phases: vec![Phase::epochs(&train_loader, config.train.epochs)],
        validation: KnnSources::validation(sources.as_ref(), config.knn),
        device: &device,
        out_dir: &args.out,
        run_hash: &hash,
    };
    let outcome = train::fit(network, &mut seed, &run)?;
    let network = outcome.model.valid();
    let encoder = TrainedEncoder {
        network: &network,
        spec,
        input,
        train: &data.train,
        config: training_record(&config, &hash)?,
        rows: &outcome.rows,
        resumed_after: outcome.resumed_after,
        tool: "kd-seed",
    };
    print_summary(save_encoder(encoder, sources.as_ref(), config.knn, &inner, &weights)?, serde_json::Value::Null)
}

/// The frozen teacher (eval mode), its sidecar and the output that is its embedding.
fn load_teacher(
    config: &SeedConfig,
    device: &burn::tensor::Device,
) -> Result<(Network, CheckpointMeta, TeacherOutput)> {
    let (teacher, meta) = checkpoint::load(&config.teacher, device)
        .with_context(|| format!("loading the teacher {}", config.teacher.display()))?;
    let output = match (config.teacher_output, meta.model.head) {
        (Some(TeacherOutput::Projection), HeadSpec::Projection { .. }) | (None, HeadSpec::Projection { .. }) => {
            TeacherOutput::Projection
        }
        (Some(TeacherOutput::Projection), head) => bail!(
            "{}: the teacher has no projection head ({head:?}); use --teacher-output features for its pooled features",
            config.teacher.display()
        ),
        _ => TeacherOutput::Features,
    };
    Ok((teacher.valid(), meta, output))
}

/// The training images must have the teacher's channel count.
fn check_data_fits(config: &SeedConfig, data: &SslData, input: &InputSpec) -> Result<()> {
    let data_input = input_spec(config.run.dataset, &data.train, Some(input.height))?;
    ensure!(
        data_input.channels == input.channels,
        "{} reads {}-channel images; {} has {} channels",
        config.teacher.display(),
        input.channels,
        config.run.dataset,
        data_input.channels
    );
    Ok(())
}

/// SEED's negatives: a queue of `dim`-d teacher embeddings, or every training image's embedding.
fn negatives(
    config: &SeedConfig,
    teacher: &Network,
    output: TeacherOutput,
    dim: usize,
    data: &SslData,
    input: &InputSpec,
    device: &burn::tensor::Device,
) -> Result<Negatives> {
    let (workers, seed) = (config.run.workers, config.run.seed);
    Ok(match config.negatives {
        NegativesConfig::Queue { size } => {
            Negatives::Queue(EmbeddingQueue::new(size, dim, config.train.batch_size, seed, device)?)
        }
        NegativesConfig::DatasetBank => {
            let all = loader(data.train.clone(), eval_transform(input), EVAL_BATCH, false, workers, seed)?;
            let mut parts = Vec::new();
            for batch in kd_datasets::BatchSource::pass(&all, 0) {
                parts.push(output.embed(teacher, train::upload::images(&batch?, 0, device)?));
            }
            let bank = Tensor::cat(parts, 0);
            tracing::info!("teacher embeddings of all {} training images as negatives", bank.dims()[0]);
            Negatives::DatasetBank(bank)
        }
    })
}

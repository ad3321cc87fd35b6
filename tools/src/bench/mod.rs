//! `kd-bench` (run by `make bench`): training images/s of ResNet-20 and ResNet-56 on CIFAR-shaped
//! batches, plain vs online KD vs FKD training, and data-loader images/s alone, measured side by
//! side in one process and printed as tables. PyTorch eager trains the same models at the same
//! batch size and thread count in the same run, interleaved with kdkit (`pytorch`), and a second
//! kd-bench binary (e.g. one built on the unpatched burn-flex) can be timed the same way.

pub mod distill;
pub mod imagenet;
pub mod jpeg;
pub mod labels;
pub mod prune;
pub mod pytorch;
pub mod ssl;

use crate::pretrain::CrossEntropy;
use crate::shared::cli::{CommonArgs, default_workers};
use anyhow::{Context, Result};
use burn::module::Module;
use clap::Parser;
use kd_common::device::{self, DeviceSpec, ResolvedDevice};
use kd_common::models::{Arch, ModelSpec};
use kd_common::train::{self, Decay, Objective, OptimizerConfig, Phase, Run, ScheduleConfig, TrainConfig, Validation};
use kd_datasets::{Augment, BatchLoader, BatchSource, Dataset, DatasetKind, LoaderConfig, Split, Storage, Transform};
use std::time::Instant;

/// Measure training and data-loading throughput.
#[derive(Parser, Debug)]
#[command(name = "kd-bench", version, long_about = None)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Timed optimizer steps per configuration (after the warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps (kernel compilation, allocator warm-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "64,128")]
    pub batch_sizes: Vec<usize>,
    /// Architectures to time.
    #[arg(long, value_delimiter = ',', default_value = "resnet20,resnet56")]
    pub archs: Vec<String>,
    /// Batches read in the data-loader benchmark.
    #[arg(long, default_value_t = 200)]
    pub loader_batches: usize,
    /// Sections to run: train, distill, prune, ssl, loader, labels, imagenet (torchvision's
    /// networks at 224 px: minutes on a CPU, so not by default) and jpeg (JPEG-folder loading
    /// against torchvision's).
    #[arg(long, value_delimiter = ',', default_value = "train,distill,prune,ssl,loader,labels")]
    pub sections: Vec<String>,
    /// Batch size of the imagenet section.
    #[arg(long, default_value_t = 32)]
    pub imagenet_batch: usize,
    /// Timed steps per configuration of the imagenet section (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    pub imagenet_steps: usize,
    /// Teacher for the label benchmark (default: a randomly initialised ResNet-56, which
    /// runs at the same speed as a trained one).
    #[arg(long)]
    pub teacher: Option<std::path::PathBuf>,
    /// Threads for kdkit's CPU kernels and for PyTorch (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The Python whose `torch` is timed side by side (`none`: print the fallback constants;
    /// default: `python3` if it imports torch).
    #[arg(long)]
    pub pytorch: Option<String>,
    /// Interleaved rounds per training configuration (kdkit, PyTorch, baseline, in turn).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Another kd-bench binary (e.g. built on the stock burn-flex) timed on the same training
    /// configurations, interleaved.
    #[arg(long)]
    pub baseline_bin: Option<std::path::PathBuf>,
    /// Print only the images/s of the first training configuration (what --baseline-bin reads).
    #[arg(long, hide = true)]
    pub rate_only: bool,
    /// Images labelled in the label benchmark.
    #[arg(long, default_value_t = 2048)]
    pub label_images: usize,
    /// Crops per image in the label benchmark.
    #[arg(long, default_value_t = 8)]
    pub label_crops: usize,
    /// JPEG section: the folder of generated 500x375 JPEGs (made on first use; default
    /// target/bench-jpeg).
    #[arg(long)]
    pub jpeg_dir: Option<std::path::PathBuf>,
    /// JPEG section: images in the folder.
    #[arg(long, default_value_t = 512)]
    pub jpeg_images: usize,
}

/// Hands out `batches` batches per pass, running through the inner source's passes one after
/// another, so a benchmark can time a fixed number of steps of any source.
pub struct Cycled<'a> {
    /// The source.
    pub inner: &'a dyn BatchSource,
    /// Batches per pass.
    pub batches: usize,
}

impl BatchSource for Cycled<'_> {
    fn batches_per_pass(&self) -> usize {
        self.batches
    }

    fn rows_per_pass(&self) -> usize {
        self.batches * self.inner.rows_per_pass() / self.inner.batches_per_pass().max(1)
    }

    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }

    fn pass(&self, pass: u64) -> Box<dyn Iterator<Item = kd_datasets::Result<kd_datasets::Batch>> + '_> {
        let per_inner = self.inner.batches_per_pass().max(1);
        let first = pass as usize * self.batches;
        let skip = first % per_inner;
        let start = (first / per_inner) as u64;
        Box::new((start..).flat_map(move |q| self.inner.pass(q)).skip(skip).take(self.batches))
    }
}

/// Rows per second of `steps` optimizer steps of `objective` over `source`, timed inside the
/// training loop itself ([`kd_common::train::fit`]): one pass of `warmup` untimed steps
/// (kernel compilation, allocator warm-up), then one pass of `steps` whose training rate the
/// loop reports (validation and state saving excluded, as in every run's `metrics.csv`).
pub fn timed_fit<M: Module, O: Objective<M>>(
    model: M,
    objective: &mut O,
    source: &dyn BatchSource,
    steps: usize,
    warmup: usize,
    device: &ResolvedDevice,
) -> Result<f64> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let config = TrainConfig {
        epochs: 2,
        batch_size: 1,
        optimizer: OptimizerConfig::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 },
        schedule: ScheduleConfig { lr: 0.05, warmup_epochs: 0.0, decay: Decay::Constant },
        grad_clip_norm: None,
    };
    let (warm, timed) = (Cycled { inner: source, batches: warmup.max(1) }, Cycled { inner: source, batches: steps });
    let run = Run {
        config: &config,
        phases: vec![Phase::epochs(&warm, 1), Phase::epochs(&timed, 1)],
        validation: Validation::None,
        device,
        out_dir: dir.path(),
        run_hash: "kd-bench",
    };
    let outcome = train::fit(model, objective, &run)?;
    Ok(outcome.rows[1].images_per_s)
}

/// In-memory random images of `side` x `side` x `channels` with 10 classes (the networks' cost
/// does not depend on the pixels).
pub fn random_dataset(images: usize, channels: usize, side: usize) -> Result<Dataset> {
    let pixels: Vec<u8> =
        (0..images * channels * side * side).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let storage = Storage::Memory { pixels, height: side, width: side, channels };
    Ok(Dataset::new(
        "random",
        "train",
        (0..10).map(|c| c.to_string()).collect(),
        storage,
        (0..images).map(|i| (i % 10) as u16).collect(),
    )?)
}

/// Images/s of full training steps (forward, loss, backward, SGD update) of `arch` on
/// CIFAR-shaped random images, through the training loop.
pub fn train_throughput(
    arch: Arch,
    batch: usize,
    steps: usize,
    warmup: usize,
    device: &ResolvedDevice,
    workers: usize,
) -> Result<f64> {
    train_rate(&ModelSpec::new(arch, 3, 10), 32, batch, steps, warmup, device, workers)
}

/// Images/s of full training steps of `spec` on random `side` x `side` images (1024 of them,
/// or two batches when larger than CIFAR's), through the training loop.
pub fn train_rate(
    spec: &ModelSpec,
    side: usize,
    batch: usize,
    steps: usize,
    warmup: usize,
    device: &ResolvedDevice,
    workers: usize,
) -> Result<f64> {
    device.device.seed(0);
    let model = spec.init(&device.device.clone().autodiff())?;
    let transform =
        Transform { augment: Augment::None, out_height: side, out_width: side, mean: vec![0.5; 3], std: vec![0.25; 3] };
    let images = random_dataset(if side <= 32 { 1024 } else { 2 * batch }, 3, side)?;
    let loader = BatchLoader::new(images, transform, LoaderConfig::new(batch, true, true, workers, 0))?;
    timed_fit(model, &mut CrossEntropy { label_smoothing: 0.0 }, &loader, steps, warmup, device)
}

/// The header of a benchmark's FKD label file: `crops` crops per image of `dataset` in FKD's
/// crop family (0.08-1 of the area, aspect 3/4-4/3, flips at 0.5) for `side`-pixel inputs.
pub fn fkd_label_meta(
    dataset: &Dataset,
    classes: usize,
    crops: usize,
    side: usize,
    compression: kd_datasets::soft_labels::Compression,
    geometry: kd_datasets::soft_labels::Geometry,
) -> kd_datasets::soft_labels::LabelMeta {
    kd_datasets::soft_labels::LabelMeta {
        format_version: kd_datasets::soft_labels::file::FORMAT_VERSION,
        num_classes: classes,
        num_images: dataset.len(),
        image_offset: 0,
        crops_per_image: crops,
        compression,
        temperature: 1.0,
        crop: kd_datasets::soft_labels::CropParams {
            scale: [0.08, 1.0],
            ratio: [0.75, 4.0 / 3.0],
            flip_prob: 0.5,
            output_size: [side, side],
        },
        geometry,
        seed: 0,
        teachers: vec![],
        dataset: dataset.identity(),
        shard: None,
        tool: "kd-bench".into(),
        created_unix: 0,
    }
}

/// Images/s of the batch loader alone with the dataset's training augmentation.
pub fn loader_throughput(loader: &BatchLoader, batches: usize) -> Result<f64> {
    let started = Instant::now();
    let mut images = 0;
    let mut epoch = 0;
    while images < batches * loader.config().batch_size {
        for batch in loader.epoch(epoch).take(batches) {
            images += batch?.rows();
        }
        epoch += 1;
    }
    Ok(images as f64 / started.elapsed().as_secs_f64())
}

/// Runs `kd-bench`.
pub fn run(args: Args) -> Result<()> {
    args.common.init_output();
    anyhow::ensure!(args.common.seed.is_none(), "kd-bench times fixed seeds: --seed does not apply");
    // The compute pool has `--threads` threads ([crate::shared::cli::main_with_threads]).
    let threads = rayon::current_num_threads();
    let device = device::resolve(&args.common.device.clone().unwrap_or(DeviceSpec::Auto))?;
    let workers = args.common.workers.unwrap_or_else(default_workers);
    if args.rate_only {
        let (arch, batch) =
            (args.archs.first().context("no --archs")?, *args.batch_sizes.first().context("no --batch-sizes")?);
        outln!("{}", train_throughput(arch.parse()?, batch, args.steps, args.warmup, &device, workers)?);
        return Ok(());
    }
    // Only the train, distill, imagenet and jpeg sections have PyTorch columns.
    let needs_pytorch = ["train", "distill", "imagenet", "jpeg"].iter().any(|s| wants(&args, s));
    let requested = if needs_pytorch { args.pytorch.as_deref() } else { Some("none") };
    let pytorch =
        pytorch::PyTorch::detect(requested, &pytorch::torch_device(&device), threads, args.steps, args.warmup)?;
    outln!(
        "kdkit benchmark on {} ({}, {threads} threads, {workers} loader workers); PyTorch: {}\n",
        device.description,
        crate::shared::machine::cpu_model().unwrap_or_else(|| "unknown CPU".into()),
        pytorch.version.as_deref().map_or("not measured here, constants from a 2-core machine".into(), |v| format!(
            "{v} eager on {}, measured in this run",
            pytorch.device
        ))
    );
    if wants(&args, "train") {
        train_section(&args, &device, workers, &pytorch)?;
    }
    if wants(&args, "imagenet") {
        crate::bench::imagenet::imagenet_section(&args, &device, workers, &pytorch)?;
    }
    if wants(&args, "jpeg") {
        crate::bench::jpeg::jpeg_section(&args, workers, &pytorch)?;
    }
    if ["distill", "prune", "ssl", "loader", "labels"].iter().any(|s| wants(&args, s)) {
        outln!("| what | batch | images/s | PyTorch | kdkit / PyTorch |");
        outln!("|---|---|---|---|---|");
    }
    if wants(&args, "distill") {
        crate::bench::distill::distill_section(&args, &device, workers, &pytorch)?;
    }
    if wants(&args, "prune") {
        crate::bench::prune::prune_section(&args, &device, workers)?;
    }
    if wants(&args, "ssl") {
        crate::bench::ssl::ssl_section(&args, &device, workers)?;
    }
    if wants(&args, "loader") {
        loader_section(&args, workers)?;
    }
    if wants(&args, "labels") {
        crate::bench::labels::labels_section(&args, &device, workers)?;
    }
    Ok(())
}

fn wants(args: &Args, section: &str) -> bool {
    args.sections.iter().any(|s| s == section)
}

/// Images/s of `--baseline-bin` on one training configuration.
fn baseline_rate(bin: &std::path::Path, args: &Args, arch: &str, batch: usize, threads: Option<usize>) -> Result<f64> {
    let mut command = std::process::Command::new(bin);
    command.args(["--rate-only", "--sections", "train", "--archs", arch]).args([
        "--batch-sizes".to_string(),
        batch.to_string(),
        "--steps".to_string(),
        args.steps.to_string(),
        "--warmup".to_string(),
        args.warmup.to_string(),
    ]);
    if let Some(device) = &args.common.device {
        command.args(["--device", &device.to_string()]);
    }
    if let Some(threads) = threads {
        command.args(["--threads", &threads.to_string()]);
    }
    let out = command.output().with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        anyhow::bail!("{} failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().with_context(|| format!("{} printed {text:?}", bin.display()))
}

/// Images and seconds summed over rounds: the rate is images / seconds.
#[derive(Default, Clone, Copy)]
pub struct Tally {
    images: f64,
    seconds: f64,
}

impl Tally {
    /// Adds one measurement of `images` at `rate` images/s.
    pub fn add(&mut self, images: f64, rate: f64) {
        self.images += images;
        self.seconds += images / rate;
    }

    /// Images/s over every measurement.
    pub fn rate(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.images / self.seconds)
    }
}

/// Training throughput of each model and batch size: kdkit, PyTorch and the baseline binary,
/// in turn, for `--rounds` rounds.
fn train_section(args: &Args, device: &ResolvedDevice, workers: usize, pytorch: &pytorch::PyTorch) -> Result<()> {
    let baseline = args.baseline_bin.as_deref();
    out!("| train (plain, CIFAR-shaped) | batch | kdkit images/s | PyTorch images/s | kdkit / PyTorch |");
    outln!("{}", if baseline.is_some() { " baseline images/s | kdkit / baseline |" } else { "" });
    outln!("|---|---|---|---|---|{}", if baseline.is_some() { "---|---|" } else { "" });
    for name in &args.archs {
        let arch: Arch = name.parse()?;
        for &batch in &args.batch_sizes {
            let images = (args.steps * batch) as f64;
            let (mut ours, mut theirs, mut base) = (Tally::default(), Tally::default(), Tally::default());
            let mut torch_figure = pytorch::Figure::Unknown;
            for _ in 0..args.rounds.max(1) {
                ours.add(images, train_throughput(arch, batch, args.steps, args.warmup, device, workers)?);
                torch_figure = pytorch.figure(name, batch, None)?;
                if let pytorch::Figure::Measured(rate) = torch_figure {
                    theirs.add(images, rate);
                }
                if let Some(bin) = baseline {
                    base.add(images, baseline_rate(bin, args, name, batch, args.threads)?);
                }
            }
            let rate = ours.rate().unwrap_or(0.0);
            let figure = theirs.rate().map_or(torch_figure, pytorch::Figure::Measured);
            out!("| {name} | {batch} | {rate:.1} | {} | {} |", figure.cell(), figure.ratio(rate));
            match base.rate() {
                Some(b) => outln!(" {b:.1} | {:.2} |", rate / b),
                None => outln!(),
            }
        }
    }
    outln!();
    Ok(())
}

fn loader_section(args: &Args, workers: usize) -> Result<()> {
    // Data loading alone: Fashion-MNIST when installed, else CIFAR-shaped random images.
    let kind = args.common.dataset.unwrap_or(DatasetKind::FashionMnist);
    let dataset =
        match kind.open(args.common.data_dir.as_deref(), Split::Train, 3, crate::shared::run::FOLDER_TEST_FRACTION) {
            Ok(dataset) => dataset,
            Err(error) => {
                tracing::warn!(
                    "{:#}; timing the loader on random 32x32 RGB images instead",
                    anyhow::Error::from(error)
                );
                random_dataset(10_000, 3, 32)?
            }
        };
    let (h, w) = dataset.fixed_size().unwrap_or((32, 32));
    let (mean, std) = kind.normalisation();
    let channels = dataset.channels();
    let transform = Transform {
        augment: if dataset.name == "random" { Augment::PadCrop { pad: 4, flip: true } } else { kind.train_augment() },
        out_height: h,
        out_width: w,
        mean: if mean.len() == channels { mean } else { vec![0.5; channels] },
        std: if std.len() == channels { std } else { vec![0.25; channels] },
    };
    let name = format!("load + augment {} {h}x{w}", dataset.name);
    let loader = BatchLoader::new(dataset, transform, LoaderConfig::new(128, true, true, workers, 0))?;
    let rate = loader_throughput(&loader, args.loader_batches)?;
    outln!("| {name} | 128 | {rate:.0} | - | - |");
    Ok(())
}

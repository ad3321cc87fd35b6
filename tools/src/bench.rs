//! `kd-bench` (run by `make bench`): training images/s of ResNet-20 and ResNet-56 on CIFAR-shaped
//! batches, plain vs online KD vs FKD training, and data-loader images/s alone, measured side by side in one process and printed as
//! a table with the PyTorch reference figures for the same machine class.

use crate::cli::{CommonArgs, default_workers};
use anyhow::Result;
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use clap::Parser;
use kd_common::device::{self, DeviceSpec};
use kd_common::losses::cross_entropy_with_smoothing;
use kd_common::models::{Arch, ModelSpec};
use kd_common::train::{Decay, OptimizerConfig, ScheduleConfig};
use kd_datasets::{Augment, BatchLoader, Dataset, DatasetKind, LoaderConfig, Split, Storage, Transform};
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
    /// Sections to run: train, distill, loader, labels.
    #[arg(long, value_delimiter = ',', default_value = "train,distill,loader,labels")]
    pub sections: Vec<String>,
    /// Teacher for the label benchmark (default: a randomly initialised ResNet-56, which
    /// runs at the same speed as a trained one).
    #[arg(long)]
    pub teacher: Option<std::path::PathBuf>,
    /// Images labelled in the label benchmark.
    #[arg(long, default_value_t = 2048)]
    pub label_images: usize,
    /// Crops per image in the label benchmark.
    #[arg(long, default_value_t = 8)]
    pub label_crops: usize,
}

/// PyTorch eager on a 2-core CPU, 2 threads, batch 64 (the reference figures).
fn pytorch_reference(arch: &str, batch: usize) -> Option<f64> {
    match (arch, batch) {
        ("resnet20", 64) => Some(218.0),
        ("resnet56", 64) => Some(83.0),
        _ => None,
    }
}

/// Images/s of full training steps (forward, loss, backward, SGD update) on random
/// CIFAR-shaped data.
pub fn train_throughput(
    arch: Arch,
    batch: usize,
    steps: usize,
    warmup: usize,
    device: &burn::tensor::Device,
) -> Result<f64> {
    let ad = device.clone().autodiff();
    device.seed(0);
    let mut model = ModelSpec::new(arch, 3, 10).init(&ad)?;
    let mut optim = OptimizerConfig::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 }.build(None);
    let schedule = ScheduleConfig { lr: 0.05, warmup_epochs: 0.0, decay: Decay::Constant };
    let images = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), device).into_data();
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % 10).collect();
    let mut started = Instant::now();
    for step in 0..warmup + steps {
        if step == warmup {
            started = Instant::now();
        }
        let x = Tensor::<4>::from_data(images.clone(), &ad);
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [batch]), &ad);
        let loss = cross_entropy_with_smoothing(model.forward(x), y, 0.0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(schedule.lr_at(step, 1, 1), model, grads);
        // Reading the loss waits for the step to finish on asynchronous devices.
        let value = loss.into_scalar::<f32>();
        anyhow::ensure!(value.is_finite(), "loss became {value} during the benchmark");
    }
    Ok((steps * batch) as f64 / started.elapsed().as_secs_f64())
}

/// Images/s of the batch loader alone with the dataset's training augmentation.
pub fn loader_throughput(loader: &BatchLoader, batches: usize) -> Result<f64> {
    let started = Instant::now();
    let mut images = 0;
    let mut epoch = 0;
    while images < batches * loader.config().batch_size {
        for batch in loader.epoch(epoch).take(batches) {
            images += batch?.labels.len();
        }
        epoch += 1;
    }
    Ok(images as f64 / started.elapsed().as_secs_f64())
}

/// Runs `kd-bench`.
pub fn run(args: Args) -> Result<()> {
    args.common.init_output();
    let device = device::resolve(&args.common.device.clone().unwrap_or(DeviceSpec::Auto))?;
    let workers = args.common.workers.unwrap_or_else(default_workers);
    println!("kdkit benchmark on {} ({} loader workers)\n", device.description, workers);
    println!("| what | batch | images/s | PyTorch (2-core CPU) | kdkit / PyTorch |");
    println!("|---|---|---|---|---|");
    let wants = |section: &str| args.sections.iter().any(|s| s == section);
    if wants("train") {
        train_section(&args, &device.device)?;
    }
    if wants("distill") {
        crate::bench_distill::distill_section(&args, &device, workers)?;
    }
    if wants("loader") {
        loader_section(&args, workers)?;
    }
    if wants("labels") {
        crate::bench_labels::labels_section(&args, &device, workers)?;
    }
    Ok(())
}

fn train_section(args: &Args, device: &burn::tensor::Device) -> Result<()> {
    for name in &args.archs {
        let arch: Arch = name.parse()?;
        for &batch in &args.batch_sizes {
            let rate = train_throughput(arch, batch, args.steps, args.warmup, device)?;
            let reference = pytorch_reference(name, batch);
            println!(
                "| train {name} | {batch} | {rate:.1} | {} | {} |",
                reference.map(|r| format!("{r:.0}")).unwrap_or_else(|| "-".into()),
                reference.map(|r| format!("{:.2}", rate / r)).unwrap_or_else(|| "-".into())
            );
        }
    }
    Ok(())
}

fn loader_section(args: &Args, workers: usize) -> Result<()> {
    // Data loading alone: Fashion-MNIST when installed, else CIFAR-shaped random images.
    let kind = args.common.dataset.unwrap_or(DatasetKind::FashionMnist);
    let dataset = match kind.open(args.common.data_dir.as_deref(), Split::Train, 3, 0.1, 0) {
        Ok(dataset) => dataset,
        Err(error) => {
            tracing::warn!("{error}; timing the loader on random 32x32 RGB images instead");
            let pixels: Vec<u8> = (0..10_000 * 3072).map(|i| (i * 2_654_435_761usize >> 13) as u8).collect();
            let storage = Storage::Memory { pixels, height: 32, width: 32, channels: 3 };
            Dataset::new(
                "random",
                "train",
                (0..10).map(|c| c.to_string()).collect(),
                storage,
                (0..10_000).map(|i| (i % 10) as u16).collect(),
            )?
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
    let loader = BatchLoader::new(
        dataset,
        transform,
        LoaderConfig { batch_size: 128, shuffle: true, drop_last: true, workers, prefetch: 4, seed: 0 },
    )?;
    let rate = loader_throughput(&loader, args.loader_batches)?;
    println!("| {name} | 128 | {rate:.0} | - | - |");
    Ok(())
}

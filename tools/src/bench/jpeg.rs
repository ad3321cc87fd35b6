//! The JPEG part of `kd-bench` (`--sections jpeg`): kdkit's image-folder loading against
//! torchvision's `ImageFolder` + `DataLoader` (PIL) in the same run, on a folder of real-sized
//! JPEGs it generates (`--jpeg-images` of 500x375 pixels at quality 90, 4:2:0, ImageNet's typical size,
//! smooth colour fields with noise, as photographs compress; kept in `--jpeg-dir` for later
//! runs). Rows: the ImageNet training transform (random-resized crop to 224, flip, normalise),
//! FKD's multi-crop read (four crops cut from each decoded image), and a full-size
//! decode on one thread. Both sides use `--workers` workers (threads for kdkit, processes for
//! PyTorch), one epoch to warm up and the next timed.

use crate::bench::pytorch::{Figure, PyTorch};
use crate::bench::{Args, Tally};
use anyhow::{Context, Result};
use kd_datasets::soft_labels::{Compression, Geometry, LabelBlock, LabelReader, LabelType, ProbEncoding, RegionLabels};
use kd_datasets::{Augment, BatchLoader, Dataset, LoaderConfig, RegionSampling, Transform};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// One kdkit measurement: rows per second.
type Measure<'a> = dyn Fn() -> Result<f64> + 'a;

const SIDE: usize = 224;
const CLASSES: usize = 4;
const FKD_CROPS: usize = 4;
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Writes `count` 500x375 quality-90 JPEGs into `dir/<class>/`, unless they are there.
fn make_folder(dir: &Path, count: usize) -> Result<()> {
    use rand::{Rng, SeedableRng};
    let last = dir.join(format!("class{}", (count - 1) % CLASSES)).join(format!("{}.jpg", count - 1));
    if last.exists() {
        return Ok(());
    }
    tracing::info!("writing {count} JPEGs into {}", dir.display());
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let (w, h) = (500usize, 375usize);
    for i in 0..count {
        let class_dir = dir.join(format!("class{}", i % CLASSES));
        std::fs::create_dir_all(&class_dir).with_context(|| format!("creating {}", class_dir.display()))?;
        // Per channel, six plane waves of random frequency, phase and amplitude around grey.
        let waves: Vec<[f32; 4]> = (0..18)
            .map(|_| {
                [
                    rng.random_range(0.002..0.08),
                    rng.random_range(0.002..0.08),
                    rng.random_range(0.0..6.3),
                    rng.random_range(10.0..40.0),
                ]
            })
            .collect();
        let mut pixels = vec![0u8; h * w * 3];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let field: f32 = waves[c * 6..c * 6 + 6]
                        .iter()
                        .map(|[fx, fy, phase, amplitude]| amplitude * (fx * x as f32 + fy * y as f32 + phase).sin())
                        .sum();
                    let noise = rng.random_range(-20.0f32..20.0);
                    pixels[(y * w + x) * 3 + c] = (128.0 + field + noise).clamp(0.0, 255.0) as u8;
                }
            }
        }
        let image = kd_datasets::image::Image::new(h, w, 3, pixels);
        kd_datasets::folder::write_jpeg(&class_dir.join(format!("{i}.jpg")), &image, 90)?;
    }
    Ok(())
}

/// Rows/s of the second epoch of `loader` (the first warms the page cache and the workers).
fn second_epoch_rate(loader: &BatchLoader) -> Result<f64> {
    for batch in loader.epoch(0) {
        batch?;
    }
    let started = Instant::now();
    let mut rows = 0;
    for batch in loader.epoch(1) {
        rows += batch?.rows();
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

fn transform(augment: Augment) -> Transform {
    Transform { augment, out_height: SIDE, out_width: SIDE, mean: MEAN.to_vec(), std: STD.to_vec() }
}

/// FKD's read with labels from an in-memory label file whose crops come from per-image seeds
/// (FKD's crop family: 0.08-1 of the area, flips at 0.5), hard labels.
fn fkd_loader(dataset: &Dataset, batch: usize, workers: usize) -> Result<BatchLoader> {
    let images = dataset.len();
    let compression = Compression { label_type: LabelType::Hard, k: 1, encoding: ProbEncoding::U8 };
    let meta = crate::bench::fkd_label_meta(dataset, CLASSES, FKD_CROPS, SIDE, compression, Geometry::Seed);
    let block = LabelBlock {
        images,
        seeds: (0..images as u64).collect(),
        indices: (0..images * FKD_CROPS).map(|i| (i / FKD_CROPS % CLASSES) as u32).collect(),
        ..Default::default()
    };
    let labels = RegionLabels::from_block(meta, block, Path::new("kd-bench-labels.h5"))?;
    let sampling =
        RegionSampling::new(Arc::new(LabelReader::Memory(labels)), FKD_CROPS, (0..images).collect(), dataset)?;
    let config = LoaderConfig::new(batch / FKD_CROPS, true, true, workers, 0);
    Ok(BatchLoader::with_regions(dataset.clone(), transform(Augment::None), config, sampling)?)
}

/// Images/s of reading and decoding every file at full size on this thread, after a warm-up
/// pass.
fn decode_rate(dataset: &Dataset) -> Result<f64> {
    let pass = || -> Result<()> {
        for i in 0..dataset.len() {
            dataset.image(i)?;
        }
        Ok(())
    };
    pass()?;
    let started = Instant::now();
    pass()?;
    Ok(dataset.len() as f64 / started.elapsed().as_secs_f64())
}

/// The section's table.
pub fn jpeg_section(args: &Args, workers: usize, pytorch: &PyTorch) -> Result<()> {
    let dir = args.jpeg_dir.clone().unwrap_or_else(|| "target/bench-jpeg".into());
    make_folder(&dir, args.jpeg_images)?;
    let dataset = kd_datasets::folder::open(&dir, "train", 3)?;
    let batch = 64;
    let train = BatchLoader::new(
        dataset.clone(),
        transform(Augment::RandomResizedCrop { scale: [0.08, 1.0], ratio: [0.75, 4.0 / 3.0], flip: true }),
        LoaderConfig::new(batch, true, true, workers, 0),
    )?;
    let fkd = fkd_loader(&dataset, batch, workers)?;
    let folder = dir.to_string_lossy();
    let theirs = |mode: &str| -> Result<Figure> {
        pytorch.run_script(
            "torchvision_loader.py",
            &["--dir", &folder, "--mode", mode, "--workers", &workers.to_string(), "--batch", &batch.to_string()],
        )
    };
    outln!(
        "| JPEG loading, {} files of 500x375 at quality 90, {workers} workers, {} rounds | kdkit /s | torchvision (PIL) /s | kdkit / torchvision |",
        dataset.len(),
        args.rounds.max(1)
    );
    outln!("|---|---|---|---|");
    let rows: [(&str, &Measure, &str); 3] = [
        (
            "training transform, images (random-resized crop 224, flip, normalise)",
            &|| second_epoch_rate(&train),
            "train",
        ),
        ("FKD read, crops (4 crops per decoded image)", &|| second_epoch_rate(&fkd), "fkd"),
        ("full-size decode on one thread, images", &|| decode_rate(&dataset), "decode"),
    ];
    for (what, ours, mode) in rows {
        // kdkit and torchvision in turn; each round times one epoch (the same rows), so the
        // figure is the harmonic mean of the rounds' rates.
        let (mut kdkit, mut torchvision) = (Tally::default(), Tally::default());
        for _ in 0..args.rounds.max(1) {
            kdkit.add(1.0, ours()?);
            if let Figure::Measured(rate) = theirs(mode)? {
                torchvision.add(1.0, rate);
            }
        }
        let rate = kdkit.rate().unwrap_or(0.0);
        let figure = torchvision.rate().map_or(Figure::Unknown, Figure::Measured);
        outln!("| {what} | {rate:.0} | {} | {} |", figure.cell(), figure.ratio(rate));
    }
    outln!();
    Ok(())
}

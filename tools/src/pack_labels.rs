//! `kd-pack-labels`: FKD region-level soft labels (Shen & Xing, ECCV 2022, §3). For every
//! training image, draw M random-resized crops with random flips, run the teacher (or the
//! average softmax of an ensemble, as MEAL V2 does) on every crop at temperature T, compress each
//! crop's distribution, and write everything into one HDF5 file that students train from without
//! ever running the teacher. Subcommands: `stats`, `verify`, `merge`.

use crate::cli::{CommonArgs, default_workers};
use crate::teachers::Teachers;
use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand};
use kd_common::checkpoint::InputSpec;
use kd_common::device::{self, DeviceSpec};
use kd_datasets::soft_labels::file::{LabelBlock, inspect, partial_path};
use kd_datasets::soft_labels::geometry::{crops_from_seed, decode_box, image_seed};
use kd_datasets::soft_labels::{
    Compression, CropParams, Geometry, LabelMeta, LabelType, LabelWriter, ProbEncoding, RegionLabels, TeacherInfo,
};
use kd_datasets::transforms::crop_resize;
use kd_datasets::{Augment, Dataset, DatasetKind, Split, Transform};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Pack FKD region-level soft labels into one HDF5 file.
#[derive(Parser, Debug)]
#[command(name = "kd-pack-labels", version, long_about = None, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub pack: PackArgs,
}

/// Subcommands besides packing.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Entropy, mass outside top-K, teacher-vs-label agreement per class, bytes per crop (JSON).
    Stats {
        /// The label file.
        file: PathBuf,
        /// Dataset directory (default: the standard location of the file's dataset).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Read every chunk (fletcher32 checksums) and check the schema; exit 2 on any problem.
    Verify {
        /// The label file.
        file: PathBuf,
    },
    /// Join shard files (`--shard i/n`) into one file.
    Merge {
        /// The merged file.
        #[arg(long)]
        out: PathBuf,
        /// Shard files, in any order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
}

/// Packing options.
#[derive(clap::Args, Debug)]
pub struct PackArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Teacher checkpoint; repeat for an ensemble (average of softmax probabilities).
    #[arg(long = "teacher", required = true)]
    pub teachers: Vec<PathBuf>,
    /// Output file.
    #[arg(long, default_value = "labels.h5")]
    pub out: PathBuf,
    /// Crops per image (FKD: 500).
    #[arg(long, default_value_t = 500)]
    pub crops: usize,
    /// Compression: hard, smoothing, marginal-smoothing, marginal-renorm, full.
    #[arg(long, default_value = "marginal-smoothing", value_parser = parse_label_type)]
    pub label_type: LabelType,
    /// K of the top-K types.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Probability encoding: u8 (round(255 p)) or f16.
    #[arg(long, default_value = "u8", value_parser = parse_encoding)]
    pub prob_encoding: ProbEncoding,
    /// Crop geometry: stored (9 bytes per crop) or seed (regenerated from a per-image seed).
    #[arg(long, default_value = "stored", value_parser = ["stored", "seed"])]
    pub geometry: String,
    /// Teacher softmax temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Crop area range (fractions of the image).
    #[arg(long, num_args = 2, default_values_t = [0.08f32, 1.0])]
    pub scale: Vec<f32>,
    /// Crop aspect-ratio range (width / height).
    #[arg(long, num_args = 2, default_values_t = [0.75f32, 4.0 / 3.0])]
    pub ratio: Vec<f32>,
    /// Probability of a horizontal flip.
    #[arg(long, default_value_t = 0.5)]
    pub flip_prob: f32,
    /// Crops per teacher forward pass.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Pack only slice i of n of the images (0-based), e.g. `--shard 2/8`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Replace an existing complete output file.
    #[arg(long)]
    pub force: bool,
}

fn parse_label_type(text: &str) -> Result<LabelType, String> {
    text.parse().map_err(|e: kd_datasets::DataError| e.to_string())
}

fn parse_encoding(text: &str) -> Result<ProbEncoding, String> {
    text.parse().map_err(|e: kd_datasets::DataError| e.to_string())
}

/// Runs `kd-pack-labels`.
pub fn run(args: Args) -> Result<()> {
    match args.command {
        Some(Command::Stats { file, data_dir }) => stats(&file, data_dir.as_deref()),
        Some(Command::Verify { file }) => verify(&file),
        Some(Command::Merge { out, shards, force }) => merge(&out, &shards, force),
        None => {
            let summary = pack(args.pack)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
    }
}

fn parse_shard(text: &str) -> Result<(usize, usize)> {
    let (i, n) = text.split_once('/').with_context(|| format!("--shard `{text}` is not i/n"))?;
    let (i, n): (usize, usize) = (i.parse().context("--shard index")?, n.parse().context("--shard count")?);
    ensure!(n > 0 && i < n, "--shard {i}/{n}: the index must be below the count");
    Ok((i, n))
}

/// Crops of a block of images, normalised for each distinct teacher input normalisation.
pub struct CropBlock {
    /// Normalised crops per teacher, NCHW.
    pub inputs: Vec<Vec<f32>>,
    /// Geometry and seeds of the block, without labels yet.
    pub labels: LabelBlock,
}

/// Builds the crops of images `range` (dataset positions), exactly as readers rebuild them.
pub fn make_crop_block(
    dataset: &Dataset,
    range: std::ops::Range<usize>,
    meta: &LabelMeta,
    normalisers: &[Transform],
) -> kd_datasets::Result<CropBlock> {
    let m = meta.crops_per_image;
    let [oh, ow] = meta.crop.output_size;
    let mut inputs = vec![Vec::with_capacity(range.len() * m * dataset.channels() * oh * ow); normalisers.len()];
    let mut labels = LabelBlock { images: range.len(), ..Default::default() };
    for index in range {
        let image = dataset.image(index)?;
        let seed = image_seed(meta.seed, index as u64);
        labels.seeds.push(seed);
        for (raw, flip) in crops_from_seed(seed, m, image.height, image.width, &meta.crop) {
            let pixel_box = decode_box(raw).to_pixels(image.height, image.width);
            let crop = crop_resize(&image, pixel_box, flip, oh, ow);
            for (t, normaliser) in normalisers.iter().enumerate() {
                normaliser.normalise_into(&crop, &mut inputs[t]);
            }
            if meta.geometry == Geometry::Stored {
                labels.boxes.extend_from_slice(&raw);
                labels.flips.push(flip as u8);
            }
        }
    }
    Ok(CropBlock { inputs, labels })
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Images per block: the unit of work, of HDF5 writes and of resume.
fn block_images(crops: usize) -> usize {
    (1024 / crops).max(1)
}

/// Packs labels as `args` says; returns the summary that the tool prints.
pub fn pack(args: PackArgs) -> Result<serde_json::Value> {
    args.common.init_output();
    ensure!(args.crops > 0, "--crops must be positive");
    ensure!(args.batch_size > 0, "--batch-size must be positive");
    ensure!(args.temperature > 0.0, "--temperature must be positive");
    let device = device::resolve(&args.common.device.clone().unwrap_or(DeviceSpec::Auto))?;
    tracing::info!("device: {}", device.description);
    if args.out.exists() && !args.force {
        let state = match inspect(&args.out) {
            Ok((_, true, _)) => "a complete label file",
            _ => "a file",
        };
        bail!("{} already exists ({state}); use --force to replace it", args.out.display());
    }
    let parent = args.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    kd_common::atomic::ensure_writable_dir(parent)
        .with_context(|| format!("output directory of {}", args.out.display()))?;

    let teachers = Teachers::load(&args.teachers, &device.device)?;
    let first = &teachers.metas[0];
    let kind = args.common.dataset.or_else(|| first.trained_on()).unwrap_or(DatasetKind::FashionMnist);
    let data_dir =
        args.common.data_dir.clone().or_else(|| first.trained_data_dir().filter(|_| args.common.dataset.is_none()));
    let seed = args.common.seed.unwrap_or(0);
    let dataset = kind.open(data_dir.as_deref(), Split::Train, first.input.channels, 0.1, seed)?;
    let classes = first.model.num_classes;
    ensure!(
        dataset.num_classes() == classes,
        "teacher {} has {classes} classes but {kind} has {}",
        args.teachers[0].display(),
        dataset.num_classes()
    );
    ensure!(
        dataset.channels() == first.input.channels,
        "teacher expects {} input channel(s) but {kind} images have {}",
        first.input.channels,
        dataset.channels()
    );
    let compression = Compression { label_type: args.label_type, k: args.top_k, encoding: args.prob_encoding };
    compression.validate(classes)?;
    ensure!(
        args.scale[0] > 0.0 && args.scale[0] <= args.scale[1] && args.scale[1] <= 1.0,
        "--scale must satisfy 0 < min <= max <= 1"
    );
    ensure!(args.ratio[0] > 0.0 && args.ratio[0] <= args.ratio[1], "--ratio must satisfy 0 < min <= max");
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    let total = dataset.len();
    let (start, end) = match shard {
        Some((i, n)) => (i * total / n, (i + 1) * total / n),
        None => (0, total),
    };
    let meta = LabelMeta {
        format_version: kd_datasets::soft_labels::file::FORMAT_VERSION,
        num_classes: classes,
        num_images: end - start,
        image_offset: start,
        crops_per_image: args.crops,
        compression,
        temperature: args.temperature,
        crop: CropParams {
            scale: [args.scale[0], args.scale[1]],
            ratio: [args.ratio[0], args.ratio[1]],
            flip_prob: args.flip_prob,
            output_size: [first.input.height, first.input.width],
        },
        geometry: if args.geometry == "seed" { Geometry::Seed } else { Geometry::Stored },
        seed,
        teachers: teachers
            .metas
            .iter()
            .map(|m| TeacherInfo { arch: m.model.arch.to_string(), weights_sha256: m.weights_sha256.clone() })
            .collect(),
        dataset: dataset.identity(),
        shard,
        tool: format!("kd-pack-labels {}", env!("CARGO_PKG_VERSION")),
        created_unix: now_unix(),
    };
    let (writer, done) = LabelWriter::create_or_resume(&args.out, &meta)?;
    if done > 0 {
        tracing::info!("resuming after {done} of {} images", meta.num_images);
    }
    let normalisers: Vec<Transform> = teachers
        .metas
        .iter()
        .map(|m| Transform {
            augment: Augment::None,
            out_height: m.input.height,
            out_width: m.input.width,
            mean: m.input.mean.clone(),
            std: m.input.std.clone(),
        })
        .collect();
    let workers = args.common.workers.unwrap_or_else(default_workers).max(1);
    let started = Instant::now();
    let crops_done =
        run_pipeline(&dataset, &meta, start, done, &teachers, &normalisers, writer, &args, &device.device, workers)?;
    let seconds = started.elapsed().as_secs_f64();
    let (_, complete, _) = inspect(&args.out)?;
    ensure!(complete, "{} was not marked complete", args.out.display());
    let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    let crops_total = meta.num_images * meta.crops_per_image;
    let summary = serde_json::json!({
        "file": args.out,
        "images": meta.num_images,
        "crops": crops_total,
        "crops_per_s": crops_done as f64 / seconds.max(1e-9),
        "seconds": seconds,
        "raw_bytes_per_crop": meta.raw_bytes_per_crop(),
        "file_bytes_per_crop": size as f64 / crops_total.max(1) as f64,
    });
    tracing::info!(
        "wrote {} ({} images x {} crops, {:.1} bytes/crop on disk) in {seconds:.1} s",
        args.out.display(),
        meta.num_images,
        meta.crops_per_image,
        size as f64 / crops_total.max(1) as f64
    );
    Ok(summary)
}

/// Workers build crop blocks ahead, this thread runs the teachers, a writer thread compresses and
/// writes: the teacher never waits on decoding or on HDF5. Returns the crops labelled.
#[allow(clippy::too_many_arguments)]
fn run_pipeline(
    dataset: &Dataset,
    meta: &LabelMeta,
    start: usize,
    done: usize,
    teachers: &Teachers,
    normalisers: &[Transform],
    mut writer: LabelWriter,
    args: &PackArgs,
    device: &burn::tensor::Device,
    workers: usize,
) -> Result<usize> {
    let per_block = block_images(meta.crops_per_image);
    let n = meta.num_images;
    let first_block = done / per_block;
    let blocks = n.div_ceil(per_block);
    let [oh, ow] = meta.crop.output_size;
    let c = dataset.channels();
    let bar = kd_common::progress::bar(
        ((blocks - first_block) * per_block).min(n - first_block * per_block) as u64,
        "label images",
    );
    let mut crops_done = 0;
    std::thread::scope(|scope| -> Result<()> {
        let next = Arc::new(AtomicUsize::new(first_block));
        let window = workers + 2;
        let (token_tx, token_rx) = crossbeam_channel::bounded::<()>(window);
        for _ in 0..window {
            token_tx.send(()).expect("room for the window");
        }
        let (block_tx, block_rx) = crossbeam_channel::unbounded::<(usize, kd_datasets::Result<CropBlock>)>();
        for _ in 0..workers {
            let (next, tokens, results) = (next.clone(), token_rx.clone(), block_tx.clone());
            scope.spawn(move || {
                while tokens.recv().is_ok() {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= blocks {
                        break;
                    }
                    let range = start + b * per_block..start + ((b + 1) * per_block).min(n);
                    if results.send((b, make_crop_block(dataset, range, meta, normalisers))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(block_tx);
        let (write_tx, write_rx) = crossbeam_channel::bounded::<(usize, LabelBlock, Vec<f32>)>(2);
        let write_meta = meta.clone();
        // Test hook: abort the process (as a kill would) after this many blocks were written.
        let abort_after: Option<usize> = std::env::var("KD_PACK_ABORT_AFTER_BLOCKS").ok().and_then(|v| v.parse().ok());
        let writer_thread = scope.spawn(move || -> kd_datasets::Result<LabelWriter> {
            for (written, (b, mut block, probabilities)) in write_rx.into_iter().enumerate() {
                encode_block(&write_meta, &mut block, &probabilities);
                writer.write_block(b * per_block, &block)?;
                if abort_after == Some(written + 1) {
                    std::process::abort();
                }
            }
            Ok(writer)
        });
        let mut pending = BTreeMap::new();
        let result = (|| -> Result<()> {
            for b in first_block..blocks {
                while !pending.contains_key(&b) {
                    let (index, block) = block_rx.recv().context("a crop worker stopped")?;
                    pending.insert(index, block);
                }
                let block = pending.remove(&b).expect("present").context("preparing crops")?;
                let _ = token_tx.try_send(());
                let crops = block.labels.images * meta.crops_per_image;
                let mut probabilities = Vec::with_capacity(crops * meta.num_classes);
                let crop_len = c * oh * ow;
                for batch_start in (0..crops).step_by(args.batch_size) {
                    let batch_end = (batch_start + args.batch_size).min(crops);
                    let inputs: Vec<Vec<f32>> = block
                        .inputs
                        .iter()
                        .map(|all| all[batch_start * crop_len..batch_end * crop_len].to_vec())
                        .collect();
                    let shape = [batch_end - batch_start, c, oh, ow];
                    probabilities.extend(teachers.probabilities(&inputs, shape, meta.temperature, device)?);
                }
                crops_done += crops;
                bar.inc(block.labels.images as u64);
                write_tx
                    .send((b, block.labels, probabilities))
                    .map_err(|_| anyhow::anyhow!("the HDF5 writer stopped"))?;
            }
            Ok(())
        })();
        drop(token_tx);
        drop(write_tx);
        let writer = writer_thread.join().map_err(|_| anyhow::anyhow!("the HDF5 writer panicked"))?;
        // A failed write (disk full, I/O error) stops the teacher loop too: report its cause,
        // which names the file.
        let writer = writer?;
        result?;
        bar.finish_and_clear();
        writer.finish(&args.out)?;
        Ok(())
    })?;
    Ok(crops_done)
}

/// Compresses the teacher distributions `[crops, C]` of a block into its label arrays.
pub fn encode_block(meta: &LabelMeta, block: &mut LabelBlock, probabilities: &[f32]) {
    let classes = meta.num_classes;
    for p in probabilities.chunks_exact(classes) {
        let encoded = meta.compression.encode(p);
        block.indices.extend_from_slice(&encoded.indices);
        block.probs.extend_from_slice(&encoded.probs);
    }
}

/// Mean entropy (nats) of a distribution list.
fn entropy(p: &[f32]) -> f64 {
    p.iter().filter(|&&v| v > 0.0).map(|&v| -(v as f64) * (v as f64).ln()).sum()
}

fn stats(path: &Path, data_dir: Option<&Path>) -> Result<()> {
    let labels = RegionLabels::open(path)?;
    let meta = &labels.meta;
    let kind: Option<DatasetKind> = meta.dataset.name.parse().ok();
    let dataset = match kind {
        Some(kind) => Some(kind.open(data_dir, Split::Train, 1, 0.1, meta.seed)?),
        None => None,
    };
    let classes = meta.num_classes;
    let (mut entropy_sum, mut outside, mut crops) = (0.0f64, 0.0f64, 0usize);
    let mut agree = vec![(0u64, 0u64); classes];
    let mut q = Vec::with_capacity(classes);
    for image in 0..meta.num_images {
        let label = dataset.as_ref().map(|d| d.label(meta.image_offset + image));
        for crop in 0..meta.crops_per_image {
            labels.distribution_into(image, crop, &mut q);
            entropy_sum += entropy(&q);
            let (indices, probs) = labels.raw(image, crop);
            let kept: f64 = match meta.compression.label_type {
                LabelType::Hard | LabelType::Full => 1.0,
                _ => probs.iter().map(|&r| meta.compression.encoding.decode(r) as f64).sum(),
            };
            outside += (1.0 - kept).max(0.0);
            if let Some(label) = label {
                let top = if indices.is_empty() { kd_common::metrics::argmax(&q) } else { indices[0] as usize };
                agree[label].0 += (top == label) as u64;
                agree[label].1 += 1;
            }
            crops += 1;
        }
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let per_class: Vec<Option<f64>> =
        agree.iter().map(|&(a, n)| (n > 0).then(|| 100.0 * a as f64 / n as f64)).collect();
    let overall = agree.iter().map(|a| a.0).sum::<u64>() as f64 / agree.iter().map(|a| a.1).sum::<u64>().max(1) as f64;
    let output = serde_json::json!({
        "file": path,
        "images": meta.num_images,
        "crops_per_image": meta.crops_per_image,
        "label_type": meta.compression.label_type.name(),
        "top_k": meta.k_indices(),
        "prob_encoding": meta.compression.encoding.name(),
        "geometry": meta.geometry,
        "mean_entropy_nats": entropy_sum / crops.max(1) as f64,
        "mean_mass_outside_top_k": outside / crops.max(1) as f64,
        "teacher_label_agreement": dataset.as_ref().map(|_| 100.0 * overall),
        "teacher_label_agreement_per_class": dataset.as_ref().map(|_| per_class),
        "raw_bytes_per_crop": meta.raw_bytes_per_crop(),
        "file_bytes_per_crop": size as f64 / crops.max(1) as f64,
    });
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

fn verify(path: &Path) -> Result<()> {
    let labels = RegionLabels::open(path).with_context(|| format!("verifying {}", path.display()))?;
    let meta = &labels.meta;
    let mut q = Vec::new();
    for image in 0..meta.num_images {
        for crop in 0..meta.crops_per_image {
            labels.distribution_into(image, crop, &mut q);
            let sum: f32 = q.iter().sum();
            ensure!(
                (sum - 1.0).abs() < 1e-3 && q.iter().all(|v| v.is_finite() && *v >= 0.0),
                "{}: crop {crop} of image {image} decodes to an invalid distribution (sum {sum})",
                path.display()
            );
        }
    }
    println!(
        "{}: ok ({} images x {} crops, {} classes, {} {}, checksums verified)",
        path.display(),
        meta.num_images,
        meta.crops_per_image,
        meta.num_classes,
        meta.compression.label_type,
        meta.compression.encoding.name()
    );
    Ok(())
}

fn merge(out: &Path, shards: &[PathBuf], force: bool) -> Result<()> {
    ensure!(force || !out.exists(), "{} already exists; use --force to replace it", out.display());
    let mut parts: Vec<RegionLabels> = shards
        .iter()
        .map(|p| RegionLabels::open(p).with_context(|| format!("reading shard {}", p.display())))
        .collect::<Result<_>>()?;
    parts.sort_by_key(|p| p.meta.image_offset);
    let first = parts[0].meta.clone();
    let count = first.shard.map(|s| s.1).with_context(|| format!("{} is not a shard file", shards[0].display()))?;
    ensure!(parts.len() == count, "{count} shards expected, {} given", parts.len());
    let mut expected_offset = 0;
    for (i, part) in parts.iter().enumerate() {
        let normalised = LabelMeta {
            num_images: first.num_images,
            image_offset: 0,
            shard: None,
            created_unix: 0,
            ..part.meta.clone()
        };
        ensure!(
            normalised == LabelMeta { image_offset: 0, shard: None, created_unix: 0, ..first.clone() },
            "shard {} was packed with other settings than the first",
            shards[i].display()
        );
        ensure!(
            part.meta.shard == Some((i, count)) && part.meta.image_offset == expected_offset,
            "shards do not tile the dataset: shard {i} starts at image {}",
            part.meta.image_offset
        );
        expected_offset += part.meta.num_images;
    }
    ensure!(expected_offset == first.dataset.count, "shards cover {expected_offset} of {} images", first.dataset.count);
    let meta =
        LabelMeta { num_images: expected_offset, image_offset: 0, shard: None, created_unix: now_unix(), ..first };
    let _ = std::fs::remove_file(partial_path(out));
    let (mut writer, _) = LabelWriter::create_or_resume(out, &meta)?;
    for part in &parts {
        writer.write_block(part.meta.image_offset, &part.as_block())?;
    }
    writer.finish(out)?;
    println!("{}: merged {} shards, {} images", out.display(), parts.len(), meta.num_images);
    Ok(())
}

/// Crops/s of teacher inference alone on random inputs of the teachers' shape (for the
/// benchmark's ratio).
pub fn pure_inference_rate(
    teachers: &Teachers,
    input: &InputSpec,
    batch: usize,
    batches: usize,
    device: &burn::tensor::Device,
) -> Result<f64> {
    let shape = [batch, input.channels, input.height, input.width];
    let data: Vec<f32> =
        (0..shape.iter().product::<usize>()).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5).collect();
    let inputs = vec![data];
    teachers.probabilities(&inputs, shape, 1.0, device)?;
    let started = Instant::now();
    for _ in 0..batches {
        teachers.probabilities(&inputs, shape, 1.0, device)?;
    }
    Ok((batch * batches) as f64 / started.elapsed().as_secs_f64())
}

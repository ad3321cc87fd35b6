//! Packing: crop blocks built on worker threads, the teachers run on every crop, a writer
//! thread compresses and writes HDF5; resumable after a kill, idempotent when run again.

use crate::shared::cli::default_workers;
use crate::shared::teachers::Teachers;
use anyhow::{Context, Result, bail, ensure};
use kd_common::checkpoint::InputSpec;
use kd_common::device::{self, DeviceSpec};
use kd_datasets::soft_labels::file::{LabelBlock, inspect};
use kd_datasets::soft_labels::geometry::{crops_from_seed, decode_box, image_seed};
use kd_datasets::soft_labels::{Compression, CropParams, Geometry, LabelMeta, LabelWriter, TeacherInfo};
use kd_datasets::transforms::crop_resize;
use kd_datasets::{Augment, Dataset, DatasetKind, OrderedPool, Split, Transform};
use std::path::Path;
use std::time::Instant;

use super::{GeometryArg, PackArgs};

/// Labels are drawn from the augmentation family the teacher was trained with: a teacher whose
/// recorded training augmentation never flips (`training.augment` without `"flip": true`, e.g.
/// the quick Fashion-MNIST teacher) labels unflipped crops only; one trained with flips, or
/// whose training is unknown (imported), gets FKD's 0.5.
fn default_flip_prob(training: &serde_json::Value) -> f32 {
    match training.get("augment") {
        Some(augment) if augment.get("flip") != Some(&serde_json::Value::Bool(true)) => 0.0,
        _ => 0.5,
    }
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

pub(super) fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Images per block: the unit of work, of HDF5 writes and of resume.
fn block_images(crops: usize) -> usize {
    (1024 / crops).max(1)
}

/// Packs labels as `args` says; returns the summary that the tool prints.
pub fn pack(mut args: PackArgs) -> Result<serde_json::Value> {
    args.common.init_output();
    ensure!(args.crops > 0, "--crops must be positive");
    ensure!(args.batch_size > 0, "--batch-size must be positive");
    ensure!(args.temperature.is_finite() && args.temperature > 0.0, "--temperature must be positive");
    ensure!(
        args.scale[0] > 0.0 && args.scale[0] <= args.scale[1] && args.scale[1] <= 1.0,
        "--scale must satisfy 0 < min <= max <= 1"
    );
    ensure!(
        args.ratio[0].is_finite() && args.ratio[1].is_finite() && args.ratio[0] > 0.0 && args.ratio[0] <= args.ratio[1],
        "--ratio must satisfy 0 < min <= max"
    );
    ensure!(args.flip_prob.is_none_or(|p| (0.0..=1.0).contains(&p)), "--flip-prob must be between 0 and 1");
    let shard =
        args.shard.as_deref().map(|text| super::shard::resolve(text, |name| std::env::var(name).ok())).transpose()?;
    args.out = super::shard::output_path(&args.out, shard)?;
    for teacher in &args.teachers {
        ensure!(teacher.exists(), "teacher {}: not found", teacher.display());
    }
    let device = device::resolve(&args.common.device.clone().unwrap_or(DeviceSpec::Auto))?;
    tracing::info!("device: {}", device.description);
    let parent = args.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    kd_common::atomic::ensure_writable_dir(parent)
        .with_context(|| format!("output directory of {}", args.out.display()))?;

    let teachers = Teachers::load(&args.teachers, &device.device)?;
    let first = &teachers.metas[0];
    let flip_prob = args.flip_prob.unwrap_or_else(|| default_flip_prob(&first.training));
    tracing::info!("crops: scale {:?}, ratio {:?}, horizontal flip p {flip_prob}", args.scale, args.ratio);
    let kind = args.common.dataset.or_else(|| first.trained_on()).unwrap_or(DatasetKind::FashionMnist);
    let data_dir =
        args.common.data_dir.clone().or_else(|| first.trained_data_dir().filter(|_| args.common.dataset.is_none()));
    let seed = args.common.seed.unwrap_or(0);
    let dataset =
        kind.open(data_dir.as_deref(), Split::Train, first.input.channels, crate::shared::run::FOLDER_TEST_FRACTION)?;
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
    // FKD's top-5, which needs at least 6 classes to leave anything out; the flag is taken as given.
    let k = args.top_k.unwrap_or_else(|| 5.min(classes.saturating_sub(1)).max(1));
    let compression = Compression { label_type: args.label_type, k, encoding: args.prob_encoding };
    compression.validate(classes)?;
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
            flip_prob,
            output_size: [first.input.height, first.input.width],
        },
        geometry: match args.geometry {
            GeometryArg::Seed => Geometry::Seed,
            GeometryArg::Stored => Geometry::Stored,
        },
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
    if args.out.exists() && !args.force {
        // The same command run again after it completed (a scheduler retrying a job killed
        // just after the end) is a no-op; anything else must not overwrite the file.
        match inspect(&args.out) {
            Ok((existing, true, _)) if existing.same_run(&meta) => {
                tracing::info!("{} is already complete with these settings; nothing to do", args.out.display());
                let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
                let crops_total = meta.num_images * meta.crops_per_image;
                return Ok(serde_json::json!({
                    "file": args.out,
                    "images": meta.num_images,
                    "crops": crops_total,
                    "already_complete": true,
                    "raw_bytes_per_crop": meta.raw_bytes_per_crop(),
                    "file_bytes_per_crop": size as f64 / crops_total.max(1) as f64,
                }));
            }
            Ok((_, true, _)) => bail!(
                "{} already exists (a complete label file made with other settings); use --force to replace it",
                args.out.display()
            ),
            _ => bail!("{} already exists (not a complete label file); use --force to replace it", args.out.display()),
        }
    }
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
    // Crop blocks are prepared ahead on the ordered worker pool shared with the batch loader.
    let (pool_dataset, pool_meta, pool_normalisers) = (dataset.clone(), meta.clone(), normalisers.to_vec());
    let pool = OrderedPool::new(first_block, blocks, workers, 2, move |b| {
        let range = start + b * per_block..start + ((b + 1) * per_block).min(n);
        make_crop_block(&pool_dataset, range, &pool_meta, &pool_normalisers)
    });
    std::thread::scope(|scope| -> Result<()> {
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
        let result = (|| -> Result<()> {
            for (b, block) in (first_block..blocks).zip(pool) {
                let block = block.map_err(|_| anyhow::anyhow!("a crop worker stopped"))?.context("preparing crops")?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flips_follow_the_teachers_training() {
        assert_eq!(default_flip_prob(&json!({"augment": {"kind": "none"}})), 0.0);
        assert_eq!(default_flip_prob(&json!({"augment": {"kind": "pad-crop", "pad": 2, "flip": false}})), 0.0);
        assert_eq!(default_flip_prob(&json!({"augment": {"kind": "pad-crop", "pad": 4, "flip": true}})), 0.5);
        assert_eq!(default_flip_prob(&json!({})), 0.5, "unknown training (imported): FKD's default");
        assert_eq!(default_flip_prob(&serde_json::Value::Null), 0.5);
    }
}

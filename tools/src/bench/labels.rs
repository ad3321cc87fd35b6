//! The label part of `kd-bench`: teacher inference alone vs `kd-pack-labels` end to end on the
//! same device in the same run, random-access label reading, and bytes per crop of every
//! compression type and probability encoding.

use crate::bench::Args;
use crate::pack_labels::{PackArgs, encode_block, make_crop_block, pure_inference_rate};
use crate::shared::cli::CommonArgs;
use crate::shared::teachers::Teachers;
use anyhow::{Context, Result};
use kd_common::checkpoint::{self, CheckpointMeta, InputSpec};
use kd_common::device::ResolvedDevice;
use kd_common::models::{Arch, ModelSpec};
use kd_datasets::soft_labels::file::FORMAT_VERSION;
use kd_datasets::soft_labels::{
    Compression, CropParams, Geometry, LabelMeta, LabelType, LabelWriter, ProbEncoding, RegionLabels,
};
use kd_datasets::{Augment, DatasetKind, Split, Transform};
use rand::Rng;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Saves a randomly initialised ResNet-56 for Fashion-MNIST-shaped input.
fn random_teacher(dir: &Path, device: &burn::tensor::Device) -> Result<PathBuf> {
    let spec = ModelSpec::new(Arch::ResNet(56), 1, 10);
    let (mean, std) = DatasetKind::FashionMnist.normalisation();
    let meta = CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        model: spec.clone(),
        input: InputSpec { channels: 1, height: 28, width: 28, mean, std, crop_fraction: None },
        dataset: serde_json::json!({"name": "fashion-mnist"}),
        classes: (0..10).map(|c| c.to_string()).collect(),
        training: serde_json::json!({"dataset": "fashion-mnist"}),
        metrics: serde_json::json!({}),
        weights_sha256: String::new(),
        written_by: "kd-bench (random weights)".into(),
        pruning: None,
        imported_from: None,
        other: Default::default(),
    };
    let path = dir.join("resnet56-random.safetensors");
    checkpoint::save(&spec.init(device)?, &meta, &path)?;
    Ok(path)
}

/// Runs the label section.
pub fn labels_section(args: &Args, device: &ResolvedDevice, workers: usize) -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    run_in(args, device, workers, dir.path())
}

fn run_in(args: &Args, device: &ResolvedDevice, workers: usize, dir: &Path) -> Result<()> {
    let teacher = match &args.teacher {
        Some(path) => path.clone(),
        None => random_teacher(dir, &device.device)?,
    };
    let teachers = Teachers::load(std::slice::from_ref(&teacher), &device.device)?;
    let input = teachers.metas[0].input.clone();
    let dataset = DatasetKind::FashionMnist.open(
        args.common.data_dir.as_deref(),
        Split::Train,
        input.channels,
        crate::shared::run::FOLDER_TEST_FRACTION,
    )?;
    let shards = (dataset.len() / args.label_images.max(1)).max(1);
    let batch = 256;
    let pure = pure_inference_rate(&teachers, &input, batch, 8, &device.device)?;
    let out = dir.join("bench.h5");
    let common = CommonArgs {
        device: Some(args.common.device.clone().unwrap_or(kd_common::device::DeviceSpec::Auto)),
        workers: Some(workers),
        quiet: 1,
        ..args.common.clone()
    };
    let pack = PackArgs {
        common,
        teachers: vec![teacher.clone()],
        out: out.clone(),
        crops: args.label_crops,
        label_type: LabelType::MarginalSmoothing,
        top_k: Some(5),
        prob_encoding: ProbEncoding::U8,
        geometry: crate::pack_labels::GeometryArg::Stored,
        temperature: 1.0,
        scale: vec![0.08, 1.0],
        ratio: vec![0.75, 4.0 / 3.0],
        flip_prob: Some(0.5),
        batch_size: batch,
        shard: Some(format!("0/{shards}")),
        force: true,
    };
    let summary = crate::pack_labels::pack(pack)?;
    let end_to_end = summary["crops_per_s"].as_f64().unwrap_or(0.0);
    outln!("| teacher inference alone ({}, crops) | {batch} | {pure:.0} | - | - |", teachers.metas[0].model.arch);
    outln!(
        "| kd-pack-labels end to end (crops) | {batch} | {end_to_end:.0} | - | {:.2} of inference |",
        end_to_end / pure
    );

    // Random access: geometry and decoded distributions of every crop of random images.
    let labels = RegionLabels::open(&out)?;
    let (h, w) = (input.height, input.width);
    let mut rng = kd_datasets::rng::stream(0, 0, 0);
    let mut q = Vec::new();
    let reads = 20_000;
    let started = Instant::now();
    let mut checksum = 0.0f32;
    for _ in 0..reads {
        let image = rng.random_range(0..labels.meta.num_images);
        let crops = labels.crops(image, h, w);
        for c in 0..crops.len() {
            labels.distribution_into(image, c, &mut q);
            checksum += q[0];
        }
    }
    let rate = reads as f64 / started.elapsed().as_secs_f64();
    outln!(
        "| label reading, random images ({} crops each, decoded) | 1 | {rate:.0} | - | - |",
        labels.meta.crops_per_image
    );
    tracing::debug!("checksum {checksum}");

    // Bytes per crop: one set of teacher outputs, encoded every way.
    let images = labels.meta.num_images;
    let normaliser = Transform {
        augment: Augment::None,
        out_height: h,
        out_width: w,
        mean: input.mean.clone(),
        std: input.std.clone(),
    };
    let base = LabelMeta { num_images: images, shard: None, created_unix: 0, ..labels.meta.clone() };
    let block = make_crop_block(&dataset, 0..images, &base, std::slice::from_ref(&normaliser))?;
    let crops = images * base.crops_per_image;
    let mut probabilities = Vec::new();
    for start in (0..crops).step_by(batch) {
        let end = (start + batch).min(crops);
        let len = input.channels * h * w;
        let slice = vec![block.inputs[0][start * len..end * len].to_vec()];
        probabilities.extend(teachers.probabilities(
            &slice,
            [end - start, input.channels, h, w],
            1.0,
            &device.device,
        )?);
    }
    outln!("\n| label type | K | probabilities | geometry | raw bytes/crop | on disk bytes/crop | FKD (pickle) |");
    outln!("|---|---|---|---|---|---|---|");
    let types = [
        (LabelType::Hard, 1),
        (LabelType::Smoothing, 1),
        (LabelType::MarginalSmoothing, 5),
        (LabelType::MarginalRenorm, 5),
        (LabelType::Full, 10),
    ];
    for (label_type, k) in types {
        for encoding in [ProbEncoding::U8, ProbEncoding::F16] {
            if label_type == LabelType::Hard && encoding == ProbEncoding::F16 {
                continue;
            }
            for geometry in [Geometry::Stored, Geometry::Seed] {
                let meta = LabelMeta {
                    format_version: FORMAT_VERSION,
                    compression: Compression { label_type, k, encoding },
                    geometry,
                    crop: CropParams { ..base.crop },
                    ..base.clone()
                };
                let path = dir.join(format!("{}-{}-{:?}.h5", label_type.name(), encoding.name(), geometry));
                let (mut writer, _) = LabelWriter::create_or_resume(&path, &meta)?;
                let mut encoded = block.labels.clone();
                if geometry == Geometry::Seed {
                    encoded.boxes.clear();
                    encoded.flips.clear();
                }
                encode_block(&meta, &mut encoded, &probabilities);
                writer.write_block(0, &encoded)?;
                writer.finish(&path)?;
                let size = std::fs::metadata(&path)?.len() as f64;
                // FKD's per-crop payload (fp32 boxes, bool flip, labels as fp32, or fp16 with
                // --use_fp16), plus one pickle file per image (FKD's released label files).
                let fkd = match label_type {
                    LabelType::Hard | LabelType::Smoothing => "25",
                    LabelType::MarginalSmoothing | LabelType::MarginalRenorm => "57 fp32 / 29 fp16",
                    LabelType::Full => "4C + 17 fp32",
                };
                outln!(
                    "| {} | {k} | {} | {} | {} | {:.1} | {fkd} |",
                    label_type.name(),
                    if label_type == LabelType::Hard { "-" } else { encoding.name() },
                    if geometry == Geometry::Stored { "stored" } else { "seed" },
                    meta.raw_bytes_per_crop(),
                    size / crops as f64
                );
            }
        }
    }
    Ok(())
}

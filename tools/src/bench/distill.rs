//! The distillation part of `kd-bench`: training images/s of a ResNet-20 student on the same
//! device in the same run, through the real loaders and objectives of `kd-distill`:
//! (a) plain training (cross-entropy), (b) online KD with a ResNet-56 teacher run on every batch,
//! (c) FKD from a packed label file (4 crops per image visit, rebuilt and decoded by the loader).
//! Data: CIFAR-shaped random images (the networks' cost does not depend on the pixels); the
//! label file holds the stored geometry and marginal-smoothing top-5 u8 labels of random
//! teacher distributions (the reading cost does not depend on the values).

use crate::bench::Args;
use crate::bench::pytorch::PyTorch;
use crate::bench::{random_dataset, timed_fit};
use crate::distill::methods::fkd::SoftTargets;
use crate::distill::methods::kd::KdLoss;
use crate::distill::methods::meal_v2::DiscriminatorInput;
use crate::distill::objective::{DistillObjective, Student, Targets};
use crate::pack_labels::{encode_block, make_crop_block};
use crate::pretrain::CrossEntropy;
use crate::shared::teachers::Teachers;
use anyhow::{Context, Result};
use burn::module::Module;
use kd_common::checkpoint::{CheckpointMeta, InputSpec};
use kd_common::device::ResolvedDevice;
use kd_common::models::{Arch, ModelSpec, Network};
use kd_datasets::soft_labels::{Compression, Geometry, LabelReader, LabelType, LabelWriter, ProbEncoding};
use kd_datasets::{Augment, BatchLoader, Dataset, LoaderConfig, RegionSampling, Transform};
use std::path::Path;
use std::sync::Arc;

/// Images in the benchmark dataset.
const IMAGES: usize = 1024;
/// Crops per image visit in (c), FKD's default.
const CROPS: usize = 4;

fn input() -> InputSpec {
    InputSpec { channels: 3, height: 32, width: 32, mean: vec![0.5; 3], std: vec![0.25; 3], crop_fraction: None }
}

/// Packs `crops` FKD crops per image of `dataset` with random teacher distributions.
fn random_labels(dataset: &Dataset, crops: usize, path: &Path) -> Result<()> {
    let compression = Compression { label_type: LabelType::MarginalSmoothing, k: 5, encoding: ProbEncoding::U8 };
    let meta = crate::bench::fkd_label_meta(dataset, 10, crops, 32, compression, Geometry::Stored);
    let normaliser =
        Transform { augment: Augment::None, out_height: 32, out_width: 32, mean: vec![0.5; 3], std: vec![0.25; 3] };
    let mut block = make_crop_block(dataset, 0..dataset.len(), &meta, std::slice::from_ref(&normaliser))?.labels;
    let mut probabilities = Vec::with_capacity(dataset.len() * crops * 10);
    for i in 0..dataset.len() * crops {
        let logits: Vec<f32> = (0..10).map(|c| ((i * 31 + c * 17) % 23) as f32 / 4.0).collect();
        let total: f32 = logits.iter().map(|z| z.exp()).sum();
        probabilities.extend(logits.iter().map(|z| z.exp() / total));
    }
    encode_block(&meta, &mut block, &probabilities);
    let (mut writer, _) = LabelWriter::create_or_resume(path, &meta)?;
    writer.write_block(0, &block)?;
    writer.finish(path)?;
    Ok(())
}

/// Rounds of (a), (b), (c) in turn, so that a change of machine load hits all three alike.
const ROUNDS: usize = 3;

/// Runs the distillation section: prints the three rates and the ratios c/a and c/b.
pub fn distill_section(args: &Args, device: &ResolvedDevice, workers: usize, pytorch: &PyTorch) -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    run_in(args, device, workers, pytorch, dir.path())
}

fn run_in(args: &Args, device: &ResolvedDevice, workers: usize, pytorch: &PyTorch, dir: &Path) -> Result<()> {
    let batch = 64;
    let dataset = random_dataset(IMAGES, 3, 32)?;
    let labels_path = dir.join("labels.h5");
    random_labels(&dataset, 8, &labels_path)?;
    let ad = device.device.clone().autodiff();
    let student = || -> Result<Network> {
        device.device.seed(0);
        Ok(ModelSpec::new(Arch::ResNet(20), 3, 10).init(&ad)?)
    };
    let plain_config = LoaderConfig::new(batch, true, true, workers, 0);
    let augment = Transform {
        augment: Augment::PadCrop { pad: 4, flip: true },
        out_height: 32,
        out_width: 32,
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
    };
    let plain_loader = BatchLoader::new(dataset.clone(), augment, plain_config.clone())?;

    let teacher_spec = ModelSpec::new(Arch::ResNet(56), 3, 10);
    let teacher_meta = CheckpointMeta {
        format_version: kd_common::checkpoint::FORMAT_VERSION,
        model: teacher_spec.clone(),
        input: input(),
        dataset: serde_json::json!({}),
        classes: dataset.classes.clone(),
        training: serde_json::json!({}),
        metrics: serde_json::json!({}),
        weights_sha256: String::new(),
        written_by: "kd-bench (random weights)".into(),
        pruning: None,
        imported_from: None,
        other: Default::default(),
    };
    let teachers = Teachers { networks: vec![teacher_spec.init(&device.device)?.valid()], metas: vec![teacher_meta] };
    let mut online = DistillObjective {
        teachers,
        targets: Targets::Online { temperature: 10.0, standardize: false },
        loss: KdLoss { alpha: 0.95, temperature: 10.0, standardize: false },
        discriminator_input: DiscriminatorInput::Logits,
    };

    let reader = Arc::new(LabelReader::open(&labels_path, 1 << 30)?);
    let sampling = RegionSampling::new(reader, CROPS, (0..dataset.len()).collect(), &dataset)?;
    let region_config = LoaderConfig { batch_size: batch / CROPS, ..plain_config };
    let normalise =
        Transform { augment: Augment::None, out_height: 32, out_width: 32, mean: vec![0.5; 3], std: vec![0.25; 3] };
    let fkd_loader = BatchLoader::with_regions(dataset.clone(), normalise, region_config, sampling)?;
    let mut packed = DistillObjective {
        teachers: Teachers { networks: vec![], metas: vec![] },
        targets: Targets::Packed,
        loss: SoftTargets { temperature: 1.0, standardize: false },
        discriminator_input: DiscriminatorInput::Probs,
    };

    let mut totals = [(0.0, 0.0); 3];
    let add = |total: &mut (f64, f64), (images, seconds): (f64, f64)| {
        total.0 += images;
        total.1 += seconds;
    };
    for round in 0..ROUNDS {
        // Each round starts with another configuration, so none always follows the same one.
        for k in (0..3).map(|i| (i + round) % 3) {
            let (steps, warmup) = (args.steps, args.warmup);
            let rate = match k {
                0 => timed_fit(
                    student()?,
                    &mut CrossEntropy { label_smoothing: 0.0 },
                    &plain_loader,
                    steps,
                    warmup,
                    device,
                )?,
                1 => {
                    let model = Student { network: student()?, discriminator: None };
                    timed_fit(model, &mut online, &plain_loader, steps, warmup, device)?
                }
                _ => {
                    let model = Student { network: student()?, discriminator: None };
                    timed_fit(model, &mut packed, &fkd_loader, steps, warmup, device)?
                }
            };
            // Every configuration trains `steps` batches of `batch` rows.
            let rows = (steps * batch) as f64;
            add(&mut totals[k], (rows, rows / rate));
        }
    }
    let [plain, kd, fkd] = totals.map(|(images, seconds)| images / seconds);
    let torch_plain = pytorch.figure("resnet20", batch, None)?;
    let torch_kd = pytorch.figure("resnet20", batch, Some("resnet56"))?;
    outln!(
        "| (a) train resnet20, plain | {batch} | {plain:.1} | {} | {} |",
        torch_plain.cell(),
        torch_plain.ratio(plain)
    );
    outln!("| (b) online KD resnet56 -> resnet20 | {batch} | {kd:.1} | {} | {} |", torch_kd.cell(), torch_kd.ratio(kd));
    outln!("| (c) FKD from packed labels, {CROPS} crops/image | {batch} | {fkd:.1} | - | - |");
    outln!(
        "\nFKD vs plain training c/a = {:.3} (target >= 0.97); FKD vs online KD c/b = {:.3} (target >= 1.5; PyTorch's ceiling {})\n",
        fkd / plain,
        fkd / kd,
        match (torch_plain.rate(), torch_kd.rate()) {
            (Some(plain), Some(kd)) => format!("{:.2}", plain / kd),
            _ => "-".into(),
        }
    );
    Ok(())
}

//! The self-supervised part of `kd-bench`: training images/s of the same student (ResNet-20
//! with a 128-d projection head) under SEED (one student forward and backward, one frozen
//! ResNet-56 teacher forward, similarities against a 4,096-key queue) and under MoCo v2 (query
//! forward and backward, momentum key-encoder forward on the second view, the momentum update,
//! the same queue), side by side in rotated rounds.

use crate::bench::{Args, random_dataset, timed_fit};
use crate::pretrain::moco::{Moco, MocoConfig};
use crate::seed::objective::{Negatives, Seed, TeacherOutput};
use anyhow::Result;
use kd_common::contrastive::EmbeddingQueue;
use kd_common::device::ResolvedDevice;
use kd_common::models::{Arch, HeadSpec, ModelSpec, Network};
use kd_datasets::{Augment, BatchLoader, LoaderConfig, Transform};

/// Rounds of (MoCo, SEED) in alternating order.
const ROUNDS: usize = 3;
/// Keys in the queue of both methods.
const QUEUE: usize = 4096;

fn encoder(arch: Arch, device: &burn::tensor::Device) -> Result<Network> {
    let mut spec = ModelSpec::new(arch, 3, 10);
    spec.head = HeadSpec::Projection { hidden: 64, out: 128 };
    Ok(spec.init(device)?)
}

/// Prints both rates and their ratio.
pub fn ssl_section(args: &Args, device: &ResolvedDevice, workers: usize) -> Result<()> {
    let batch = 64;
    let inner = device.device.clone();
    let ad = inner.clone().autodiff();
    let transform = Transform {
        augment: Augment::moco_v2(32, true),
        out_height: 32,
        out_width: 32,
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
    };
    let mut one_view = LoaderConfig::new(batch, true, true, workers, 0);
    one_view.labelled = false;
    let mut two_views = one_view.clone();
    two_views.views = 2;
    let dataset = random_dataset(1024, 3, 32)?;
    let seed_loader = BatchLoader::new(dataset.clone(), transform.clone(), one_view)?;
    let moco_loader = BatchLoader::new(dataset, transform, two_views)?;
    let mut teacher = ModelSpec::new(Arch::ResNet(56), 3, 10);
    teacher.head = HeadSpec::Projection { hidden: 64, out: 128 };
    let teacher = teacher.init(&inner)?;
    let mut totals = [(0.0, 0.0); 2];
    for round in 0..ROUNDS {
        for k in (0..2).map(|i| (i + round) % 2) {
            inner.seed(0);
            let student = encoder(Arch::ResNet(20), &ad)?;
            let rate = if k == 0 {
                let mut moco = Moco::new(MocoConfig::new(QUEUE, 0.99), &student, batch, 0, &inner)?;
                timed_fit(student, &mut moco, &moco_loader, args.steps, args.warmup, device)?
            } else {
                let queue = EmbeddingQueue::new(QUEUE, 128, batch, 0, &inner)?;
                let mut seed =
                    Seed::new(teacher.clone(), TeacherOutput::Projection, Negatives::Queue(queue), (0.2, 1e-4), &inner);
                timed_fit(student, &mut seed, &seed_loader, args.steps, args.warmup, device)?
            };
            let rows = (args.steps * batch) as f64;
            totals[k].0 += rows;
            totals[k].1 += rows / rate;
        }
    }
    let [moco, seed] = totals.map(|(images, seconds)| images / seconds);
    outln!("\n| resnet20 student, batch {batch}, queue {QUEUE} | images/s |\n|---|---|");
    outln!("| MoCo v2 step (query + momentum key encoder, two views) | {moco:.1} |");
    outln!("| SEED step (student + frozen resnet56 teacher, one view) | {seed:.1} |");
    outln!("\nSEED / MoCo = {:.3}\n", seed / moco);
    Ok(())
}

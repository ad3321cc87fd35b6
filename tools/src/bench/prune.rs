//! The pruning part of `kd-bench`: (1) the cost of one pruning round (magnitude selection over
//! every prunable weight, then the masks placed on the device and applied) for ResNet-56 and a
//! VGG-19 with 20 M weights; (2) the mask overhead per training step: ResNet-20 steps with and
//! without the masks re-applied after every optimizer step, side by side in rotated rounds
//! (target: at most 3% of a step).

use crate::bench::{Args, random_dataset, timed_fit};
use crate::pretrain::CrossEntropy;
use anyhow::Result;
use kd_common::device::ResolvedDevice;
use kd_common::models::{Arch, ModelSpec, Network};
use kd_common::pruning::{DeviceMasks, Masked, Scope, prune_round};
use kd_common::sparsity::{Masks, prunable_weights};
use kd_datasets::{Augment, BatchLoader, LoaderConfig, Transform};
use std::time::Instant;

/// Rounds of (plain, masked) in alternating order.
const ROUNDS: usize = 3;

/// Seconds of one round on `network`: read the weights, select (the second round, so the
/// selection skips weights pruned before), place and apply the masks.
fn round_seconds(network: Network, device: &burn::tensor::Device) -> Result<(usize, f64, f64)> {
    let weights = prunable_weights(&network)?;
    let first = prune_round(&weights, &Masks::new(), 0.2, Scope::Global)?;
    let count: usize = weights.values().map(|(_, v)| v.len()).sum();
    let started = Instant::now();
    let weights = prunable_weights(&network)?;
    let masks = prune_round(&weights, &first, 0.2, Scope::Global)?;
    let selected = started.elapsed().as_secs_f64();
    let device_masks = DeviceMasks::new(&network, masks, device)?;
    let network = device_masks.apply(network);
    // Wait for the device: read one value back.
    let _ = prunable_weights(&network)?;
    Ok((count, selected, started.elapsed().as_secs_f64()))
}

/// Prints both measurements.
pub fn prune_section(args: &Args, device: &ResolvedDevice, workers: usize) -> Result<()> {
    outln!(
        "\n| pruning round (global, 20% of the remaining) | prunable weights | read + select (s) | + masks on the device (s) |"
    );
    outln!("|---|---|---|---|");
    let vgg = ModelSpec::new(Arch::Vgg(19), 3, 100);
    for (name, spec) in [("resnet56", ModelSpec::new(Arch::ResNet(56), 3, 10)), ("vgg19 (CIFAR-100 head)", vgg)] {
        device.device.seed(0);
        let (count, selected, total) = round_seconds(spec.init(&device.device)?, &device.device)?;
        outln!("| {name} | {count} | {selected:.3} | {total:.3} |");
    }

    let batch = 64;
    let ad = device.device.clone().autodiff();
    let student = || -> Result<Network> {
        device.device.seed(0);
        Ok(ModelSpec::new(Arch::ResNet(20), 3, 10).init(&ad)?)
    };
    let transform =
        Transform { augment: Augment::None, out_height: 32, out_width: 32, mean: vec![0.5; 3], std: vec![0.25; 3] };
    let loader =
        BatchLoader::new(random_dataset(1024, 3, 32)?, transform, LoaderConfig::new(batch, true, true, workers, 0))?;
    // Masks of four global rounds (59% sparse), as a pruned network retrains with.
    let dense = student()?;
    let weights = prunable_weights(&dense)?;
    let mut masks = Masks::new();
    for _ in 0..4 {
        masks = prune_round(&weights, &masks, 0.2, Scope::Global)?;
    }
    let mut totals = [(0.0, 0.0); 2];
    for round in 0..ROUNDS {
        for k in (0..2).map(|i| (i + round) % 2) {
            let rate = if k == 0 {
                timed_fit(
                    student()?,
                    &mut CrossEntropy { label_smoothing: 0.0 },
                    &loader,
                    args.steps,
                    args.warmup,
                    device,
                )?
            } else {
                let network = student()?;
                let device_masks = DeviceMasks::new(&network, masks.clone(), &ad)?;
                let network = device_masks.apply(network);
                let mut objective = Masked::new(CrossEntropy { label_smoothing: 0.0 }, device_masks);
                timed_fit(network, &mut objective, &loader, args.steps, args.warmup, device)?
            };
            let rows = (args.steps * batch) as f64;
            totals[k].0 += rows;
            totals[k].1 += rows / rate;
        }
    }
    let [plain, masked] = totals.map(|(images, seconds)| images / seconds);
    outln!("\n| resnet20 training, batch {batch} | images/s |\n|---|---|");
    outln!("| plain | {plain:.1} |\n| masks re-applied after every step (59% sparse) | {masked:.1} |");
    outln!("\nMask overhead per step: {:.2}% (target <= 3%)\n", 100.0 * (1.0 - masked / plain));
    Ok(())
}

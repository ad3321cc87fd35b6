//! The 224-pixel part of `kd-bench`: torchvision's networks at ImageNet resolution (1000
//! classes, random weights and inputs: the cost does not depend on the values), beside PyTorch
//! eager measured in the same run, interleaved round by round. ResNet-50 inference in eval mode
//! is what packing FKD labels costs on a CPU; ResNet-18 and MobileNetV2 training steps (forward,
//! cross-entropy, backward, SGD update, through the training loop and its loader) are a student's
//! cost.

use crate::bench::pytorch::{Figure, PyTorch};
use crate::bench::{Args, Tally, train_rate};
use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use kd_common::device::ResolvedDevice;
use kd_common::models::{Arch, ModelSpec};
use std::time::Instant;

/// The image side.
const SIDE: usize = 224;

/// Images/s of eval-mode forward passes of `arch` at 224 px (no autodiff), each waited for.
fn infer_rate(arch: Arch, batch: usize, steps: usize, warmup: usize, device: &ResolvedDevice) -> Result<f64> {
    device.device.seed(0);
    let network = ModelSpec::new(arch, 3, 1000).init(&device.device)?.valid();
    let x = Tensor::<4>::random([batch, 3, SIDE, SIDE], Distribution::Normal(0.0, 1.0), &device.device);
    let run = |n: usize| -> Result<()> {
        for _ in 0..n {
            network.forward(x.clone()).into_data();
        }
        Ok(())
    };
    run(warmup.max(1))?;
    let started = Instant::now();
    run(steps)?;
    Ok((steps * batch) as f64 / started.elapsed().as_secs_f64())
}

/// The section's table: kdkit and PyTorch in turn for `--rounds` rounds, `--imagenet-steps`
/// timed steps each after one warm-up step.
pub fn imagenet_section(args: &Args, device: &ResolvedDevice, workers: usize, pytorch: &PyTorch) -> Result<()> {
    let (batch, steps, warmup) = (args.imagenet_batch, args.imagenet_steps, 1);
    outln!(
        "| 224 px, torchvision models, 1000 classes | batch | kdkit images/s | PyTorch images/s | kdkit / PyTorch |"
    );
    outln!("|---|---|---|---|---|");
    for (name, infer) in [("resnet50", true), ("resnet18", false), ("mobilenet-v2", false)] {
        let arch: Arch = name.parse()?;
        let images = (steps * batch) as f64;
        let (mut ours, mut theirs) = (Tally::default(), Tally::default());
        for _ in 0..args.rounds.max(1) {
            let rate = if infer {
                infer_rate(arch, batch, steps, warmup, device)?
            } else {
                train_rate(&ModelSpec::new(arch, 3, 1000), SIDE, batch, steps, warmup, device, workers)?
            };
            ours.add(images, rate);
            if let Figure::Measured(rate) = pytorch.figure_224(name, batch, infer, steps, warmup)? {
                theirs.add(images, rate);
            }
        }
        let rate = ours.rate().unwrap_or(0.0);
        let figure = theirs.rate().map_or(Figure::Unknown, Figure::Measured);
        let what = if infer { "inference (eval, no gradients)" } else { "training step" };
        outln!("| {name} {what} | {batch} | {rate:.2} | {} | {} |", figure.cell(), figure.ratio(rate));
    }
    outln!();
    Ok(())
}

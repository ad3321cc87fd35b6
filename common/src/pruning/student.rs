//! The dense student shaped by a pruned teacher (Park & No, prune-then-distill, ECCV 2022,
//! §3.3): every layer gets as many weights as the pruned teacher kept in that layer. For a chain
//! of k x k convolutions, `c_out(l) = round(nnz(l) / (k^2 c_out(l-1)))`, with `c_out(0)` the
//! input channels (VGG, the small CNN; max-pool positions are kept).
//!
//! ResNets add each block's output to its input, so all block outputs of a stage share one
//! width and the chain rule cannot hold layer by layer. kdkit's rule: a stage whose widths all
//! shrink by `a` keeps `a^2` of its weights, so the stage width is
//! `s_j = round(W_j sqrt(nnz_j / n_j))` from the stage's non-zero and total prunable weights
//! (stem in stage 1, projection shortcuts in their stage); every block's inner width then gives
//! the block its teacher's non-zero count, `inner_b = round((nnz(conv1_b) + nnz(conv2_b)) /
//! (9 (c_in_b + s_j)))`. Option-A (zero-padding) shortcuts cannot narrow, so a stage is never
//! narrower than the one before it.

use crate::error::{Error, Result};
use crate::models::{Arch, ModelSpec, PlanItem, Shortcut};
use crate::sparsity::HostWeights;

/// The VGG plan of the student from the teacher's plan and the non-zero weights of each of its
/// 3x3 convolutions, in order.
pub fn vgg_student_plan(teacher: &[PlanItem], conv_nonzeros: &[usize], in_channels: usize) -> Result<Vec<PlanItem>> {
    let convs = teacher.iter().filter(|p| matches!(p, PlanItem::Conv(_))).count();
    if convs != conv_nonzeros.len() {
        return Err(Error::InvalidModel(format!(
            "{} non-zero counts for a plan with {convs} convolutions",
            conv_nonzeros.len()
        )));
    }
    let mut widths = chain_widths(conv_nonzeros, in_channels).into_iter();
    Ok(teacher
        .iter()
        .map(|item| match item {
            PlanItem::Conv(_) => PlanItem::Conv(widths.next().expect("counted above")),
            other => other.clone(),
        })
        .collect())
}

/// `c_out(l) = max(1, round(nnz(l) / (9 c_out(l-1))))` along a chain of 3x3 convolutions.
fn chain_widths(nonzeros: &[usize], in_channels: usize) -> Vec<usize> {
    let mut previous = in_channels.max(1);
    nonzeros
        .iter()
        .map(|&nnz| {
            previous = ((nnz as f64 / (9 * previous) as f64).round() as usize).max(1);
            previous
        })
        .collect()
}

/// The dense student of a pruned teacher: the same architecture and depth with every width
/// derived from `weights` (the teacher's prunable weights by PyTorch name, pruned ones zero).
/// MobileNetV2 is refused: its depthwise convolutions tie each layer's width to the one before.
pub fn derive_student(teacher: &ModelSpec, weights: &HostWeights) -> Result<ModelSpec> {
    let nnz = |name: &str| -> Result<usize> {
        let (_, values) = weights
            .get(name)
            .ok_or_else(|| Error::InvalidModel(format!("the {} teacher has no weight {name}", teacher.arch)))?;
        Ok(values.iter().filter(|&&v| v != 0.0).count())
    };
    let mut student = teacher.clone();
    student.width = 1.0;
    match teacher.arch {
        Arch::Vgg(_) => {
            let plan =
                teacher.plan.as_ref().ok_or_else(|| Error::InvalidModel("the VGG teacher has no plan".into()))?;
            let nonzeros = plan
                .iter()
                .enumerate()
                .filter(|(_, p)| matches!(p, PlanItem::Conv(_)))
                .map(|(i, _)| nnz(&format!("features.{i}.conv.weight")))
                .collect::<Result<Vec<_>>>()?;
            student.plan = Some(vgg_student_plan(plan, &nonzeros, teacher.in_channels)?);
        }
        Arch::SmallCnn => {
            let nonzeros = (1..=3).map(|k| nnz(&format!("conv{k}.conv.weight"))).collect::<Result<Vec<_>>>()?;
            student.channels = Some(chain_widths(&nonzeros, teacher.in_channels));
        }
        Arch::ResNet(depth) => student.channels = Some(resnet_channels(teacher, (depth - 2) / 6, weights)?),
        Arch::TorchvisionResNet(depth) | Arch::ResNetD(depth) => {
            student.channels = Some(torchvision_resnet_channels(teacher, depth, weights)?)
        }
        Arch::MobileNetV2
        | Arch::TorchvisionMobileNetV2
        | Arch::MobileNetV3Large
        | Arch::MobileNetV3Small
        | Arch::EfficientNetB0 => {
            return Err(Error::InvalidModel(format!(
                "derive-student cannot shape {}: its depthwise convolutions tie every layer's width to the one \
                 before, and its squeeze-excitation widths to the block's; it shapes vgg, the resnets and \
                 small-cnn networks (distil into a width-reduced {} instead: --width)",
                teacher.arch, teacher.arch
            )));
        }
    }
    student.validate()?;
    Ok(student)
}

/// The teacher's weight `name` (shape and values), or an error naming it.
fn teacher_weight<'a>(teacher: &ModelSpec, weights: &'a HostWeights, name: &str) -> Result<&'a (Vec<usize>, Vec<f32>)> {
    weights.get(name).ok_or_else(|| Error::InvalidModel(format!("the {} teacher has no weight {name}", teacher.arch)))
}

/// `(non-zero, total)` weights of the teacher's weight `name`.
fn nonzero_and_total(teacher: &ModelSpec, weights: &HostWeights, name: &str) -> Result<(usize, usize)> {
    let (_, values) = teacher_weight(teacher, weights, name)?;
    Ok((values.iter().filter(|&&v| v != 0.0).count(), values.len()))
}

/// Stem width, the four stage widths, then every block's inner width (`ModelSpec::channels`)
/// of the torchvision ResNet student (module docs).
fn torchvision_resnet_channels(teacher: &ModelSpec, depth: usize, weights: &HostWeights) -> Result<Vec<usize>> {
    use crate::models::resnet_torchvision::{blocks_per_stage, is_bottleneck};
    let blocks = blocks_per_stage(depth).ok_or_else(|| Error::InvalidModel(format!("no ResNet-{depth}")))?;
    let bottleneck = is_bottleneck(depth);
    let get = |name: &str| teacher_weight(teacher, weights, name);
    let count = |name: &str| nonzero_and_total(teacher, weights, name);
    let sum = |names: &[String]| -> Result<(usize, usize)> {
        names.iter().try_fold((0, 0), |(n, t), name| count(name).map(|(a, b)| (n + a, t + b)))
    };
    let shrink = |width: usize, (nonzero, total): (usize, usize)| {
        ((width as f64 * (nonzero as f64 / total.max(1) as f64).sqrt()).round() as usize).max(1)
    };
    let stem: Vec<String> = weights.keys().filter(|k| k.starts_with("conv1.")).cloned().collect();
    let stem_conv = stem.last().ok_or_else(|| Error::InvalidModel("the teacher has no stem convolution".into()))?;
    let convs = if bottleneck { ["conv1", "conv2", "conv3"].as_slice() } else { ["conv1", "conv2"].as_slice() };
    let last_conv = convs[convs.len() - 1];
    let mut stage_widths = Vec::with_capacity(4);
    let mut inner_widths = Vec::new();
    let mut stem_width = shrink(get(stem_conv)?.0[0], sum(&stem)?);
    let mut previous = stem_width;
    for (stage, &n) in blocks.iter().enumerate() {
        let prefix = |block: usize| format!("layer{}.{block}", stage + 1);
        let mut names: Vec<String> =
            (0..n).flat_map(|b| convs.iter().map(move |c| format!("{}.{c}.weight", prefix(b)))).collect();
        names.extend(weights.keys().filter(|k| k.starts_with(&format!("{}.downsample.", prefix(0)))).cloned());
        if stage == 0 && !bottleneck {
            names.extend(stem.iter().cloned());
        }
        let width = shrink(get(&format!("{}.{last_conv}.weight", prefix(0)))?.0[0], sum(&names)?);
        if stage == 0 && !bottleneck {
            (stem_width, previous) = (width, width);
        }
        for block in 0..n {
            let c_in = if block == 0 { previous } else { width };
            let block_names: Vec<String> = convs.iter().map(|c| format!("{}.{c}.weight", prefix(block))).collect();
            let (nnz, _) = sum(&block_names)?;
            let inner = if bottleneck {
                // 9 p^2 + (c_in + s) p - nnz = 0.
                let b = (c_in + width) as f64;
                (-b + (b * b + 36.0 * nnz as f64).sqrt()) / 18.0
            } else {
                nnz as f64 / (9 * (c_in + width)) as f64
            };
            inner_widths.push((inner.round() as usize).max(1));
        }
        stage_widths.push(width);
        previous = width;
    }
    let mut channels = vec![stem_width];
    channels.extend(stage_widths);
    channels.extend(inner_widths);
    Ok(channels)
}

/// Stage widths then inner widths (`ModelSpec::channels`) of the ResNet student (module docs).
fn resnet_channels(teacher: &ModelSpec, blocks: usize, weights: &HostWeights) -> Result<Vec<usize>> {
    let get = |name: &str| teacher_weight(teacher, weights, name);
    let count = |name: &str| nonzero_and_total(teacher, weights, name);
    let mut stage_widths = Vec::with_capacity(3);
    let mut inner_widths = Vec::with_capacity(3 * blocks);
    let mut previous = 0usize;
    for stage in 0..3 {
        let prefix = |block: usize| format!("layer{}.{block}", stage + 1);
        // The stage's layers: both convs of every block, its projection shortcut, the stem.
        let mut names: Vec<String> = (0..blocks)
            .flat_map(|b| [format!("{}.conv1.weight", prefix(b)), format!("{}.conv2.weight", prefix(b))])
            .collect();
        if weights.contains_key(&format!("{}.downsample.0.weight", prefix(0))) {
            names.push(format!("{}.downsample.0.weight", prefix(0)));
        }
        if stage == 0 {
            names.push("conv1.weight".into());
        }
        let (mut nonzero, mut total) = (0, 0);
        for name in &names {
            let (n, t) = count(name)?;
            nonzero += n;
            total += t;
        }
        let teacher_width = get(&format!("{}.conv2.weight", prefix(0)))?.0[0];
        let density = nonzero as f64 / total.max(1) as f64;
        let mut width = ((teacher_width as f64 * density.sqrt()).round() as usize).max(1);
        if teacher.shortcut == Shortcut::Pad && width < previous {
            width = previous;
        }
        for block in 0..blocks {
            let c_in = if block == 0 && stage > 0 { previous } else { width };
            let pair = count(&format!("{}.conv1.weight", prefix(block)))?.0
                + count(&format!("{}.conv2.weight", prefix(block)))?.0;
            inner_widths.push(((pair as f64 / (9 * (c_in + width)) as f64).round() as usize).max(1));
        }
        stage_widths.push(width);
        previous = width;
    }
    stage_widths.extend(inner_widths);
    Ok(stage_widths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::vgg::standard_plan;

    fn parse(plan: &str) -> Vec<PlanItem> {
        serde_json::from_str(plan).unwrap()
    }

    /// Weights of a VGG plan on 3 channels with a 100-class head (bias-free convs, the head's
    /// weight matrix): the count prune-then-distill's student tables use.
    fn weights_of_plan(plan: &[PlanItem]) -> usize {
        let mut previous = 3;
        let mut total = 0;
        for item in plan {
            if let PlanItem::Conv(c) = item {
                total += 9 * previous * c;
                previous = *c;
            }
        }
        total + previous * 100
    }

    /// The paper's VGG-19 students st36, st59, st79 (prune-then-distill `models/cifar_vgg.py`)
    /// come back from masks whose per-layer non-zero counts are those students' layer sizes;
    /// st79 has 4,153,613 weights (conv 4,141,413 + head 122 x 100, by hand).
    #[test]
    fn reproduces_the_paper_students() {
        // prune-then-distill's VGG-19 plan: kdkit's without the last max pool (that code pools
        // globally after the last convolution).
        let mut teacher = standard_plan(19).unwrap();
        assert!(matches!(teacher.pop(), Some(PlanItem::Pool(_))));
        for (name, student, expected) in [
            (
                "st36",
                "[53,61,\"M\",128,121,\"M\",258,241,258,236,\"M\",485,410,406,374,\"M\",340,358,390,399]",
                12_809_766,
            ),
            (
                "st59",
                "[44,56,\"M\",116,112,\"M\",238,227,240,209,\"M\",408,348,339,246,\"M\",196,214,367,272]",
                8_168_150,
            ),
            ("st79", "[40,49,\"M\",111,97,\"M\",225,187,224,170,\"M\",356,233,220,99,\"M\",111,84,297,122]", 4_153_613),
        ] {
            let student = parse(student);
            let mut previous = 3;
            let nonzeros: Vec<usize> = student
                .iter()
                .filter_map(|p| match p {
                    PlanItem::Conv(c) => {
                        let n = 9 * previous * c;
                        previous = *c;
                        Some(n)
                    }
                    _ => None,
                })
                .collect();
            let derived = vgg_student_plan(&teacher, &nonzeros, 3).unwrap();
            assert_eq!(derived, student, "{name}");
            assert_eq!(weights_of_plan(&derived), expected, "{name}");
        }
    }

    /// Weights of a spec's prunable layers, from a network built on the CPU.
    fn dense_weights(spec: &ModelSpec) -> usize {
        let network = spec.init(&burn::tensor::Device::flex()).unwrap();
        crate::sparsity::prunable_weights(&network).unwrap().values().map(|(_, v)| v.len()).sum()
    }

    /// A teacher pruned by real global magnitude rounds (fresh He-initialised weights): zeros
    /// where the masks prune.
    fn pruned(spec: &ModelSpec, rounds: usize) -> HostWeights {
        let network = spec.init(&burn::tensor::Device::flex()).unwrap();
        let mut weights = crate::sparsity::prunable_weights(&network).unwrap();
        let mut masks = crate::sparsity::Masks::new();
        for _ in 0..rounds {
            masks = crate::pruning::prune_round(&weights, &masks, 0.2, crate::pruning::Scope::Global).unwrap();
        }
        for (name, (_, values)) in weights.iter_mut() {
            for (v, &k) in values.iter_mut().zip(&masks[name].keep) {
                *v *= k as f32;
            }
        }
        weights
    }

    fn nonzero(weights: &HostWeights) -> usize {
        weights.values().map(|(_, v)| v.iter().filter(|&&x| x != 0.0).count()).sum()
    }

    /// Through `derive_student`: VGG-19 masks with st79's per-layer counts (the first nnz(l)
    /// weights of each conv kept, the classifier dense) give st79's plan, and the student's
    /// weights are within 2% of the teacher's non-zeros (4,141,413 + 51,200 by hand vs
    /// 4,153,613: 0.93%).
    #[test]
    fn vgg_student_through_the_masks() {
        let mut teacher = ModelSpec::new(Arch::Vgg(19), 3, 100);
        let mut plan = standard_plan(19).unwrap();
        plan.pop();
        teacher.plan = Some(plan.clone());
        let st79 = parse("[40,49,\"M\",111,97,\"M\",225,187,224,170,\"M\",356,233,220,99,\"M\",111,84,297,122]");
        let mut weights = HostWeights::new();
        let (mut c_in, mut s_in) = (3, 3);
        let mut student_items = st79.iter();
        for (i, item) in plan.iter().enumerate() {
            let student_item = student_items.next().unwrap();
            if let (PlanItem::Conv(c), PlanItem::Conv(s)) = (item, student_item) {
                let len = 9 * c_in * c;
                let nnz = 9 * s_in * s;
                let values = (0..len).map(|j| if j < nnz { 1.0 } else { 0.0 }).collect();
                weights.insert(format!("features.{i}.conv.weight"), (vec![*c, c_in, 3, 3], values));
                (c_in, s_in) = (*c, *s);
            }
        }
        weights.insert("classifier.weight".into(), (vec![100, 512], vec![0.5; 51_200]));
        let student = derive_student(&teacher, &weights).unwrap();
        assert_eq!(student.plan.as_ref().unwrap(), &st79);
        assert_eq!(nonzero(&weights), 4_141_413 + 51_200);
        let ratio = weights_of_plan(student.plan.as_ref().unwrap()) as f64 / nonzero(&weights) as f64;
        assert!((ratio - 1.0).abs() < 0.02, "{ratio}");
    }

    /// ResNet-20 (option A and option B) and the small CNN pruned by 4 real global rounds
    /// (59%): the derived student's dense weight count is within 2% of the teacher's non-zeros,
    /// and option-A stages never narrow.
    #[test]
    fn resnet_and_small_cnn_students_keep_the_non_zero_count() {
        for (arch, shortcut) in
            [(Arch::ResNet(20), Shortcut::Pad), (Arch::ResNet(20), Shortcut::Conv), (Arch::SmallCnn, Shortcut::Pad)]
        {
            let mut teacher = ModelSpec::new(arch, 3, 10);
            teacher.shortcut = shortcut;
            let weights = pruned(&teacher, 4);
            let student = derive_student(&teacher, &weights).unwrap();
            let ratio = dense_weights(&student) as f64 / nonzero(&weights) as f64;
            assert!((ratio - 1.0).abs() < 0.02, "{arch} {shortcut:?}: {ratio} ({:?})", student.channels);
            let channels = student.channels.unwrap();
            if arch == Arch::ResNet(20) && shortcut == Shortcut::Pad {
                assert!(channels[0] <= channels[1] && channels[1] <= channels[2], "{channels:?}");
            }
        }
    }

    /// torchvision ResNet-18 (basic blocks; ImageNet and CIFAR stems), ResNet-50 (bottlenecks)
    /// and ResNet-50-D pruned by 4 global rounds: the derived student's dense weights are within
    /// 3% of the teacher's non-zeros, and the student builds and runs.
    #[test]
    fn torchvision_resnet_students_keep_the_non_zero_count() {
        use crate::models::Stem;
        for (arch, stem, width) in [
            (Arch::TorchvisionResNet(18), Stem::Imagenet, 0.25),
            (Arch::TorchvisionResNet(18), Stem::Cifar, 0.25),
            (Arch::TorchvisionResNet(50), Stem::Imagenet, 0.125),
            (Arch::ResNetD(50), Stem::Imagenet, 0.125),
        ] {
            let mut teacher = ModelSpec::new(arch, 3, 10);
            (teacher.stem, teacher.width) = (stem, width);
            let weights = pruned(&teacher, 4);
            let student = derive_student(&teacher, &weights).unwrap();
            let ratio = dense_weights(&student) as f64 / nonzero(&weights) as f64;
            assert!((ratio - 1.0).abs() < 0.03, "{arch} {stem:?}: {ratio} ({:?})", student.channels);
            let network = student.init(&burn::tensor::Device::flex()).unwrap();
            let x = burn::tensor::Tensor::<4>::zeros([1, 3, 32, 32], &burn::tensor::Device::flex());
            assert_eq!(network.forward(x).dims(), [1, 10]);
        }
    }

    #[test]
    fn mobilenet_is_refused() {
        let teacher = ModelSpec::new(Arch::MobileNetV2, 3, 10);
        let err = derive_student(&teacher, &HostWeights::new()).unwrap_err().to_string();
        assert!(err.contains("cannot shape mobilenetv2"), "{err}");
    }

    #[test]
    fn counts_must_match_the_plan() {
        let teacher = standard_plan(11).unwrap();
        assert!(vgg_student_plan(&teacher, &[10, 20], 3).unwrap_err().to_string().contains("2 non-zero counts"));
    }
}

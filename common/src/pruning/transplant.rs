//! Initialising a derived student from its pruned teacher instead of at random (new in kdkit;
//! prune-then-distill trains its students from scratch). Every channel group of the student (a
//! convolution's outputs; in a ResNet, a stage's residual stream, shared by every layer that
//! writes into it) takes the teacher's channels whose filters have the largest L1 norm
//! (`sum |W[c, ...]|` over the group's writers, pruned weights being zero), in their original
//! order. Every tensor is then copied at the selected rows and columns: convolutions, batch-norm
//! scale, shift and running statistics, and the classifier's input columns.
//!
//! Where the student is wider than the teacher (possible when an earlier layer was pruned
//! harder), the extra filters keep their fresh initialisation and copied filters read nothing
//! from the extra input channels (those weights are zero). In a ResNet with zero-padding
//! (option A) shortcuts the padded positions of a narrower student do not line up with the
//! teacher's: the copy starts training close to, not at, the teacher's function.

use crate::checkpoint::apply_safetensors_bytes;
use crate::error::{Error, Result};
use crate::host_tensors::{host_tensors, to_safetensors};
use crate::models::{Arch, HeadSpec, ModelSpec, Network, PlanItem};
use std::collections::BTreeMap;
use std::path::Path;

/// What indexes one dimension of a tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Axis {
    /// The same index in teacher and student (kernel positions, classes, input channels).
    Fixed,
    /// A channel group.
    Group(usize),
}

/// Tensor name -> the group (or none) of each dimension, for the layers whose channels move.
type Roles = BTreeMap<String, Vec<Axis>>;

const BN: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];

fn conv_bn(roles: &mut Roles, conv: &str, bn: &str, out: usize, input: Axis) {
    roles.insert(format!("{conv}.weight"), vec![Axis::Group(out), input, Axis::Fixed, Axis::Fixed]);
    for field in BN {
        roles.insert(format!("{bn}.{field}"), vec![Axis::Group(out)]);
    }
}

fn head(roles: &mut Roles, spec: &ModelSpec, name: &str, last: usize) {
    match spec.head {
        HeadSpec::Classifier => {
            roles.insert(format!("{name}.weight"), vec![Axis::Fixed, Axis::Group(last)]);
        }
        HeadSpec::Projection { .. } => {
            roles.insert(format!("{name}.0.weight"), vec![Axis::Fixed, Axis::Group(last)]);
        }
        HeadSpec::None => {}
    }
}

/// The channel groups of an architecture, by tensor name.
fn roles(spec: &ModelSpec) -> Result<Roles> {
    let mut roles = Roles::new();
    match spec.arch {
        Arch::SmallCnn => {
            for k in 0..3 {
                let input = if k == 0 { Axis::Fixed } else { Axis::Group(k - 1) };
                conv_bn(&mut roles, &format!("conv{}.conv", k + 1), &format!("conv{}.bn", k + 1), k, input);
            }
            head(&mut roles, spec, "fc", 2);
        }
        Arch::Vgg(_) => {
            let plan = spec.plan.as_ref().ok_or_else(|| Error::InvalidModel("the VGG spec has no plan".into()))?;
            let mut previous = Axis::Fixed;
            let mut group = 0;
            for (i, item) in plan.iter().enumerate() {
                if let PlanItem::Conv(_) = item {
                    conv_bn(&mut roles, &format!("features.{i}.conv"), &format!("features.{i}.bn"), group, previous);
                    previous = Axis::Group(group);
                    group += 1;
                }
            }
            head(&mut roles, spec, "classifier", group.saturating_sub(1));
        }
        Arch::ResNet(depth) => {
            let blocks = (depth - 2) / 6;
            // Groups 0..3: the stages' residual streams; then one per block's inner width.
            conv_bn(&mut roles, "conv1", "bn1", 0, Axis::Fixed);
            for stage in 0..3 {
                for block in 0..blocks {
                    let prefix = format!("layer{}.{block}", stage + 1);
                    let inner = 3 + stage * blocks + block;
                    let input = Axis::Group(if block == 0 && stage > 0 { stage - 1 } else { stage });
                    conv_bn(&mut roles, &format!("{prefix}.conv1"), &format!("{prefix}.bn1"), inner, input);
                    conv_bn(
                        &mut roles,
                        &format!("{prefix}.conv2"),
                        &format!("{prefix}.bn2"),
                        stage,
                        Axis::Group(inner),
                    );
                    conv_bn(
                        &mut roles,
                        &format!("{prefix}.downsample.0"),
                        &format!("{prefix}.downsample.1"),
                        stage,
                        input,
                    );
                }
            }
            head(&mut roles, spec, "fc", 2);
        }
        Arch::MobileNetV2
        | Arch::TorchvisionResNet(_)
        | Arch::ResNetD(_)
        | Arch::TorchvisionMobileNetV2
        | Arch::MobileNetV3Large
        | Arch::MobileNetV3Small
        | Arch::EfficientNetB0 => {
            return Err(Error::InvalidModel(format!(
                "strongest-filter initialisation does not cover {}; derive the student without it",
                spec.arch
            )));
        }
    }
    Ok(roles)
}

/// `student` (freshly initialised, shaped by [`super::derive_student`]) with the teacher's
/// strongest filters copied in (module docs).
pub fn init_from_strongest_filters(teacher: &Network, spec: &ModelSpec, mut student: Network) -> Result<Network> {
    let roles = roles(spec)?;
    let all = |_: &str, _: usize| true;
    let teacher_tensors = host_tensors(teacher, all)?;
    let mut student_tensors = host_tensors(&student, all)?;

    // Per group: the teacher channels each student channel takes (None: keeps its init).
    let mut scores: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut student_sizes: BTreeMap<usize, usize> = BTreeMap::new();
    for (name, axes) in &roles {
        let (Some(Axis::Group(g)), Some((shape, values)), Some((student_shape, _))) =
            (axes.first(), teacher_tensors.get(name), student_tensors.get(name))
        else {
            continue;
        };
        if axes.len() != 4 {
            continue;
        }
        let per_filter = values.len() / shape[0].max(1);
        let score = scores.entry(*g).or_insert_with(|| vec![0.0; shape[0]]);
        for (c, filter) in values.chunks(per_filter.max(1)).enumerate() {
            score[c] += filter.iter().map(|v| v.abs() as f64).sum::<f64>();
        }
        student_sizes.insert(*g, student_shape[0]);
    }
    let mut selection: BTreeMap<usize, Vec<Option<usize>>> = BTreeMap::new();
    for (group, score) in &scores {
        let wanted = student_sizes[group];
        let mut order: Vec<usize> = (0..score.len()).collect();
        order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
        let mut chosen: Vec<usize> = order.into_iter().take(wanted).collect();
        chosen.sort_unstable();
        let mut map: Vec<Option<usize>> = chosen.into_iter().map(Some).collect();
        map.resize(wanted, None);
        selection.insert(*group, map);
    }

    for (name, (shape, values)) in student_tensors.iter_mut() {
        let Some((teacher_shape, teacher_values)) = teacher_tensors.get(name) else { continue };
        let axes = roles.get(name).cloned().unwrap_or_else(|| vec![Axis::Fixed; shape.len()]);
        if axes.len() != shape.len() || teacher_shape.len() != shape.len() {
            continue;
        }
        // Per dimension: student index -> teacher index.
        let maps: Option<Vec<Vec<Option<usize>>>> = axes
            .iter()
            .zip(shape.iter().zip(teacher_shape))
            .map(|(axis, (&size, &teacher_size))| match axis {
                Axis::Group(g) => selection.get(g).filter(|m| m.len() == size).cloned(),
                Axis::Fixed if size == teacher_size => Some((0..size).map(Some).collect()),
                Axis::Fixed => None,
            })
            .collect();
        let Some(maps) = maps else { continue };
        copy_selected(values, shape, teacher_values, teacher_shape, &maps);
    }

    let bytes = to_safetensors(&student_tensors)?;
    apply_safetensors_bytes(&mut student, bytes, Path::new("<strongest-filter initialisation>"))?;
    Ok(student)
}

/// Copies `teacher[map(index)]` into `student[index]` for every student index whose output
/// (first) dimension maps; a mapped filter's unmapped inputs are zeroed.
fn copy_selected(
    student: &mut [f32],
    shape: &[usize],
    teacher: &[f32],
    teacher_shape: &[usize],
    maps: &[Vec<Option<usize>>],
) {
    let strides = |shape: &[usize]| -> Vec<usize> {
        let mut strides = vec![1; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1];
        }
        strides
    };
    let (student_strides, teacher_strides) = (strides(shape), strides(teacher_shape));
    for (flat, value) in student.iter_mut().enumerate() {
        let mut source = Some(0usize);
        for d in 0..shape.len() {
            let index = flat / student_strides[d] % shape[d];
            match maps[d][index] {
                Some(t) => source = source.map(|s| s + t * teacher_strides[d]),
                None if d == 0 => {
                    source = None;
                    break;
                }
                None => {
                    *value = 0.0;
                    source = None;
                    break;
                }
            }
        }
        if let Some(source) = source {
            *value = teacher[source];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pruning::derive_student;
    use crate::sparsity::prunable_weights;
    use burn::module::Module;
    use burn::tensor::{Device, Tensor, TensorData};

    /// A small CNN teacher whose filters are pruned so that the student keeps exactly the
    /// surviving ones (conv1: 8 of 32 filters left, each whole): the student chosen by the
    /// strongest filters computes the teacher's function exactly (eval mode, same input), since
    /// the pruned filters contributed nothing.
    #[test]
    fn strongest_filters_reproduce_a_filter_pruned_teacher() {
        let device = Device::flex();
        let mut spec = ModelSpec::new(Arch::SmallCnn, 1, 3);
        spec.channels = Some(vec![32, 16, 8]);
        let teacher = spec.init(&device).unwrap();
        // Keep conv1 filters 3, 7, ..., 31 (8 filters) and every weight of the later layers
        // that reads them; zero the rest. conv2 then has 16 x 8 x 9 non-zeros -> width 16 from
        // 8 inputs; conv3 unchanged.
        let mut tensors = host_tensors(&teacher, |_, _| true).unwrap();
        let kept = |c: usize| c % 4 == 3;
        for (c, v) in tensors.get_mut("conv1.conv.weight").unwrap().1.chunks_mut(9).enumerate() {
            if !kept(c) {
                v.fill(0.0);
            }
        }
        for (i, v) in tensors.get_mut("conv2.conv.weight").unwrap().1.chunks_mut(9).enumerate() {
            if !kept(i % 32) {
                v.fill(0.0);
            }
        }
        // Pruned filters also get a zero BN shift, so they output exactly zero.
        for (c, v) in tensors.get_mut("conv1.bn.bias").unwrap().1.iter_mut().enumerate() {
            *v = if kept(c) { 0.1 } else { 0.0 };
        }
        let mut teacher = teacher;
        apply_safetensors_bytes(&mut teacher, to_safetensors(&tensors).unwrap(), Path::new("t")).unwrap();
        let student_spec = derive_student(&spec, &prunable_weights(&teacher).unwrap()).unwrap();
        assert_eq!(student_spec.channels, Some(vec![8, 16, 8]));
        let student = init_from_strongest_filters(&teacher, &spec, student_spec.init(&device).unwrap()).unwrap();
        let x: Vec<f32> = (0..2 * 64).map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0).collect();
        let input = || Tensor::<4>::from_data(TensorData::new(x.clone(), [2, 1, 8, 8]), &device);
        let a: Vec<f32> = teacher.valid().forward(input()).into_data().try_to_vec::<f32>().unwrap();
        let b: Vec<f32> = student.valid().forward(input()).into_data().try_to_vec::<f32>().unwrap();
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() < 1e-4, "{a:?} vs {b:?}");
        }
    }

    /// ResNet-8 (option B), half the stage widths: shapes fit and the call succeeds; VGG too.
    #[test]
    fn resnet_and_vgg_students_initialise() {
        let device = Device::flex();
        for (arch, channels, plan) in [
            (Arch::ResNet(8), Some(vec![8, 16, 32, 5, 9, 17]), None),
            (Arch::Vgg(0), None, Some(vec![PlanItem::Conv(8), PlanItem::Conv(6)])),
        ] {
            let mut spec = ModelSpec::new(arch, 3, 10);
            spec.shortcut = crate::models::Shortcut::Conv;
            spec.plan = plan.clone().map(|_| vec![PlanItem::Conv(16), PlanItem::Conv(12)]);
            let teacher = spec.init(&device).unwrap();
            let mut student_spec = spec.clone();
            student_spec.channels = channels;
            student_spec.plan = plan;
            let student = init_from_strongest_filters(&teacher, &spec, student_spec.init(&device).unwrap()).unwrap();
            assert!(crate::models::trainable_params(&student) < crate::models::trainable_params(&teacher));
        }
    }
}

//! The objective of every `kd-distill` method: the student's loss against teacher targets that
//! come either from frozen teachers run on the batch (no autodiff graph for them) or from the
//! batch's packed soft labels, plus MEAL V2's discriminator when it is on. The loss itself is
//! the method's ([`DistillLoss`], one per file under `methods/`).

use super::methods::meal_v2::DiscriminatorInput;
use crate::shared::teachers::Teachers;
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use kd_common::losses::discriminator_loss;
use kd_common::models::{Discriminator, Network};
use kd_common::train::{Objective, StepInfo, StepOutput, upload};
use kd_datasets::Batch;

/// The trained module: the student and, for MEAL V2, its discriminator (trained jointly, one
/// optimizer; Shen & Savvides, MEAL V2, 2020, §3.1).
#[derive(Module, Debug)]
pub struct Student {
    /// The student network.
    pub network: Network,
    /// MEAL V2's discriminator.
    pub discriminator: Option<Discriminator>,
}

/// A method's loss of the student logits against the teacher distribution.
pub trait DistillLoss {
    /// Loss of `student_logits` `[B, C]` (raw) against `teacher_probs` `[B, C]` (already at the
    /// loss's temperature, and standardised when the targets are); `batch` gives the labels.
    fn loss(
        &self,
        student_logits: Tensor<2>,
        teacher_probs: Tensor<2>,
        batch: &Batch,
        device: &Device,
    ) -> kd_common::Result<Tensor<1>>;

    /// Sees where the loop is before every step (a warm-up reads the epoch).
    fn before_step(&mut self, _info: &StepInfo) {}
}

/// Where the teacher distribution comes from.
#[derive(Clone, Copy, Debug)]
pub enum Targets {
    /// Frozen teachers run on every batch: the mean of `softmax(z_t / temperature)`, with each
    /// `z_t` z-scored first when `standardize` is set (Sun et al., CVPR 2024, §3.2).
    Online {
        /// Softmax temperature of the teachers.
        temperature: f32,
        /// Logit standardisation of the teachers' logits.
        standardize: bool,
    },
    /// The batch's packed soft labels.
    Packed,
}

/// A distillation objective.
pub struct DistillObjective<L> {
    /// Teachers: run for `Targets::Online`, and the reference of the agreement metric.
    pub teachers: Teachers,
    /// Target source.
    pub targets: Targets,
    /// The method's loss.
    pub loss: L,
    /// What the discriminator sees (when the student carries one).
    pub discriminator_input: DiscriminatorInput,
}

impl<L: DistillLoss> Objective<Student> for DistillObjective<L> {
    fn step(&mut self, model: &Student, batch: &Batch, device: &Device) -> kd_common::Result<StepOutput> {
        let images = upload::images(batch, 0, device)?;
        let logits = model.network.forward(images.clone());
        let (teacher_probs, teacher_logits) = match self.targets {
            Targets::Online { temperature, standardize } => {
                let out = self.teachers.ensemble(images.inner(), temperature, standardize);
                (out.probs.autodiff(), Some(out.mean_logits.autodiff()))
            }
            Targets::Packed => (upload::soft_targets(batch, logits.dims()[1], device)?, None),
        };
        let mut loss = self.loss.loss(logits.clone(), teacher_probs.clone(), batch, device)?;
        let mut metrics = Vec::new();
        if let Some(discriminator) = &model.discriminator {
            let (student_side, teacher_side) = match (self.discriminator_input, teacher_logits) {
                (DiscriminatorInput::Logits, Some(teacher_logits)) => (logits.clone(), teacher_logits),
                (DiscriminatorInput::Logits, None) => {
                    return Err(kd_common::Error::InvalidConfig(
                        "the discriminator needs teacher logits, which packed labels do not hold".into(),
                    ));
                }
                (DiscriminatorInput::Probs, _) => (softmax(logits.clone(), 1), teacher_probs),
            };
            let scores = discriminator.forward(Tensor::cat(vec![student_side, teacher_side], 0));
            let bce = discriminator_loss(scores);
            metrics.push(("discriminator_bce", bce.clone()));
            loss = loss + bce;
        }
        Ok(StepOutput { loss, metrics, logits: Some(logits) })
    }

    fn network<'a>(&self, model: &'a Student) -> Option<&'a Network> {
        Some(&model.network)
    }

    fn before_step(&mut self, info: &StepInfo) {
        self.loss.before_step(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::methods::fkd::SoftTargets;
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::Device;
    use kd_common::models::{Arch, ModelSpec};
    use kd_datasets::{HostTensor, Targets as BatchTargets};

    /// Counts the trainable float parameters of a module that have a gradient in `grads`.
    struct WithGradient<'a> {
        grads: &'a GradientsParams,
        found: usize,
        total: usize,
    }

    impl ModuleVisitor for WithGradient<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            // Batch-norm running statistics are parameters without gradients.
            if !param.is_require_grad() {
                return;
            }
            self.total += 1;
            if self.grads.get::<D>(param.id).is_some() {
                self.found += 1;
            }
        }
    }

    fn batch(n: usize, classes: usize) -> Batch {
        let mut soft_targets = vec![0.0; n * classes];
        for row in 0..n {
            soft_targets[row * classes + row % classes] = 0.7;
            soft_targets[row * classes + (row + 1) % classes] = 0.3;
        }
        Batch {
            views: vec![HostTensor {
                values: (0..n * 64).map(|i| (i % 7) as f32 / 7.0).collect(),
                shape: vec![n, 1, 8, 8],
            }],
            indices: (0..n).collect(),
            targets: BatchTargets::Soft { labels: vec![0; n], distributions: soft_targets, classes },
        }
    }

    /// MEAL V2 trains the discriminator with the student in one loss: after one backward pass
    /// every parameter of both has a gradient.
    #[test]
    fn discriminator_trains_jointly_with_the_student() {
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let spec = ModelSpec { width: 0.25, ..ModelSpec::new(Arch::SmallCnn, 1, 3) };
        let student =
            Student { network: spec.init(&ad).unwrap(), discriminator: Some(Discriminator::new(3, false, &ad)) };
        let mut objective = DistillObjective {
            teachers: Teachers { networks: vec![], metas: vec![] },
            targets: Targets::Packed,
            loss: SoftTargets { temperature: 1.0, standardize: false },
            discriminator_input: DiscriminatorInput::Probs,
        };
        let b = batch(4, 3);
        let output = objective.step(&student, &b, &ad).unwrap();
        assert_eq!(output.metrics.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["discriminator_bce"]);
        let grads = GradientsParams::from_grads(output.loss.backward(), &student);
        let mut visitor = WithGradient { grads: &grads, found: 0, total: 0 };
        student.visit(&mut visitor);
        assert!(
            visitor.total > 6 && visitor.found == visitor.total,
            "{} of {} parameters have a gradient",
            visitor.found,
            visitor.total
        );

        // Without the discriminator the loss is the soft cross-entropy alone, and it is smaller
        // by the (positive) discriminator BCE.
        let plain = Student { network: student.network.clone(), discriminator: None };
        let without: f32 = objective.step(&plain, &b, &ad).unwrap().loss.into_scalar();
        let with: f32 = objective.step(&student, &b, &ad).unwrap().loss.into_scalar();
        assert!(with > without && without > 0.0, "with {with}, without {without}");
    }

    /// Packed targets must match the batch: a wrong soft-label width is an error, not a panic.
    #[test]
    fn packed_targets_of_the_wrong_width_are_refused() {
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let spec = ModelSpec { width: 0.25, ..ModelSpec::new(Arch::SmallCnn, 1, 3) };
        let student = Student { network: spec.init(&ad).unwrap(), discriminator: None };
        let mut objective = DistillObjective {
            teachers: Teachers { networks: vec![], metas: vec![] },
            targets: Targets::Packed,
            loss: SoftTargets { temperature: 1.0, standardize: false },
            discriminator_input: DiscriminatorInput::Probs,
        };
        let b = batch(2, 4);
        let err = objective.step(&student, &b, &ad).err().expect("an error").to_string();
        assert!(err.contains("8 soft-label values of 4 classes for a batch of 2 x 3"), "{err}");
    }
}

//! The objective of every `kd-distill` method: the student's loss against teacher targets that
//! come either from frozen teachers run on the batch (no autodiff graph for them) or from the
//! batch's packed soft labels, plus MEAL V2's discriminator when it is on.

use super::method::DiscriminatorInput;
use crate::teachers::Teachers;
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData};
use kd_common::losses::{discriminator_loss, jensen_shannon, kd_loss, soft_cross_entropy, symmetric_kl};
use kd_common::models::{Discriminator, Network};
use kd_common::train::{Objective, StepOutput};
use kd_datasets::Batch;

/// The trained module: the student and, for MEAL V2, its discriminator (trained jointly, one
/// optimizer; anchors §A3.1).
#[derive(Module, Debug)]
pub struct Student {
    /// The student network.
    pub network: Network,
    /// MEAL V2's discriminator.
    pub discriminator: Option<Discriminator>,
}

/// The student's loss against the teacher distribution `p_t`.
#[derive(Clone, Copy, Debug)]
pub enum Loss {
    /// Hinton KD (`kd_common::losses::kd_kl`), with the hard labels.
    Kd {
        /// Weight of the distillation term.
        alpha: f32,
        /// Temperature (teacher and student).
        temperature: f32,
    },
    /// Soft cross-entropy at a student temperature (FKD, MEAL V2).
    SoftCrossEntropy {
        /// Student temperature.
        temperature: f32,
    },
    /// SSLD's symmetric KL.
    SymmetricKl,
    /// The true Jensen-Shannon divergence.
    JensenShannon,
}

/// Where the teacher distribution comes from.
pub enum Targets {
    /// Frozen teachers run on every batch at `temperature`.
    Online {
        /// Softmax temperature of the teachers.
        temperature: f32,
    },
    /// The batch's packed soft labels.
    Packed,
}

/// A distillation objective.
pub struct DistillObjective {
    /// Teachers: run for `Targets::Online`, and the reference of the agreement metric.
    pub teachers: Teachers,
    /// Target source.
    pub targets: Targets,
    /// Loss.
    pub loss: Loss,
    /// What the discriminator sees (when the student carries one).
    pub discriminator_input: DiscriminatorInput,
}

impl Objective<Student> for DistillObjective {
    fn step(&mut self, model: &Student, images: Tensor<4>, labels: Tensor<1, Int>, batch: &Batch) -> kd_common::Result<StepOutput> {
        let device = images.device();
        let logits = model.network.forward(images.clone());
        let (teacher_probs, teacher_logits) = match self.targets {
            Targets::Online { temperature } => {
                let out = self.teachers.ensemble(images.inner(), temperature);
                (out.probs.autodiff(), Some(out.mean_logits.autodiff()))
            }
            Targets::Packed => {
                let [n, classes] = logits.dims();
                if batch.soft_targets.len() != n * classes {
                    return Err(kd_common::Error::Shape(format!("{} soft-label values for a batch of {n} x {classes}", batch.soft_targets.len())));
                }
                (Tensor::from_data(TensorData::new(batch.soft_targets.clone(), [n, classes]), &device), None)
            }
        };
        let mut loss = match self.loss {
            Loss::Kd { alpha, temperature } => kd_loss(logits.clone(), teacher_probs.clone(), labels, alpha, temperature),
            Loss::SoftCrossEntropy { temperature } => soft_cross_entropy(logits.clone(), teacher_probs.clone(), temperature),
            Loss::SymmetricKl => symmetric_kl(logits.clone(), teacher_probs.clone()),
            Loss::JensenShannon => jensen_shannon(logits.clone(), teacher_probs.clone()),
        };
        if let Some(discriminator) = &model.discriminator {
            let (student_side, teacher_side) = match (self.discriminator_input, teacher_logits) {
                (DiscriminatorInput::Logits, Some(teacher_logits)) => (logits.clone(), teacher_logits),
                (DiscriminatorInput::Logits, None) => {
                    return Err(kd_common::Error::InvalidConfig("the discriminator needs teacher logits, which packed labels do not hold".into()));
                }
                (DiscriminatorInput::Probs, _) => (softmax(logits.clone(), 1), teacher_probs),
            };
            let scores = discriminator.forward(Tensor::cat(vec![student_side, teacher_side], 0));
            loss = loss + discriminator_loss(scores);
        }
        Ok(StepOutput { loss, logits })
    }

    fn network<'a>(&self, model: &'a Student) -> &'a Network {
        &model.network
    }

    fn references(&self) -> &[Network] {
        &self.teachers.networks
    }
}

//! SEED's objective (Fang et al., ICLR 2021, §3): the frozen teacher and the student embed the
//! same augmented view, both L2-normalised; the student matches the teacher's similarity
//! distribution over `[its own embedding, the negatives]` (`kd_common::losses::seed_loss`). The
//! negatives are a FIFO queue of earlier teacher embeddings (SEED), or, new in kdkit, the teacher
//! embeddings of the whole training set computed once (for datasets whose embeddings fit in
//! memory: no queue warm-up, every image a negative from the first step).

use burn::tensor::{Device, Tensor};
use kd_common::contrastive::{EmbeddingQueue, l2_normalize};
use kd_common::losses::seed_loss;
use kd_common::models::Network;
use kd_common::train::{Objective, ObjectiveState, StepInfo, StepOutput, upload};
use kd_common::{Error, Result};
use kd_datasets::Batch;

/// Which output of the teacher is its embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeacherOutput {
    /// The projection head's output (a MoCo or SEED checkpoint; SEED's choice).
    Projection,
    /// The pooled backbone features (any checkpoint, e.g. a supervised or imported one).
    Features,
}

impl TeacherOutput {
    /// `teacher`'s L2-normalised embedding of normalised images.
    pub fn embed(self, teacher: &Network, images: Tensor<4>) -> Tensor<2> {
        l2_normalize(match self {
            Self::Projection => teacher.forward(images),
            Self::Features => teacher.forward_features(images),
        })
    }
}

/// Where the negatives come from.
pub enum Negatives {
    /// SEED's FIFO queue of teacher embeddings, pushed after every step.
    Queue(EmbeddingQueue),
    /// The teacher embeddings of every training image (fixed).
    DatasetBank(Tensor<2>),
}

impl Negatives {
    fn rows(&self) -> Tensor<2> {
        match self {
            Self::Queue(queue) => queue.rows(),
            Self::DatasetBank(bank) => bank.clone(),
        }
    }
}

/// The SEED objective; the teacher and the negatives live on the non-autodiff device.
pub struct Seed {
    /// The frozen teacher (inference mode).
    pub teacher: Network,
    /// Its embedding.
    pub output: TeacherOutput,
    /// The negatives.
    pub negatives: Negatives,
    /// Student temperature tau_S (SEED: 0.2).
    pub tau_student: f32,
    /// Teacher temperature tau_T (SEED's code: 1e-4).
    pub tau_teacher: f32,
    /// The non-autodiff device.
    pub inner: Device,
    /// This step's teacher embeddings, queued after the optimizer step.
    pending: Option<Tensor<2>>,
}

impl Seed {
    /// The objective.
    pub fn new(
        teacher: Network,
        output: TeacherOutput,
        negatives: Negatives,
        taus: (f32, f32),
        inner: &Device,
    ) -> Self {
        Self {
            teacher,
            output,
            negatives,
            tau_student: taus.0,
            tau_teacher: taus.1,
            inner: inner.clone(),
            pending: None,
        }
    }

    /// The teacher's L2-normalised embedding of normalised images.
    pub fn teacher_embedding(&self, images: Tensor<4>) -> Tensor<2> {
        self.output.embed(&self.teacher, images)
    }
}

const QUEUE: &str = "seed_queue";

impl Objective<Network> for Seed {
    fn step(&mut self, model: &Network, batch: &Batch, device: &Device) -> Result<StepOutput> {
        let teacher = self.teacher_embedding(upload::images(batch, 0, &self.inner)?);
        let student = l2_normalize(model.forward(upload::images(batch, 0, device)?));
        let (dims_s, dims_t) = (student.dims(), teacher.dims());
        if dims_s[1] != dims_t[1] {
            return Err(Error::Shape(format!(
                "the student embeds into {} dimensions, the teacher into {}",
                dims_s[1], dims_t[1]
            )));
        }
        let loss = seed_loss(student, teacher.clone(), self.negatives.rows(), self.tau_student, self.tau_teacher);
        self.pending = Some(teacher);
        Ok(StepOutput { loss, metrics: Vec::new(), logits: None })
    }

    fn network<'a>(&self, model: &'a Network) -> Option<&'a Network> {
        Some(model)
    }

    fn after_step(&mut self, model: Network, _info: &StepInfo) -> Result<Network> {
        if let (Some(keys), Negatives::Queue(queue)) = (self.pending.take(), &mut self.negatives) {
            queue.push(keys)?;
        }
        Ok(model)
    }

    fn identity(&self) -> serde_json::Value {
        let negatives = match &self.negatives {
            Negatives::Queue(queue) => serde_json::json!({"queue": queue.rows().dims()}),
            Negatives::DatasetBank(bank) => serde_json::json!({"dataset_bank": bank.dims()}),
        };
        serde_json::json!({"seed": {"negatives": negatives, "teacher_output": self.output}})
    }

    fn save_state(&self) -> Result<ObjectiveState> {
        Ok(match &self.negatives {
            Negatives::Queue(queue) => ObjectiveState::from([(QUEUE.to_string(), queue.to_bytes()?)]),
            Negatives::DatasetBank(_) => ObjectiveState::new(),
        })
    }

    fn load_state(&mut self, mut state: ObjectiveState) -> Result<()> {
        if let Negatives::Queue(queue) = &mut self.negatives {
            let bytes =
                state.remove(QUEUE).ok_or_else(|| Error::InvalidConfig("the saved SEED state has no queue".into()))?;
            queue.load_bytes(&bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kd_common::models::{Arch, HeadSpec, ModelSpec};
    use kd_datasets::{HostTensor, Targets};

    fn network(out: usize, device: &Device) -> Network {
        let mut spec = ModelSpec::new(Arch::SmallCnn, 1, 10);
        spec.channels = Some(vec![4, 8, 16]);
        spec.head = HeadSpec::Projection { hidden: 16, out };
        spec.init(device).unwrap()
    }

    fn batch() -> Batch {
        let view =
            HostTensor { values: (0..4 * 64).map(|i| (i % 11) as f32 / 11.0).collect(), shape: vec![4, 1, 8, 8] };
        Batch { views: vec![view], indices: vec![0, 1, 2, 3], targets: Targets::None }
    }

    /// A step queues the teacher's embeddings after the optimizer step; a student whose
    /// embedding has another width than the teacher's is refused with both widths named.
    #[test]
    fn queues_teacher_embeddings_and_refuses_a_dimension_mismatch() {
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let queue = EmbeddingQueue::new(8, 6, 4, 0, &device).unwrap();
        let mut seed =
            Seed::new(network(6, &device), TeacherOutput::Projection, Negatives::Queue(queue), (0.2, 1e-4), &device);
        let student = network(6, &ad);
        assert!(seed.step(&student, &batch(), &ad).unwrap().loss.into_scalar::<f32>().is_finite());
        seed.after_step(student, &StepInfo { step: 1, epoch: 0, total_steps: 1, lr: 0.1 }).unwrap();
        let Negatives::Queue(queue) = &seed.negatives else { unreachable!() };
        assert_eq!(queue.pointer(), 4);
        let err = seed.step(&network(5, &ad), &batch(), &ad).err().unwrap().to_string();
        assert!(err.contains("5 dimensions, the teacher into 6"), "{err}");
    }
}

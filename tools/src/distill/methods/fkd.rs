//! FKD: teacher-free training from a `kd-pack-labels` file (Shen & Xing, "A Fast Knowledge
//! Distillation Framework for Visual Recognition", ECCV 2022, §3.2): region crops rebuilt from the
//! stored coordinates, the soft cross-entropy `-(1/B) sum_b sum_c q_bc log softmax(z_b / T)_c`
//! against their stored soft labels. With logit standardisation (Sun et al., CVPR 2024, §3.2)
//! the student's logits are z-scored before `/ T`; the stored labels are probabilities and stay
//! as packed.

use super::{DistillMethod, MethodRun, Trained, positive_temperature, set_if};
use crate::distill::crops::{CropArgs, RegionCrops};
use crate::distill::methods::meal_v2::DiscriminatorInput;
use crate::distill::objective::{DistillLoss, DistillObjective, Targets};
use crate::shared::profiles::Profile;
use crate::shared::teachers::Teachers;
use anyhow::Result;
use burn::tensor::{Device, Tensor};
use kd_common::losses::{soft_cross_entropy, standardize_logits};
use kd_datasets::Batch;
use serde_json::json;
use std::path::{Path, PathBuf};

/// FKD from packed region labels.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fkd {
    /// The label file.
    pub labels: PathBuf,
    /// Multi-crop sampling.
    pub crops: RegionCrops,
    /// Student temperature of the soft cross-entropy.
    pub temperature: f32,
    /// Z-score the student's logits before the temperature (logit standardisation).
    #[serde(default)]
    pub logit_standardization: bool,
}

/// `kd-distill fkd` flags.
#[derive(clap::Args, Debug)]
pub struct FkdFlags {
    /// The kd-pack-labels file.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    #[command(flatten)]
    pub crops: CropArgs,
    /// Student softmax temperature of the soft cross-entropy.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Z-score the student's logits before the temperature (Sun et al., CVPR 2024).
    #[arg(long)]
    pub logit_standardization: bool,
}

/// Soft cross-entropy to the targets at a student temperature (FKD, MEAL V2).
pub struct SoftTargets {
    /// Student temperature.
    pub temperature: f32,
    /// Z-score the student's logits first.
    pub standardize: bool,
}

impl DistillLoss for SoftTargets {
    fn loss(&self, student: Tensor<2>, teacher_probs: Tensor<2>, _batch: &Batch, _device: &Device) -> kd_common::Result<Tensor<1>> {
        let student = if self.standardize { standardize_logits(student) } else { student };
        Ok(soft_cross_entropy(student, teacher_probs, self.temperature))
    }
}

impl DistillMethod for Fkd {
    type Flags = FkdFlags;
    const NAME: &'static str = "fkd";

    fn defaults(profile: Profile, _flags: &FkdFlags) -> Self {
        Self {
            labels: PathBuf::new(),
            crops: RegionCrops::defaults(profile == Profile::Quick),
            temperature: 1.0,
            logit_standardization: false,
        }
    }

    fn apply(&mut self, flags: &FkdFlags) {
        if let Some(path) = &flags.labels {
            self.labels = path.clone();
        }
        self.crops.apply(&flags.crops);
        set_if(&mut self.temperature, &flags.temperature);
        self.logit_standardization |= flags.logit_standardization;
    }

    fn teachers(&self) -> &[PathBuf] {
        &[]
    }

    fn labels(&self) -> Option<&Path> {
        Some(&self.labels)
    }

    fn validate(&self, epochs: usize) -> Result<(), String> {
        if self.labels.as_os_str().is_empty() {
            return Err("fkd needs --labels (a kd-pack-labels file)".into());
        }
        self.crops.validate(epochs)?;
        positive_temperature(self.temperature)
    }

    fn train(&self, run: &MethodRun, teachers: Teachers) -> Result<Trained> {
        let regions = run.region_loaders(&self.labels, &self.crops)?;
        let mut objective = DistillObjective {
            teachers,
            targets: Targets::Packed,
            loss: SoftTargets { temperature: self.temperature, standardize: self.logit_standardization },
            discriminator_input: DiscriminatorInput::Probs,
        };
        let trained = run.fit(&mut objective, None, regions.phases())?;
        let data = json!({
            "label_file": self.labels,
            "crops_per_image_stored": regions.meta.crops_per_image,
            "teachers": regions.meta.teachers,
        });
        Ok(Trained { data: Some(data), ..trained })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::methods::labelled;
    use kd_common::losses::test_support::{STUDENT, check_gradient, value};

    /// With standardisation, by hand: the z-scored student rows are [-1, 0, 1] and
    /// [-0.57735, -0.57735, 1.15470] (see `logit_standardization`); Python's `math` module gives
    /// the soft cross-entropy at T 2 to q = [[0.1, 0.2, 0.7], [1/3, 1/3, 1/3]] of those as
    /// 1.034029604172132.
    #[test]
    fn standardised_soft_cross_entropy_matches_independent_value() {
        let device = Device::default();
        let q = Tensor::<2>::from_data([[0.1f32, 0.2, 0.7], [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]], &device);
        let loss = SoftTargets { temperature: 2.0, standardize: true };
        let v: f32 = loss.loss(value(&device, STUDENT), q, &labelled(vec![0, 0]), &device).unwrap().into_scalar();
        assert!((v - 1.034_029_6).abs() < 1e-5, "{v}");
    }

    #[test]
    fn standardised_gradient_matches_finite_differences() {
        check_gradient(|zs, device| {
            let q = Tensor::<2>::from_data([[0.1f32, 0.2, 0.7], [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]], device);
            SoftTargets { temperature: 2.0, standardize: true }.loss(zs, q, &labelled(vec![0, 0]), device).unwrap()
        });
    }
}

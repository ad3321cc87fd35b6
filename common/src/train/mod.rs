//! The one training loop of kdkit. Trainers plug in an [`Objective`] (their loss, an after-step
//! hook, persistent state) and a [`Validation`]; the loop owns batching from any
//! [`kd_datasets::BatchSource`], optimisation, the learning-rate schedule, NaN/inf detection,
//! metrics and resume-after-kill.

mod evaluate;
mod features;
mod knn;
mod linear_probe;
mod objective;
mod optimizer;
mod schedule;
mod state;
mod trainer;
pub mod upload;
mod validation;

pub use evaluate::{evaluate, predict};
pub use features::{CachedFeatures, cache_features};
pub use knn::{KnnConfig, knn_top1, knn_top1_features, vote as knn_vote};
pub use linear_probe::{LinearCrossEntropy, LinearProbeConfig, linear_probe};
pub use objective::{Objective, ObjectiveState, StepInfo, StepOutput};
pub use optimizer::OptimizerConfig;
pub use schedule::{Decay, ScheduleConfig};
pub use state::{PassRow, Progress, StateDir, write_metrics_csv};
pub use trainer::{FitOutcome, Phase, Run, TrainConfig, fit};
pub use validation::Validation;

//! The one training loop of kdkit. Trainers plug in an [`Objective`] (their loss and targets);
//! the loop owns data loading, optimisation, the learning-rate schedule, validation, NaN/inf
//! detection, metrics and resume-after-kill.

mod evaluate;
mod optimizer;
mod schedule;
mod state;
mod trainer;

pub use evaluate::{ensemble_logits, evaluate, images_tensor, predict};
pub use optimizer::OptimizerConfig;
pub use schedule::{Decay, ScheduleConfig};
pub use state::{EpochRow, Progress, StateDir, write_metrics_csv};
pub use trainer::{FitOutcome, Objective, Phase, StepOutput, TrainConfig, fit, fit_phases};

//! Learning-rate schedules, evaluated per optimizer step: linear warm-up from 0, then cosine
//! decay to 0 (Loshchilov & Hutter, SGDR, ICLR 2017, without restarts), step decay at epoch
//! milestones, or a constant rate.

/// Decay after warm-up.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Decay {
    /// `lr * (1 + cos(pi * t)) / 2`, t going from 0 to 1 over the steps after warm-up.
    Cosine,
    /// `lr * gamma^k` where k counts the milestones (epochs) already reached.
    Step {
        /// Epochs at which the rate is multiplied by `gamma`.
        milestones: Vec<usize>,
        /// Factor.
        gamma: f64,
    },
    /// No decay.
    Constant,
}

/// Base rate, warm-up and decay.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Epochs of linear warm-up (fractions allowed).
    pub warmup_epochs: f64,
    /// Decay after warm-up.
    pub decay: Decay,
}

impl ScheduleConfig {
    /// Learning rate of optimizer step `step` (0-based) in a run of `total_steps` steps with
    /// `steps_per_epoch` steps per epoch.
    pub fn lr_at(&self, step: usize, steps_per_epoch: usize, total_steps: usize) -> f64 {
        let warmup = (self.warmup_epochs * steps_per_epoch as f64).round() as usize;
        if step < warmup {
            return self.lr * (step + 1) as f64 / warmup as f64;
        }
        match &self.decay {
            Decay::Constant => self.lr,
            Decay::Cosine => {
                let span = total_steps.saturating_sub(warmup).max(1) as f64;
                let t = ((step - warmup) as f64 / span).min(1.0);
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Decay::Step { milestones, gamma } => {
                let epoch = step / steps_per_epoch.max(1);
                self.lr * gamma.powi(milestones.iter().filter(|&&m| epoch >= m).count() as i32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = ScheduleConfig { lr: 0.1, warmup_epochs: 1.0, decay: Decay::Cosine };
        // 10 steps an epoch, 30 steps: warm-up 0.01 .. 0.1, then cosine over 20 steps.
        assert!((s.lr_at(0, 10, 30) - 0.01).abs() < 1e-12);
        assert!((s.lr_at(9, 10, 30) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(10, 10, 30) - 0.1).abs() < 1e-12);
        // Half-way through the decay: cos(pi/2) = 0 -> lr / 2.
        assert!((s.lr_at(20, 10, 30) - 0.05).abs() < 1e-12);
        assert!(s.lr_at(29, 10, 30) > 0.0 && s.lr_at(29, 10, 30) < 0.001);
    }

    #[test]
    fn step_decay_at_milestones() {
        let s =
            ScheduleConfig { lr: 0.1, warmup_epochs: 0.0, decay: Decay::Step { milestones: vec![2, 4], gamma: 0.2 } };
        assert!((s.lr_at(19, 10, 60) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(20, 10, 60) - 0.02).abs() < 1e-12);
        assert!((s.lr_at(45, 10, 60) - 0.004).abs() < 1e-12);
    }
}

//! One verdict per seed claim: the claim as its paper states it, tested over the student seeds
//! by Welch's t-test (one-sided, alpha 0.05). With one seed on either side there is no test and
//! the verdict is "inconclusive".
//!
//! - reproduced: the claimed difference is significant (`p < 0.05`);
//! - not reproduced: the mean difference is on the wrong side of the claim;
//! - inconclusive: the right side, but not significant, or a single seed;
//! - not run: a run the claim needs is missing.

use super::run_dir::{MethodRuns, RunRecord};
use super::stats::{format_mean_sd, mean_sd, welch};

/// Significance level of the one-sided tests.
pub const ALPHA: f64 = 0.05;

/// What a claim compares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Test top-1 of a classifier.
    Top1,
    /// Linear-probe top-1 of a frozen encoder.
    LinearProbe,
}

impl Metric {
    fn of(self, run: &RunRecord) -> Option<f64> {
        match self {
            Self::Top1 => run.eval_number("top1"),
            Self::LinearProbe => run.eval_number("linear_probe_top1"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Top1 => "top-1",
            Self::LinearProbe => "linear-probe top-1",
        }
    }
}

/// A seed paper's claim as a comparison of two methods.
#[derive(Clone, Debug)]
pub struct Claim {
    /// Short name (the paper).
    pub name: &'static str,
    /// The claim in words.
    pub statement: &'static str,
    /// The method the claim is about.
    pub treatment: String,
    /// What it is compared with.
    pub control: String,
    /// The compared number.
    pub metric: Metric,
    /// The claim: `treatment - control > margin` (0: better; -0.5: at most 0.5 points worse).
    pub margin: f64,
    /// The claim also says the treatment trains in less time than the control.
    pub faster: bool,
}

/// The claims of the five seed papers and of KD itself, over the methods `make` runs. The
/// prune-then-distill claim uses the sparsest pruned teacher in the run (the Makefile fixes the
/// ladder in advance; no level is picked after the fact).
pub fn claims(methods: &[MethodRuns]) -> Vec<Claim> {
    let sparsest = methods
        .iter()
        .filter_map(|m| m.name.strip_prefix("kd-pruned").and_then(|r| r.parse::<f64>().ok()).map(|r| (r, &m.name)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or_else(|| "kd-pruned".to_string(), |(_, name)| name.clone());
    let claim = |name, statement, treatment: &str, control: &str, metric, margin, faster| Claim {
        name,
        statement,
        treatment: treatment.into(),
        control: control.into(),
        metric,
        margin,
        faster,
    };
    vec![
        claim(
            "KD",
            "a distilled student beats the same student trained on labels",
            "kd",
            "baseline",
            Metric::Top1,
            0.0,
            false,
        ),
        claim(
            "FKD",
            "teacher-free training on stored region labels is within 0.5 points of online KD on the same crops \
             with the same loss, in less time",
            "fkd",
            "fkd-online",
            Metric::Top1,
            -0.5,
            true,
        ),
        claim(
            "prune-then-distill",
            "the student learns more from the pruned teacher than from the unpruned one",
            &sparsest,
            "kd",
            Metric::Top1,
            0.0,
            false,
        ),
        claim(
            "MEAL V2",
            "an ensemble of teachers with a discriminator beats single-teacher KD (MEAL V2 continues from the \
             trained baseline student, as its recipe does; KD starts from scratch)",
            "meal-v2",
            "kd",
            Metric::Top1,
            0.0,
            false,
        ),
        claim(
            "SSLD",
            "unlabelled images distilled by the teacher help a student with the same labelled images",
            "ssld",
            "ssld-baseline",
            Metric::Top1,
            0.0,
            false,
        ),
        claim(
            "SEED",
            "a SEED student beats the same network trained with MoCo v2 alone",
            "seed",
            "moco-student",
            Metric::LinearProbe,
            0.0,
            false,
        ),
    ]
}

/// The outcome of a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Significant in the claimed direction.
    Reproduced,
    /// The mean difference is on the wrong side.
    NotReproduced,
    /// Right side, not significant, or one seed.
    Inconclusive,
    /// A run is missing.
    NotRun,
}

impl Outcome {
    /// The word in the report.
    pub fn word(self) -> &'static str {
        match self {
            Self::Reproduced => "reproduced",
            Self::NotReproduced => "not reproduced",
            Self::Inconclusive => "inconclusive",
            Self::NotRun => "not run",
        }
    }
}

/// A claim's verdict with the numbers behind it.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The outcome.
    pub outcome: Outcome,
    /// One line: the numbers, the test.
    pub evidence: String,
}

/// Judges `claim` on the runs of `methods`.
pub fn judge(claim: &Claim, methods: &[MethodRuns]) -> Verdict {
    let find = |name: &str| methods.iter().find(|m| m.name == name);
    let (Some(treatment), Some(control)) = (find(&claim.treatment), find(&claim.control)) else {
        let missing: Vec<&str> =
            [&claim.treatment, &claim.control].into_iter().filter(|n| find(n).is_none()).map(|n| n.as_str()).collect();
        return Verdict { outcome: Outcome::NotRun, evidence: format!("no runs of {}", missing.join(" and ")) };
    };
    let (Some(t), Some(c)) = (treatment.all(|r| claim.metric.of(r)), control.all(|r| claim.metric.of(r))) else {
        return Verdict { outcome: Outcome::NotRun, evidence: format!("a run lacks {}", claim.metric.name()) };
    };
    let (t_mean, _) = mean_sd(&t);
    let (c_mean, _) = mean_sd(&c);
    let difference = t_mean - c_mean;
    let mut evidence = format!(
        "{} {}: {} (n = {}) vs {} {} (n = {}): difference {difference:+.2} points (claim: > {:+.1})",
        claim.treatment,
        claim.metric.name(),
        format_mean_sd(&t, 2),
        t.len(),
        claim.control,
        format_mean_sd(&c, 2),
        c.len(),
        claim.margin
    );
    let mut faster = Some(true);
    if claim.faster {
        faster = None;
        let seconds = |m: &MethodRuns| m.all(|r| r.trained_number("train_seconds")).map(|s| mean_sd(&s).0);
        match (seconds(treatment), seconds(control)) {
            (Some(ts), Some(cs)) if cs > 0.0 => {
                faster = Some(ts < cs);
                evidence.push_str(&format!("; training time {ts:.0} s vs {cs:.0} s ({:.2}x)", ts / cs));
            }
            _ => evidence.push_str("; training time not recorded"),
        }
    }
    let outcome = match welch(&t, &c, claim.margin) {
        None => {
            evidence.push_str("; one seed: no test");
            if difference > claim.margin { Outcome::Inconclusive } else { Outcome::NotReproduced }
        }
        Some(test) => {
            evidence.push_str(&format!(
                "; Welch t = {:.2}, df = {:.1}, one-sided p = {:.3}",
                test.t, test.df, test.p_greater
            ));
            if difference <= claim.margin {
                Outcome::NotReproduced
            } else if test.p_greater < ALPHA {
                Outcome::Reproduced
            } else {
                Outcome::Inconclusive
            }
        }
    };
    let outcome = match (outcome, faster) {
        (Outcome::Reproduced, Some(false)) => {
            evidence.push_str("; not faster");
            Outcome::NotReproduced
        }
        (Outcome::Reproduced, None) => Outcome::Inconclusive,
        (other, _) => other,
    };
    Verdict { outcome, evidence }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn timed(name: &str, top1: &[f64], seconds: Option<f64>) -> MethodRuns {
        let runs = top1
            .iter()
            .enumerate()
            .map(|(seed, v)| RunRecord {
                dir: name.into(),
                seed: Some(seed as u64),
                eval: serde_json::json!({ "top1": v }),
                training: serde_json::Value::Null,
                trained: seconds.map_or(serde_json::Value::Null, |s| serde_json::json!({ "train_seconds": s })),
                curves: BTreeMap::new(),
            })
            .collect();
        MethodRuns { name: name.into(), runs }
    }

    fn method(name: &str, top1: &[f64]) -> MethodRuns {
        timed(name, top1, None)
    }

    fn kd_claim(methods: &[MethodRuns]) -> Verdict {
        judge(&claims(methods)[0], methods)
    }

    #[test]
    fn outcomes_follow_the_test() {
        // kd - baseline = 1.0 with sd 0.1 each over 3 seeds: t = 1 / sqrt(0.01/3 * 2) = 12.2.
        let clear = [method("kd", &[88.9, 89.0, 89.1]), method("baseline", &[87.9, 88.0, 88.1])];
        let verdict = kd_claim(&clear);
        assert_eq!(verdict.outcome, Outcome::Reproduced, "{verdict:?}");
        assert!(verdict.evidence.contains("+1.00 points") && verdict.evidence.contains("n = 3"), "{verdict:?}");
        let worse = [method("kd", &[87.9, 88.0, 88.1]), method("baseline", &[88.9, 89.0, 89.1])];
        assert_eq!(kd_claim(&worse).outcome, Outcome::NotReproduced);
        let noisy = [method("kd", &[87.0, 89.2, 88.4]), method("baseline", &[88.0, 88.2, 87.9])];
        assert_eq!(kd_claim(&noisy).outcome, Outcome::Inconclusive);
        let one_seed = [method("kd", &[89.0]), method("baseline", &[88.0])];
        let verdict = kd_claim(&one_seed);
        assert_eq!(verdict.outcome, Outcome::Inconclusive);
        assert!(verdict.evidence.contains("one seed"), "{verdict:?}");
        assert_eq!(kd_claim(&[method("kd", &[89.0])]).outcome, Outcome::NotRun);
    }

    #[test]
    fn prune_claim_uses_the_sparsest_teacher() {
        let methods =
            [method("kd-pruned0.640", &[1.0]), method("kd-pruned0.210", &[1.0]), method("kd-pruned0.410", &[1.0])];
        assert_eq!(claims(&methods)[2].treatment, "kd-pruned0.210");
    }

    /// FKD's claim is non-inferiority: 0.3 points below KD passes the -0.5 margin when the
    /// spread is small (sd 0.01: t = 0.2 / sqrt(2 * 0.0001 / 3) = 24.5), but the claim also
    /// needs the training times.
    #[test]
    fn fkd_is_judged_against_a_margin() {
        let methods = [method("fkd", &[88.69, 88.70, 88.71]), method("fkd-online", &[88.99, 89.00, 89.01])];
        let claim = &claims(&methods)[1];
        let verdict = judge(claim, &methods);
        // No training times recorded: the time part cannot pass.
        assert!(verdict.evidence.contains("training time not recorded"), "{verdict:?}");
        assert_eq!(verdict.outcome, Outcome::Inconclusive, "accurate enough, speed unknown: {verdict:?}");
        let methods = [
            timed("fkd", &[88.69, 88.70, 88.71], Some(100.0)),
            timed("fkd-online", &[88.99, 89.00, 89.01], Some(400.0)),
        ];
        let verdict = judge(claim, &methods);
        assert_eq!(verdict.outcome, Outcome::Reproduced, "{verdict:?}");
        assert!(verdict.evidence.contains("100 s vs 400 s (0.25x)"), "{verdict:?}");
        let methods = [
            timed("fkd", &[88.69, 88.70, 88.71], Some(500.0)),
            timed("fkd-online", &[88.99, 89.00, 89.01], Some(400.0)),
        ];
        assert_eq!(judge(claim, &methods).outcome, Outcome::NotReproduced, "slower");
        let methods = [method("fkd", &[88.19, 88.20, 88.21]), method("fkd-online", &[88.99, 89.00, 89.01])];
        assert_eq!(judge(claim, &methods).outcome, Outcome::NotReproduced, "0.8 points below");
    }
}

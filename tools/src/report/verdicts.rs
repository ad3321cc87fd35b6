//! One verdict per seed claim: the claim as its paper states it, tested over the student seeds.
//! The difference `treatment - control` is reported with its 95% confidence interval (Welch), the
//! one-sided p of the claimed direction, Hedges' g and the minimum detectable difference at
//! alpha 0.05 (two-sided) and power 0.8 ([`super::stats`]). The words follow the interval, so
//! that a word and its printed interval never disagree:
//!
//! - reproduced: the 95% confidence interval lies wholly above the claim's margin (one-sided
//!   `p < 0.025`);
//! - contradicted: it lies wholly below (the data say the claim is false here), or a claim of
//!   speed meets a run that is not faster;
//! - inconclusive: everything else, with the reason (one seed on a side, or too few seeds for the
//!   observed difference: how many would detect it);
//! - not run: a run the claim needs is missing.

use super::budget::{Budget, mean_budget};
use super::run_dir::{MethodRuns, RunRecord};
use super::stats::{format_mean_sd, hedges_g, mean_sd, pooled_sd, seeds_to_detect, welch};

/// Level of the reported confidence intervals, on which the words are decided.
pub const CONFIDENCE: f64 = 0.95;
/// Significance level (two-sided) of the same decision: each side of the interval is a
/// one-sided test at `ALPHA / 2`.
pub const ALPHA: f64 = 1.0 - CONFIDENCE;
/// Power at which the minimum detectable difference is stated.
pub const POWER: f64 = 0.8;

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
    /// The control the verdict rests on.
    pub control: String,
    /// Further controls, shown as secondary rows without a verdict of their own (a confounded
    /// comparison kept for reference, or one that isolates another part of the claim).
    pub secondary: Vec<String>,
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
    let claim = |name, statement, (treatment, control): (&str, &str), metric, margin| Claim {
        name,
        statement,
        treatment: treatment.into(),
        control: control.into(),
        secondary: Vec::new(),
        metric,
        margin,
        faster: false,
    };
    vec![
        claim(
            "KD",
            "a distilled student beats the same student trained on labels",
            ("kd", "baseline"),
            Metric::Top1,
            0.0,
        ),
        Claim {
            faster: true,
            ..claim(
                "FKD",
                "teacher-free training on stored region labels is within 0.5 points of online KD on the same \
                 crops with the same loss, in less time",
                ("fkd", "fkd-online"),
                Metric::Top1,
                -0.5,
            )
        },
        Claim {
            secondary: vec!["kd".into()],
            ..claim(
                "prune-then-distill",
                "the student learns more from the pruned teacher than from the unpruned one (the control's dense \
                 teacher was retrained for as many rounds as the pruned one; the secondary row's was not)",
                (&sparsest, "kd-retrained"),
                Metric::Top1,
                0.0,
            )
        },
        Claim {
            secondary: vec!["baseline-continued".into(), "kd".into()],
            ..claim(
                "MEAL V2",
                "an ensemble of teachers with a discriminator beats single-teacher KD (both continue from the \
                 trained baseline student for the same epochs, as MEAL V2's recipe starts; secondary rows: the \
                 baseline continued on labels alone, and KD from scratch, which trained for fewer epochs)",
                ("meal-v2", "kd-continued"),
                Metric::Top1,
                0.0,
            )
        },
        claim(
            "prune-then-distill, derived student",
            "the dense student shaped by the sparsest teacher learns more by KD from it than on labels alone",
            ("kd-derived-random", "derived-baseline-random"),
            Metric::Top1,
            0.0,
        ),
        claim(
            "SSLD",
            "unlabelled images distilled by the teacher help a student with the same labelled images",
            ("ssld", "ssld-baseline"),
            Metric::Top1,
            0.0,
        ),
        claim(
            "SEED",
            "a SEED student beats the same network trained with MoCo v2 alone",
            ("seed", "moco-student"),
            Metric::LinearProbe,
            0.0,
        ),
    ]
}

/// The outcome of a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Significant in the claimed direction.
    Reproduced,
    /// The confidence interval excludes the claimed effect (or the treatment is not faster
    /// where the claim says it is).
    Contradicted,
    /// Neither: one seed, or too few seeds for the observed difference.
    Inconclusive,
    /// A run is missing.
    NotRun,
}

impl Outcome {
    /// The word in the report.
    pub fn word(self) -> &'static str {
        match self {
            Self::Reproduced => "reproduced",
            Self::Contradicted => "contradicted",
            Self::Inconclusive => "inconclusive",
            Self::NotRun => "not run",
        }
    }
}

/// The numbers of one comparison over the seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// Seeds of treatment and control.
    pub n: (usize, usize),
    /// Means of treatment and control.
    pub means: (f64, f64),
    /// `mean(treatment) - mean(control)`.
    pub mean: f64,
    /// Its 95% confidence interval (Welch), with two seeds or more on each side.
    pub interval: Option<(f64, f64)>,
    /// One-sided p of `difference > margin`.
    pub p: Option<f64>,
    /// Hedges' g (absent without spread).
    pub hedges_g: Option<f64>,
    /// Minimum detectable difference beyond the margin at [`ALPHA`] and [`POWER`].
    pub minimum_detectable: Option<f64>,
    /// Seeds per side that would detect the observed difference at [`ALPHA`] and [`POWER`].
    pub seeds_needed: Option<usize>,
}

/// A comparison of the claim's treatment with one control.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The control compared with.
    pub control: String,
    /// The outcome.
    pub outcome: Outcome,
    /// Why this word (one sentence).
    pub reason: String,
    /// The means and their spread, in words.
    pub evidence: String,
    /// The test's numbers (absent when a run is missing).
    pub difference: Option<Difference>,
    /// Training budgets of treatment and control (means over their runs).
    pub budgets: Option<(Budget, Budget)>,
}

/// Judges `claim` on the runs of `methods` against its control.
pub fn judge(claim: &Claim, methods: &[MethodRuns]) -> Verdict {
    judge_against(claim, &claim.control, methods)
}

/// Judges `claim` against `control` (the claim's own or a secondary one).
pub fn judge_against(claim: &Claim, control_name: &str, methods: &[MethodRuns]) -> Verdict {
    let not_run = |reason: String| Verdict {
        control: control_name.to_string(),
        outcome: Outcome::NotRun,
        reason,
        evidence: String::new(),
        difference: None,
        budgets: None,
    };
    let find = |name: &str| methods.iter().find(|m| m.name == name);
    let (Some(treatment), Some(control)) = (find(&claim.treatment), find(control_name)) else {
        let missing: Vec<&str> =
            [claim.treatment.as_str(), control_name].into_iter().filter(|n| find(n).is_none()).collect();
        return not_run(format!("no runs of {}", missing.join(" and ")));
    };
    let (Some(t), Some(c)) = (treatment.all(|r| claim.metric.of(r)), control.all(|r| claim.metric.of(r))) else {
        return not_run(format!("a run lacks {}", claim.metric.name()));
    };
    let evidence = format!(
        "{} {}: {} (n = {}) vs {} {} (n = {})",
        claim.treatment,
        claim.metric.name(),
        format_mean_sd(&t, 2),
        t.len(),
        control_name,
        format_mean_sd(&c, 2),
        c.len(),
    );
    let budgets = Some((mean_budget(treatment), mean_budget(control)));
    let difference = compare(&t, &c, claim.margin);
    let (mut outcome, mut reason) = word(&difference, claim.margin);
    if claim.faster {
        (outcome, reason) = with_speed(outcome, reason, treatment, control);
    }
    Verdict { control: control_name.to_string(), outcome, reason, evidence, difference: Some(difference), budgets }
}

/// The statistics of `t - c` against `margin`.
fn compare(t: &[f64], c: &[f64], margin: f64) -> Difference {
    let (t_mean, _) = mean_sd(t);
    let (c_mean, _) = mean_sd(c);
    let mean = t_mean - c_mean;
    let test = welch(t, c, margin);
    // Only for a difference on the claimed side: more seeds could then reproduce the claim.
    let seeds_needed = pooled_sd(t, c)
        .filter(|sd| *sd > 0.0 && mean > margin)
        .and_then(|sd| seeds_to_detect(mean - margin, sd, ALPHA / 2.0, POWER));
    Difference {
        n: (t.len(), c.len()),
        means: (t_mean, c_mean),
        mean,
        interval: test.map(|w| w.interval(CONFIDENCE)),
        p: test.map(|w| w.p_greater),
        hedges_g: hedges_g(t, c),
        minimum_detectable: test.map(|w| w.minimum_detectable(ALPHA / 2.0, POWER)),
        seeds_needed,
    }
}

/// The verdict word of a difference against the claim's margin, and why.
fn word(d: &Difference, margin: f64) -> (Outcome, String) {
    let (Some((low, high)), Some(p)) = (d.interval, d.p) else {
        return (
            Outcome::Inconclusive,
            format!(
                "too few seeds: {} against {}, and a test needs two or more on each side (`make SEEDS=\"0 1 2\"`)",
                d.n.0, d.n.1
            ),
        );
    };
    if low > margin {
        return (
            Outcome::Reproduced,
            format!("the 95% CI [{low:+.2}, {high:+.2}] lies above the claim's margin {margin:+.1} ({})", p_words(p)),
        );
    }
    if high < margin {
        return (
            Outcome::Contradicted,
            format!("the 95% CI [{low:+.2}, {high:+.2}] lies below the claim's margin {margin:+.1}"),
        );
    }
    let detectable = d.minimum_detectable.unwrap_or(f64::NAN);
    let observed = (d.mean - margin).abs();
    let mut reason = format!("the 95% CI [{low:+.2}, {high:+.2}] straddles the claim's margin {margin:+.1}");
    if detectable > observed {
        reason.push_str(&format!(
            "; underpowered: these seeds detect {detectable:.2} points beyond the margin at power {POWER}, the \
             observed difference is {observed:.2} from it"
        ));
        match d.seeds_needed {
            Some(n) => reason.push_str(&format!(" (about {n} seeds per side would detect it)")),
            None if d.mean > margin => reason.push_str(" (more seeds than is practical would be needed to detect it)"),
            None => {}
        }
    }
    (Outcome::Inconclusive, reason)
}

/// A claim of speed as well as accuracy: accurate enough and faster reproduces it; not faster
/// contradicts it whatever the accuracy says; without recorded times it is at best
/// inconclusive.
fn with_speed(outcome: Outcome, reason: String, treatment: &MethodRuns, control: &MethodRuns) -> (Outcome, String) {
    let seconds = |m: &MethodRuns| m.all(|r| r.trained_number("train_seconds")).map(|s| mean_sd(&s).0);
    let (ts, cs) = match (seconds(treatment), seconds(control)) {
        (Some(ts), Some(cs)) if cs > 0.0 => (ts, cs),
        _ => {
            let outcome = if outcome == Outcome::Reproduced { Outcome::Inconclusive } else { outcome };
            return (outcome, format!("{reason}; training time not recorded"));
        }
    };
    let timing = format!("training time {ts:.0} s vs {cs:.0} s ({:.2}x)", ts / cs);
    if ts >= cs {
        return (Outcome::Contradicted, format!("{reason}; not faster: {timing}"));
    }
    (outcome, format!("{reason}; {timing}"))
}

/// "one-sided p = 0.012", or "one-sided p < 0.001".
pub fn p_words(p: f64) -> String {
    if p < 0.001 { "one-sided p < 0.001".into() } else { format!("one-sided p = {p:.3}") }
}

/// The budgets of a comparison in words, flagged when they differ: other epochs, or images
/// differing by more than 5% (an FKD epoch of several crops per image, SSLD's extra unlabelled
/// images, a student continued from another).
pub fn budget_words(verdict: &Verdict, treatment: &str) -> Option<String> {
    let (t, c) = verdict.budgets.as_ref()?;
    let mut text = format!("budgets: {treatment} {}; {} {}", t.words(), verdict.control, c.words());
    let mut differences = Vec::new();
    if let (Some(te), Some(ce)) = (t.epochs, c.epochs)
        && te != ce
    {
        differences.push(format!("{te:.0} epochs against {ce:.0}"));
    }
    if let (Some(ti), Some(ci)) = (t.images, c.images)
        && ci > 0.0
        && (ti / ci - 1.0).abs() > 0.05
    {
        differences.push(format!("{:.2}x the images", ti / ci));
    }
    if !differences.is_empty() {
        text.push_str(&format!(" (unequal budgets: {treatment} had {})", differences.join(" and ")));
    }
    Some(text)
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
                budget: Budget::default(),
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

    /// The synthetic seed sets are those of `stats::tests` (checked there against SciPy):
    /// clear: p 0.003; noisy: p 0.41, CI (-2.53, +2.86), MDD 3.38; worse: CI (-1.23, -0.77).
    #[test]
    fn each_word_follows_its_rule() {
        let clear = [method("kd", &[88.9, 89.3, 89.0]), method("baseline", &[88.1, 88.0, 88.4])];
        let verdict = kd_claim(&clear);
        assert_eq!(verdict.outcome, Outcome::Reproduced, "{verdict:?}");
        let d = verdict.difference.clone().unwrap();
        assert!((d.mean - 0.9).abs() < 1e-9 && d.n == (3, 3), "{d:?}");
        assert!(verdict.evidence.contains("n = 3") && verdict.reason.contains("p = 0.003"), "{verdict:?}");
        assert!(verdict.reason.contains("[+0.43, +1.37] lies above"), "{verdict:?}");

        let worse = [method("kd", &[87.9, 88.0, 88.1]), method("baseline", &[88.9, 89.0, 89.1])];
        let verdict = kd_claim(&worse);
        assert_eq!(verdict.outcome, Outcome::Contradicted, "{verdict:?}");
        assert!(verdict.reason.contains("[-1.23, -0.77]"), "{verdict:?}");

        let noisy = [method("kd", &[87.0, 89.2, 88.4]), method("baseline", &[88.0, 88.2, 87.9])];
        let verdict = kd_claim(&noisy);
        assert_eq!(verdict.outcome, Outcome::Inconclusive, "{verdict:?}");
        assert!(verdict.reason.contains("straddles") && verdict.reason.contains("underpowered"), "{verdict:?}");
        assert!(verdict.reason.contains("detect 3.38 points"), "{verdict:?}");

        // One-sided p 0.035 (scipy.stats.ttest_ind, Welch, "greater"), but the 95% CI
        // (-0.11, +1.71) straddles zero: inconclusive, as the printed interval says; with sd 0.4
        // an effect of 0.8 needs 6 seeds per side ((t_0.975,10 + t_0.8,10) * 0.4 * sqrt(2/6) =
        // 0.718, at 5 seeds 0.808).
        let borderline = [method("kd", &[88.5, 88.9, 89.3]), method("baseline", &[87.7, 88.1, 88.5])];
        let verdict = kd_claim(&borderline);
        assert_eq!(verdict.outcome, Outcome::Inconclusive, "{verdict:?}");
        assert!(verdict.reason.contains("[-0.11, +1.71] straddles"), "{verdict:?}");
        assert!(verdict.reason.contains("about 6 seeds per side"), "{verdict:?}");

        // Slightly worse but not significantly: the interval straddles zero, inconclusive (the
        // old rule called any negative mean "not reproduced").
        let slightly_worse = [method("kd", &[88.0, 88.3, 87.9]), method("baseline", &[88.1, 88.2, 88.15])];
        assert_eq!(kd_claim(&slightly_worse).outcome, Outcome::Inconclusive);

        let one_seed = [method("kd", &[89.0]), method("baseline", &[88.0, 88.1])];
        let verdict = kd_claim(&one_seed);
        assert_eq!(verdict.outcome, Outcome::Inconclusive);
        assert!(verdict.reason.contains("too few seeds: 1 against 2"), "{verdict:?}");
        assert_eq!(verdict.difference.unwrap().interval, None);
        assert_eq!(kd_claim(&[method("kd", &[89.0])]).outcome, Outcome::NotRun);
    }

    #[test]
    fn prune_claim_uses_the_sparsest_teacher() {
        let methods =
            [method("kd-pruned0.640", &[1.0]), method("kd-pruned0.210", &[1.0]), method("kd-pruned0.410", &[1.0])];
        let claim = &claims(&methods)[2];
        assert_eq!(claim.treatment, "kd-pruned0.210");
        assert_eq!((claim.control.as_str(), claim.secondary.as_slice()), ("kd-retrained", &["kd".to_string()][..]));
    }

    /// MEAL V2 rests on the equal-budget control and keeps KD from scratch as a secondary row.
    #[test]
    fn meal_v2_is_judged_against_kd_continued_from_the_baseline() {
        let methods = [
            method("meal-v2", &[88.9, 89.3, 89.0]),
            method("kd-continued", &[88.1, 88.0, 88.4]),
            method("kd", &[87.0, 87.1, 86.9]),
        ];
        let claim = &claims(&methods)[3];
        assert_eq!(claim.control, "kd-continued");
        assert_eq!(claim.secondary, ["baseline-continued", "kd"]);
        assert_eq!(judge(claim, &methods).outcome, Outcome::Reproduced);
        assert_eq!(judge_against(claim, "kd", &methods).control, "kd");
    }

    /// FKD's claim is non-inferiority: 0.3 points below KD passes the -0.5 margin when the
    /// spread is small (sd 0.01: t = 0.2 / sqrt(2 * 0.0001 / 3) = 24.5), but the claim also
    /// needs the training times.
    #[test]
    fn fkd_is_judged_against_a_margin_and_its_speed() {
        let methods = [method("fkd", &[88.69, 88.70, 88.71]), method("fkd-online", &[88.99, 89.00, 89.01])];
        let claim = &claims(&methods)[1];
        let verdict = judge(claim, &methods);
        assert!(verdict.reason.contains("training time not recorded"), "{verdict:?}");
        assert_eq!(verdict.outcome, Outcome::Inconclusive, "accurate enough, speed unknown: {verdict:?}");
        let methods = [
            timed("fkd", &[88.69, 88.70, 88.71], Some(100.0)),
            timed("fkd-online", &[88.99, 89.00, 89.01], Some(400.0)),
        ];
        let verdict = judge(claim, &methods);
        assert_eq!(verdict.outcome, Outcome::Reproduced, "{verdict:?}");
        assert!(verdict.reason.contains("100 s vs 400 s (0.25x)"), "{verdict:?}");
        let methods = [
            timed("fkd", &[88.69, 88.70, 88.71], Some(500.0)),
            timed("fkd-online", &[88.99, 89.00, 89.01], Some(400.0)),
        ];
        assert_eq!(judge(claim, &methods).outcome, Outcome::Contradicted, "slower");
        // 0.8 points below with sd 0.01: the CI (about -0.82, -0.78) lies below -0.5.
        let methods = [method("fkd", &[88.19, 88.20, 88.21]), method("fkd-online", &[88.99, 89.00, 89.01])];
        assert_eq!(judge(claim, &methods).outcome, Outcome::Contradicted, "0.8 points below");
    }

    #[test]
    fn budgets_are_stated_with_the_ratio_of_images() {
        let verdict = Verdict {
            control: "kd".into(),
            outcome: Outcome::Reproduced,
            reason: String::new(),
            evidence: String::new(),
            difference: None,
            budgets: Some((
                Budget {
                    epochs: Some(10.0),
                    inherited_epochs: 5.0,
                    images: Some(600.0),
                    seconds: Some(20.0),
                    unreadable_init: None,
                },
                Budget { epochs: Some(5.0), images: Some(300.0), seconds: Some(10.0), ..Budget::default() },
            )),
        };
        let words = budget_words(&verdict, "meal-v2").unwrap();
        assert!(words.contains("(unequal budgets: meal-v2 had 10 epochs against 5 and 2.00x the images)"), "{words}");
        assert!(words.contains("10 epochs (5 of them before its initial checkpoint)"), "{words}");
    }
}

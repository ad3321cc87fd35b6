//! Summary statistics over seeds and the comparison behind the report's verdicts: Welch's
//! unequal-variance t-test with its confidence interval (Welch, Biometrika 1947), Hedges' g
//! (Hedges, J. Educational Statistics 1981, eq. 6f) and the minimum detectable difference
//! (Bloom, Evaluation Review 1995, eq. 1).

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Mean and sample standard deviation (n - 1; `None` for fewer than two values).
pub fn mean_sd(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, None);
    }
    (mean, Some((values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()))
}

/// `mean` with `± sd` when there are several values, at `decimals`.
pub fn format_mean_sd(values: &[f64], decimals: usize) -> String {
    let (mean, sd) = mean_sd(values);
    // A mean that rounds to zero prints as "0", not "-0".
    let mean = if mean.abs() < 0.5 * 10f64.powi(-(decimals as i32)) { 0.0 } else { mean };
    match (mean, sd) {
        (mean, Some(sd)) => format!("{mean:.decimals$} ± {sd:.decimals$}"),
        (mean, None) => format!("{mean:.decimals$}"),
    }
}

/// Welch's test of `mean(a) - mean(b) > margin`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Welch {
    /// `mean(a) - mean(b)`.
    pub difference: f64,
    /// `t = (difference - margin) / sqrt(s_a^2 / n_a + s_b^2 / n_b)`.
    pub t: f64,
    /// Welch-Satterthwaite degrees of freedom
    /// `(v_a + v_b)^2 / (v_a^2 / (n_a - 1) + v_b^2 / (n_b - 1))` with `v = s^2 / n`.
    pub df: f64,
    /// One-sided p-value of `difference > margin`: `P(T_df >= t)`.
    pub p_greater: f64,
    /// One-sided p-value of `difference < margin`: `P(T_df <= t)`.
    pub p_less: f64,
    /// Standard error of the difference, `sqrt(s_a^2 / n_a + s_b^2 / n_b)`.
    pub standard_error: f64,
}

impl Welch {
    /// The two-sided confidence interval of `mean(a) - mean(b)` at `level` (e.g. 0.95):
    /// `difference ± t_{(1 + level) / 2, df} * standard_error`.
    pub fn interval(&self, level: f64) -> (f64, f64) {
        let half = t_quantile((1.0 + level) / 2.0, self.df) * self.standard_error;
        (self.difference - half, self.difference + half)
    }

    /// The smallest true difference beyond the margin that a one-sided test at `alpha` finds
    /// with probability `power` for these sample sizes and spreads:
    /// `(t_{1 - alpha, df} + t_{power, df}) * standard_error` (Bloom 1995, eq. 1, with Student's
    /// t for the normal quantiles as the seeds are few).
    pub fn minimum_detectable(&self, alpha: f64, power: f64) -> f64 {
        (t_quantile(1.0 - alpha, self.df) + t_quantile(power, self.df)) * self.standard_error
    }
}

/// The `p`-quantile of Student's t with `df` degrees of freedom (0 for a degenerate `df`).
fn t_quantile(p: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df).map_or(0.0, |t| t.inverse_cdf(p))
}

/// The pooled standard deviation `sqrt(((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2))`;
/// `None` with fewer than two values on a side.
pub fn pooled_sd(a: &[f64], b: &[f64]) -> Option<f64> {
    let ((_, Some(sd_a)), (_, Some(sd_b))) = (mean_sd(a), mean_sd(b)) else { return None };
    let (na, nb) = (a.len() as f64, b.len() as f64);
    Some((((na - 1.0) * sd_a * sd_a + (nb - 1.0) * sd_b * sd_b) / (na + nb - 2.0)).sqrt())
}

/// Hedges' g, the standardised mean difference with the small-sample correction:
/// `g = J * (mean(a) - mean(b)) / s_pooled`, `J = 1 - 3 / (4 (n_a + n_b) - 9)` (Hedges 1981,
/// eq. 6f). `None` with fewer than two values on a side or without any spread.
pub fn hedges_g(a: &[f64], b: &[f64]) -> Option<f64> {
    let pooled = pooled_sd(a, b).filter(|sd| *sd > 0.0)?;
    let n = (a.len() + b.len()) as f64;
    Some((1.0 - 3.0 / (4.0 * n - 9.0)) * (mean_sd(a).0 - mean_sd(b).0) / pooled)
}

/// The fewest seeds per side (equal sizes, 2 to 1000) at which a one-sided test at `alpha`
/// detects a true difference `effect` with probability `power`, for seed-to-seed standard
/// deviation `sd`: the smallest n with `(t_{1 - alpha, 2n - 2} + t_{power, 2n - 2}) * sd *
/// sqrt(2 / n) <= effect` (Bloom 1995, eq. 1 solved for n). `None` beyond 1000.
pub fn seeds_to_detect(effect: f64, sd: f64, alpha: f64, power: f64) -> Option<usize> {
    (2..=1000).find(|&n| {
        let df = (2 * n - 2) as f64;
        (t_quantile(1.0 - alpha, df) + t_quantile(power, df)) * sd * (2.0 / n as f64).sqrt() <= effect
    })
}

/// Welch's t-test of `a` against `b` shifted by `margin`; `None` with fewer than two values in
/// either sample. Two samples without any spread give an infinite `t` (p 0 or 1) unless the
/// difference equals the margin exactly.
pub fn welch(a: &[f64], b: &[f64], margin: f64) -> Option<Welch> {
    let ((mean_a, Some(sd_a)), (mean_b, Some(sd_b))) = (mean_sd(a), mean_sd(b)) else { return None };
    let (va, vb) = (sd_a * sd_a / a.len() as f64, sd_b * sd_b / b.len() as f64);
    let difference = mean_a - mean_b;
    let shifted = difference - margin;
    if va + vb == 0.0 {
        let (p_greater, p_less) = match shifted.partial_cmp(&0.0)? {
            std::cmp::Ordering::Greater => (0.0, 1.0),
            std::cmp::Ordering::Less => (1.0, 0.0),
            std::cmp::Ordering::Equal => (0.5, 0.5),
        };
        let t = if shifted == 0.0 { 0.0 } else { shifted.signum() * f64::INFINITY };
        let df = (a.len() + b.len() - 2) as f64;
        return Some(Welch { difference, t, df, p_greater, p_less, standard_error: 0.0 });
    }
    let t = shifted / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va * va / (a.len() - 1) as f64 + vb * vb / (b.len() - 1) as f64);
    let cdf = StudentsT::new(0.0, 1.0, df).ok()?.cdf(t);
    Some(Welch { difference, t, df, p_greater: 1.0 - cdf, p_less: cdf, standard_error: (va + vb).sqrt() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [1, 2, 3]: mean 2, sample variance (1 + 0 + 1) / 2 = 1.
    #[test]
    fn mean_and_sample_sd() {
        assert_eq!(mean_sd(&[1.0, 2.0, 3.0]), (2.0, Some(1.0)));
        assert_eq!(format_mean_sd(&[1.0, 2.0, 3.0], 2), "2.00 ± 1.00");
        assert_eq!(format_mean_sd(&[88.42], 2), "88.42");
        assert_eq!(format_mean_sd(&[-0.001], 0), "0");
    }

    /// a = [1, 3], b = [0, 2]: means 2 and 1, variances 2 and 2, so v = 1 each, t = 1 / sqrt 2,
    /// df = 4 / (1 + 1) = 2. Student's t with 2 degrees of freedom has the closed-form CDF
    /// F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so P(T >= 0.70711) = 0.5 - 0.70711 / (2 sqrt 2.5)
    /// = 0.27639.
    #[test]
    fn welch_matches_the_closed_form_at_two_degrees_of_freedom() {
        let w = welch(&[1.0, 3.0], &[0.0, 2.0], 0.0).unwrap();
        assert!((w.t - 0.5f64.sqrt()).abs() < 1e-12 && (w.df - 2.0).abs() < 1e-12, "{w:?}");
        assert!((w.p_greater - 0.276393).abs() < 1e-5, "{w:?}");
        assert!((w.p_greater + w.p_less - 1.0).abs() < 1e-12);
        // A margin of 1 makes the shifted difference 0: t 0, p 1/2.
        let w = welch(&[1.0, 3.0], &[0.0, 2.0], 1.0).unwrap();
        assert!(w.t.abs() < 1e-12 && (w.p_greater - 0.5).abs() < 1e-12, "{w:?}");
    }

    /// Unequal sizes and variances: a = [10, 12, 14] (var 4, v 4/3), b = [9, 10] (var 0.5,
    /// v 0.25); difference 2.5, t = 2.5 / sqrt(19/12) = 1.98680, df = (19/12)^2 / ((4/3)^2 / 2 +
    /// 0.25^2 / 1) = 2.50694 / 0.95139 = 2.63503 (computed by hand from the formulas).
    #[test]
    fn welch_satterthwaite_degrees_of_freedom() {
        let w = welch(&[10.0, 12.0, 14.0], &[9.0, 10.0], 0.0).unwrap();
        assert!((w.t - 1.986799).abs() < 1e-5 && (w.df - 2.635036).abs() < 1e-5, "{w:?}");
        assert!(w.p_greater > 0.05 && w.p_greater < 0.1, "{w:?}");
    }

    /// Reference values from SciPy 1.10 (an independent implementation), computed by
    /// ```python
    /// r = scipy.stats.ttest_ind(a - margin, b, equal_var=False, alternative="greater")
    /// se = sqrt(var(a, ddof=1) / na + var(b, ddof=1) / nb); q = scipy.stats.t.ppf(0.975, df)
    /// ci = (d - q * se, d + q * se)
    /// mde = (scipy.stats.t.ppf(0.975, df) + scipy.stats.t.ppf(0.8, df)) * se  # one-sided 0.025
    /// g = (1 - 3 / (4 * (na + nb) - 9)) * d / s_pooled
    /// ```
    /// a = [88.9, 89.3, 89.0], b = [88.1, 88.0, 88.4]: t 5.295136, df 4.000000, p 0.003054,
    /// ci (0.428095, 1.371905), g 3.458768, mde 0.631838.
    /// a = [87.0, 89.2, 88.4], b = [88.0, 88.2, 87.9]: t 0.256833, df 2.075242, p 0.410270,
    /// ci (-2.530654, 2.863987), g 0.167762, mde 3.379498.
    /// a = [88.2, 88.5, 88.1, 88.6], b = [88.3, 88.0, 88.4], margin -0.5: t 3.645718,
    /// df 4.780982, p 0.008012, ci (-0.324203, 0.557536), g 0.433624, mde 0.597062.
    #[test]
    fn welch_interval_effect_size_and_power_match_scipy() {
        /// Treatment, control, margin; then t, df, p, CI low, CI high, g, minimum detectable.
        type Case<'a> = (&'a [f64], &'a [f64], f64, [f64; 7]);
        let cases: [Case; 3] = [
            (
                &[88.9, 89.3, 89.0],
                &[88.1, 88.0, 88.4],
                0.0,
                [5.295136, 4.0, 0.003054, 0.428095, 1.371905, 3.458768, 0.631838],
            ),
            (
                &[87.0, 89.2, 88.4],
                &[88.0, 88.2, 87.9],
                0.0,
                [0.256833, 2.075242, 0.410270, -2.530654, 2.863987, 0.167762, 3.379498],
            ),
            (
                &[88.2, 88.5, 88.1, 88.6],
                &[88.3, 88.0, 88.4],
                -0.5,
                [3.645718, 4.780982, 0.008012, -0.324203, 0.557536, 0.433624, 0.597062],
            ),
        ];
        for (a, b, margin, expected) in cases {
            let w = welch(a, b, margin).unwrap();
            let (low, high) = w.interval(0.95);
            let g = hedges_g(a, b).unwrap();
            let got = [w.t, w.df, w.p_greater, low, high, g, w.minimum_detectable(0.025, 0.8)];
            for (name, (got, expected)) in
                ["t", "df", "p", "ci low", "ci high", "g", "mde"].iter().zip(got.iter().zip(expected))
            {
                assert!((got - expected).abs() < 2e-6, "{a:?} vs {b:?}: {name} {got} != {expected}");
            }
        }
    }

    #[test]
    fn degenerate_samples() {
        assert!(welch(&[1.0], &[0.0, 2.0], 0.0).is_none(), "one seed: no test");
        let w = welch(&[2.0, 2.0], &[1.0, 1.0], 0.0).unwrap();
        assert_eq!((w.p_greater, w.p_less), (0.0, 1.0));
        let w = welch(&[2.0, 2.0], &[1.0, 1.0], 1.0).unwrap();
        assert_eq!((w.p_greater, w.p_less, w.t), (0.5, 0.5, 0.0));
        assert_eq!((w.interval(0.95), w.minimum_detectable(0.025, 0.8)), ((1.0, 1.0), 0.0));
        assert_eq!(hedges_g(&[2.0, 2.0], &[1.0, 1.0]), None, "no spread: no standardised effect");
        assert_eq!(hedges_g(&[2.0], &[1.0, 1.5]), None);
    }

    /// With sd 0.25 (the seed-to-seed spread of a CIFAR student), one-sided alpha 0.025 and
    /// power 0.8: scipy.stats.t.ppf gives (t_0.975 + t_0.8) at df 4 = 2.776445 + 0.940965, so
    /// n = 3 detects 3.717410 * 0.25 * sqrt(2/3) = 0.7588 points; at df 6 (n = 4) 2.446912 +
    /// 0.905703, detecting 3.352615 * 0.25 * sqrt(1/2) = 0.5927; at df 8 (n = 5) 0.5052. An effect
    /// of 0.76 needs 3 seeds per side, 0.6 needs 4, 0.55 needs 5; 0.01 more than 1000.
    #[test]
    fn seeds_needed_for_an_effect() {
        assert_eq!(seeds_to_detect(0.76, 0.25, 0.025, 0.8), Some(3));
        assert_eq!(seeds_to_detect(0.6, 0.25, 0.025, 0.8), Some(4));
        assert_eq!(seeds_to_detect(0.55, 0.25, 0.025, 0.8), Some(5));
        assert_eq!(seeds_to_detect(0.01, 0.25, 0.025, 0.8), None);
    }
}

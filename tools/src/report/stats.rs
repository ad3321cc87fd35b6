//! Summary statistics over seeds and Welch's unequal-variance t-test (Welch, Biometrika 1947),
//! the test behind the report's verdicts.

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
        return Some(Welch { difference, t, df: (a.len() + b.len() - 2) as f64, p_greater, p_less });
    }
    let t = shifted / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va * va / (a.len() - 1) as f64 + vb * vb / (b.len() - 1) as f64);
    let cdf = StudentsT::new(0.0, 1.0, df).ok()?.cdf(t);
    Some(Welch { difference, t, df, p_greater: 1.0 - cdf, p_less: cdf })
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

    #[test]
    fn degenerate_samples() {
        assert!(welch(&[1.0], &[0.0, 2.0], 0.0).is_none(), "one seed: no test");
        let w = welch(&[2.0, 2.0], &[1.0, 1.0], 0.0).unwrap();
        assert_eq!((w.p_greater, w.p_less), (0.0, 1.0));
        let w = welch(&[2.0, 2.0], &[1.0, 1.0], 1.0).unwrap();
        assert_eq!((w.p_greater, w.p_less, w.t), (0.5, 0.5, 0.0));
    }
}

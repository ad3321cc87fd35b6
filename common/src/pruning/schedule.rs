//! How many rounds reach a target sparsity: after `n` rounds that each remove `f` of the
//! remaining weights, `1 - (1 - f)^n` of them are gone, so `n = argmin_n |r - (1 - (1 - f)^n)|`
//! (prune-then-distill: f = 0.2; 0.36 -> 2 rounds, 0.59 -> 4, 0.8 -> 7).

use crate::error::{Error, Result};

/// Rounds of pruning `fraction` of the remaining weights that come closest to `target`
/// sparsity (the smaller count on a tie).
pub fn rounds_for_target(target: f64, fraction: f64) -> Result<usize> {
    if !(0.0..1.0).contains(&target) {
        return Err(Error::InvalidConfig(format!("target sparsity must be in [0, 1), got {target}")));
    }
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::InvalidConfig(format!("the fraction pruned per round must be in (0, 1), got {fraction}")));
    }
    let mut best = (0usize, target);
    let mut kept = 1.0f64;
    for n in 1..=10_000 {
        kept *= 1.0 - fraction;
        let error = (target - (1.0 - kept)).abs();
        if error < best.1 {
            best = (n, error);
        }
        if 1.0 - kept > target {
            break;
        }
    }
    Ok(best.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// prune-then-distill's sparsity names: st36 = 2 rounds (1 - 0.8^2 = 0.36), st59 = 4
    /// (0.5904), st79 = 7 (0.7903); 0.5 lies between 3 rounds (0.488) and 4 (0.590): 3.
    #[test]
    fn rounds_of_the_paper() {
        assert_eq!(rounds_for_target(0.36, 0.2).unwrap(), 2);
        assert_eq!(rounds_for_target(0.59, 0.2).unwrap(), 4);
        assert_eq!(rounds_for_target(0.8, 0.2).unwrap(), 7);
        assert_eq!(rounds_for_target(0.5, 0.2).unwrap(), 3);
        assert_eq!(rounds_for_target(0.0, 0.2).unwrap(), 0);
        assert!(rounds_for_target(1.0, 0.2).is_err());
        assert!(rounds_for_target(-0.1, 0.2).is_err());
        assert!(rounds_for_target(0.5, 0.0).is_err());
    }
}

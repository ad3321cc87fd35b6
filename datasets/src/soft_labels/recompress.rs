//! Re-compressing stored region labels without the teacher. Every compression type of FKD
//! (Shen & Xing, ECCV 2022, §3.2) stores a prefix of the same record: the classes ranked by the
//! teacher's probability and, except `hard`, their raw probabilities `p_j` (`marginal-renorm`
//! stores `p_j` too and renormalises only when decoding). A file therefore yields exactly any
//! type that needs no more than it stores:
//!
//! | stored (from) | can give (to) |
//! |---|---|
//! | `full` | every type, any K |
//! | `marginal-smoothing` / `marginal-renorm`, K | `hard`, `smoothing`, both top-K types with K' <= K |
//! | `smoothing` | `hard`, `smoothing`, top-K types with K' = 1 |
//! | `hard` | `hard` |
//!
//! The probabilities are re-encoded from their stored values (u8 `r / 255` or f16), so a u8 to
//! u8 conversion keeps every stored byte.

use super::compress::{Compression, Encoded, LabelType, top_k};
use crate::error::{DataError, Result};

/// Ranked classes the compression stores, and whether it stores their probabilities.
fn stored(compression: &Compression, classes: usize) -> (usize, bool) {
    match compression.label_type {
        LabelType::Full => (classes, true),
        LabelType::Hard => (1, false),
        other => (other.stored_indices(compression.k), true),
    }
}

/// Checks that `to` can be computed exactly from labels stored as `from`; the error says what
/// is missing (the teacher must label the crops again).
pub fn check_derivable(from: &Compression, to: &Compression, classes: usize) -> Result<()> {
    to.validate(classes)?;
    let (have, have_probs) = stored(from, classes);
    let (need, need_probs) = stored(to, classes);
    let missing = if to.label_type == LabelType::Full && from.label_type != LabelType::Full {
        Some("all class probabilities".to_string())
    } else if need_probs && !have_probs {
        Some("probabilities".to_string())
    } else if need > have {
        Some(format!("the top {need} classes (it keeps {have})"))
    } else {
        None
    };
    match missing {
        None => Ok(()),
        Some(what) => Err(DataError::Invalid(format!(
            "{} labels cannot be made from {} labels: they need {what}, which the file does not store; pack them \
             from the teacher instead",
            describe(to),
            describe(from)
        ))),
    }
}

fn describe(c: &Compression) -> String {
    match c.label_type {
        LabelType::MarginalSmoothing | LabelType::MarginalRenorm => format!("{} top-{}", c.label_type, c.k),
        other => other.to_string(),
    }
}

/// One crop's stored record (`indices`, `probs` as written with `from`) re-encoded as `to`.
/// `check_derivable(from, to)` must hold.
pub fn recompress(from: &Compression, to: &Compression, indices: &[u32], probs: &[u16], classes: usize) -> Encoded {
    let values: Vec<f32> = probs.iter().map(|&raw| from.encoding.decode(raw)).collect();
    // The stored classes, most probable first, each with its stored probability (0 for `hard`,
    // which stores none and yields only `hard`).
    let ranked: Vec<(u32, f32)> = match from.label_type {
        LabelType::Full => top_k(&values, classes).into_iter().map(|class| (class, values[class as usize])).collect(),
        _ => indices.iter().enumerate().map(|(at, &class)| (class, values.get(at).copied().unwrap_or(0.0))).collect(),
    };
    match to.label_type {
        LabelType::Hard => Encoded { indices: vec![ranked[0].0], probs: Vec::new() },
        LabelType::Full => {
            let mut probs = vec![0; classes];
            for &(class, value) in &ranked {
                probs[class as usize] = to.encoding.encode(value);
            }
            Encoded { indices: Vec::new(), probs }
        }
        other => {
            let kept = &ranked[..other.stored_indices(to.k)];
            Encoded {
                indices: kept.iter().map(|&(class, _)| class).collect(),
                probs: kept.iter().map(|&(_, value)| to.encoding.encode(value)).collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soft_labels::compress::ProbEncoding;

    fn c(label_type: LabelType, k: usize, encoding: ProbEncoding) -> Compression {
        Compression { label_type, k, encoding }
    }

    const P: [f32; 5] = [0.1, 0.5, 0.05, 0.25, 0.1];

    /// Converting equals encoding the teacher's distribution directly with the target type
    /// (the expected side is `Compression::encode` of the original P, computed independently of
    /// this module), for every pair the table allows. All u8: a stored byte r decodes to r / 255
    /// and re-encodes to r (f16 sources round first; see the next test).
    #[test]
    fn conversions_equal_direct_encoding() {
        let u8 = ProbEncoding::U8;
        let sources = [
            c(LabelType::Full, 0, u8),
            c(LabelType::MarginalSmoothing, 4, u8),
            c(LabelType::MarginalRenorm, 3, u8),
            c(LabelType::Smoothing, 1, u8),
        ];
        let targets = [
            c(LabelType::Hard, 1, u8),
            c(LabelType::Smoothing, 1, u8),
            c(LabelType::MarginalSmoothing, 3, u8),
            c(LabelType::MarginalRenorm, 2, u8),
        ];
        let mut checked = 0;
        for from in &sources {
            let stored = from.encode(&P);
            for to in &targets {
                if check_derivable(from, to, 5).is_err() {
                    continue;
                }
                let converted = recompress(from, to, &stored.indices, &stored.probs, 5);
                let direct = to.encode(&P);
                assert_eq!(converted, direct, "{from:?} -> {to:?}");
                checked += 1;
            }
        }
        // Full, MS-4 and MR-3 give all four targets; smoothing gives hard and smoothing.
        assert_eq!(checked, 4 + 4 + 4 + 2);
    }

    /// f16 full labels to f16 full and to u8 full: the stored values re-encoded.
    #[test]
    fn full_to_full_reencodes_the_values() {
        let f16 = c(LabelType::Full, 0, ProbEncoding::F16);
        let stored = f16.encode(&P);
        assert_eq!(recompress(&f16, &f16, &[], &stored.probs, 5), stored);
        let u8_full = c(LabelType::Full, 0, ProbEncoding::U8);
        // round(255 * [0.1, 0.5, 0.05, 0.25, 0.1]) = [26, 128, 13, 64, 26] (f16 0.09998 * 255 = 25.49 -> 25).
        let converted = recompress(&f16, &u8_full, &[], &stored.probs, 5);
        assert_eq!(converted.probs, vec![25, 128, 13, 64, 25]);
    }

    #[test]
    fn missing_information_is_refused() {
        let u8 = ProbEncoding::U8;
        let refused = [
            (c(LabelType::MarginalSmoothing, 2, u8), c(LabelType::Full, 0, u8), "all class probabilities"),
            (c(LabelType::MarginalSmoothing, 2, u8), c(LabelType::MarginalRenorm, 3, u8), "top 3 classes (it keeps 2)"),
            (c(LabelType::Hard, 1, u8), c(LabelType::Smoothing, 1, u8), "probabilities"),
            (c(LabelType::Smoothing, 1, u8), c(LabelType::MarginalSmoothing, 2, u8), "top 2 classes"),
        ];
        for (from, to, why) in refused {
            let message = check_derivable(&from, &to, 5).unwrap_err().to_string();
            assert!(message.contains(why) && message.contains("pack them from the teacher"), "{message}");
        }
        // An invalid target K is refused as such.
        let bad_k = c(LabelType::MarginalSmoothing, 5, u8);
        assert!(check_derivable(&c(LabelType::Full, 0, u8), &bad_k, 5).unwrap_err().to_string().contains("top-K"));
    }
}

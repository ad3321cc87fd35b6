//! FKD's soft-label compression (Shen & Xing, "A Fast Knowledge Distillation Framework for
//! Visual Recognition", ECCV 2022, §3.2; `label_quantization` / `Recover_soft_label`), encoding
//! and decoding side by side. With `p` the teacher distribution over `C` classes and `S_K` its
//! top-K classes:
//!
//! | type | stored | decoded `q` |
//! |---|---|---|
//! | `hard` | argmax | one-hot |
//! | `smoothing` | top-1 index and probability | `q_i* = p_i*`, others `(1 - p_i*) / (C - 1)` |
//! | `marginal-smoothing` | top-K indices and probabilities | `q_j = p_j` on `S_K`, others `(1 - sum_{S_K} p) / (C - K)` |
//! | `marginal-renorm` | top-K indices and probabilities | `q_j = p_j / sum_{S_K} p` on `S_K`, others 0 |
//! | `full` | all C probabilities | `p` |
//!
//! Probabilities are stored as f16 or as u8 (`round(255 p)`, absolute error at most 1/510).
//! Decoding always returns a distribution that sums to 1: quantisation error is absorbed by the
//! residual mass, or by renormalisation when the stored values already exceed 1.

use crate::error::{DataError, Result};
use std::fmt;
use std::str::FromStr;

/// How a crop's distribution is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum LabelType {
    /// Arg-max only.
    Hard,
    /// Top-1 kept, the rest spread uniformly.
    Smoothing,
    /// Top-K kept, the residual spread uniformly over the other classes.
    MarginalSmoothing,
    /// Top-K renormalised to 1, the rest 0.
    MarginalRenorm,
    /// All probabilities.
    Full,
}

impl LabelType {
    /// Name as written in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hard => "hard",
            Self::Smoothing => "smoothing",
            Self::MarginalSmoothing => "marginal-smoothing",
            Self::MarginalRenorm => "marginal-renorm",
            Self::Full => "full",
        }
    }

    /// Class indices stored per crop (0 for `full`, whose indices are implicit).
    pub fn stored_indices(self, k: usize) -> usize {
        match self {
            Self::Hard | Self::Smoothing => 1,
            Self::MarginalSmoothing | Self::MarginalRenorm => k,
            Self::Full => 0,
        }
    }

    /// Probabilities stored per crop.
    pub fn stored_probs(self, k: usize, classes: usize) -> usize {
        match self {
            Self::Hard => 0,
            Self::Smoothing => 1,
            Self::MarginalSmoothing | Self::MarginalRenorm => k,
            Self::Full => classes,
        }
    }
}

impl FromStr for LabelType {
    type Err = DataError;
    fn from_str(text: &str) -> Result<Self> {
        [Self::Hard, Self::Smoothing, Self::MarginalSmoothing, Self::MarginalRenorm, Self::Full]
            .into_iter()
            .find(|t| t.name() == text)
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "unknown label type `{text}`; known: hard, smoothing, marginal-smoothing, marginal-renorm, full"
                ))
            })
    }
}

impl fmt::Display for LabelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How stored probabilities are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum ProbEncoding {
    /// IEEE half precision.
    F16,
    /// `round(255 * p)` as one byte.
    U8,
}

impl ProbEncoding {
    /// Name as written in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::U8 => "u8",
        }
    }

    /// Bytes per stored probability.
    pub fn bytes(self) -> usize {
        match self {
            Self::F16 => 2,
            Self::U8 => 1,
        }
    }

    /// Encodes a probability in [0, 1] as the stored integer (u8 value, or f16 bits).
    pub fn encode(self, p: f32) -> u16 {
        let p = p.clamp(0.0, 1.0);
        match self {
            Self::U8 => (p * 255.0).round() as u16,
            Self::F16 => half::f16::from_f32(p).to_bits(),
        }
    }

    /// Decodes a stored integer.
    pub fn decode(self, raw: u16) -> f32 {
        match self {
            Self::U8 => raw as f32 / 255.0,
            Self::F16 => half::f16::from_bits(raw).to_f32(),
        }
    }
}

impl FromStr for ProbEncoding {
    type Err = DataError;
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "f16" => Ok(Self::F16),
            "u8" => Ok(Self::U8),
            _ => Err(DataError::Invalid(format!("unknown probability encoding `{text}`; known: f16, u8"))),
        }
    }
}

/// A compression type with its K.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Compression {
    /// Type.
    pub label_type: LabelType,
    /// K of the top-K types (ignored by the others).
    pub k: usize,
    /// Probability encoding.
    pub encoding: ProbEncoding,
}

/// One compressed crop: class indices and encoded probabilities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Stored class indices, most probable first.
    pub indices: Vec<u32>,
    /// Stored probabilities (encoded), in the order of `indices` (class order for `full`).
    pub probs: Vec<u16>,
}

/// Classes sorted by decreasing probability (lower index first on ties), the first `k`.
pub fn top_k(p: &[f32], k: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..p.len() as u32).collect();
    let k = k.min(p.len());
    order.select_nth_unstable_by(k.saturating_sub(1).min(p.len() - 1), |&a, &b| {
        p[b as usize].total_cmp(&p[a as usize]).then(a.cmp(&b))
    });
    let mut head = order[..k].to_vec();
    head.sort_by(|&a, &b| p[b as usize].total_cmp(&p[a as usize]).then(a.cmp(&b)));
    head
}

impl Compression {
    /// Checks K against the class count.
    pub fn validate(&self, classes: usize) -> Result<()> {
        if classes < 2 {
            return Err(DataError::Invalid(format!("labels need at least 2 classes, got {classes}")));
        }
        let needs_k = matches!(self.label_type, LabelType::MarginalSmoothing | LabelType::MarginalRenorm);
        if needs_k && (self.k == 0 || self.k >= classes) {
            return Err(DataError::Invalid(format!(
                "top-K must be between 1 and {} for {} classes, got {}",
                classes - 1,
                classes,
                self.k
            )));
        }
        Ok(())
    }

    /// Compresses one distribution.
    pub fn encode(&self, p: &[f32]) -> Encoded {
        let n = self.label_type.stored_indices(self.k);
        match self.label_type {
            LabelType::Full => {
                Encoded { indices: Vec::new(), probs: p.iter().map(|&v| self.encoding.encode(v)).collect() }
            }
            LabelType::Hard => Encoded { indices: top_k(p, 1), probs: Vec::new() },
            _ => {
                let indices = top_k(p, n);
                let probs = indices.iter().map(|&i| self.encoding.encode(p[i as usize])).collect();
                Encoded { indices, probs }
            }
        }
    }

    /// Rebuilds the `classes`-dimensional distribution of a crop into `out` (which it clears).
    pub fn decode_into(&self, indices: &[u32], probs: &[u16], classes: usize, out: &mut Vec<f32>) {
        out.clear();
        let decoded: Vec<f32> = probs.iter().map(|&r| self.encoding.decode(r)).collect();
        match self.label_type {
            LabelType::Full => {
                out.extend_from_slice(&decoded);
                normalise(out);
            }
            LabelType::Hard => {
                out.resize(classes, 0.0);
                out[indices[0] as usize] = 1.0;
            }
            LabelType::Smoothing | LabelType::MarginalSmoothing => {
                let kept: f32 = decoded.iter().sum();
                let others = classes - indices.len();
                if kept >= 1.0 || others == 0 {
                    out.resize(classes, 0.0);
                    for (&i, &p) in indices.iter().zip(&decoded) {
                        out[i as usize] = p;
                    }
                    normalise(out);
                } else {
                    out.resize(classes, (1.0 - kept) / others as f32);
                    for (&i, &p) in indices.iter().zip(&decoded) {
                        out[i as usize] = p;
                    }
                }
            }
            LabelType::MarginalRenorm => {
                out.resize(classes, 0.0);
                for (&i, &p) in indices.iter().zip(&decoded) {
                    out[i as usize] = p;
                }
                if decoded.iter().sum::<f32>() <= 0.0 {
                    out[indices[0] as usize] = 1.0;
                }
                normalise(out);
            }
        }
    }

    /// [`Self::decode_into`] returning a new vector.
    pub fn decode(&self, indices: &[u32], probs: &[u16], classes: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(classes);
        self.decode_into(indices, probs, classes, &mut out);
        out
    }
}

fn normalise(v: &mut [f32]) {
    let total: f64 = v.iter().map(|&x| x as f64).sum();
    if total > 0.0 {
        for x in v.iter_mut() {
            *x = (*x as f64 / total) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
        assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-6, "sums to {}", a.iter().sum::<f32>());
    }

    const P: [f32; 5] = [0.1, 0.5, 0.05, 0.25, 0.1];

    fn c(label_type: LabelType, k: usize) -> Compression {
        Compression { label_type, k, encoding: ProbEncoding::F16 }
    }

    /// Hand-computed decodings of p = [0.1, 0.5, 0.05, 0.25, 0.1] (C = 5). f16 keeps 0.5 and
    /// 0.25 exactly; 0.1 becomes 0.0999755859375.
    #[test]
    fn every_type_against_hand_computed_values() {
        let hard = c(LabelType::Hard, 1).encode(&P);
        assert_eq!(hard.indices, vec![1]);
        close(&c(LabelType::Hard, 1).decode(&hard.indices, &hard.probs, 5), &[0., 1., 0., 0., 0.]);

        // smoothing: 0.5 kept, (1 - 0.5) / 4 = 0.125 elsewhere.
        let s = c(LabelType::Smoothing, 1);
        let e = s.encode(&P);
        close(&s.decode(&e.indices, &e.probs, 5), &[0.125, 0.5, 0.125, 0.125, 0.125]);

        // marginal smoothing K = 2: {1: 0.5, 3: 0.25}, residual 0.25 over 3 classes.
        let m = c(LabelType::MarginalSmoothing, 2);
        let e = m.encode(&P);
        assert_eq!(e.indices, vec![1, 3]);
        let r = 0.25 / 3.0;
        close(&m.decode(&e.indices, &e.probs, 5), &[r, 0.5, r, 0.25, r]);

        // marginal renorm K = 2: 0.5 / 0.75 and 0.25 / 0.75.
        let n = c(LabelType::MarginalRenorm, 2);
        let e = n.encode(&P);
        close(&n.decode(&e.indices, &e.probs, 5), &[0., 2. / 3., 0., 1. / 3., 0.]);

        // marginal smoothing K = 3: ties between classes 0 and 4 go to the lower index.
        let e = c(LabelType::MarginalSmoothing, 3).encode(&P);
        assert_eq!(e.indices, vec![1, 3, 0]);
        let f16_01 = half::f16::from_f32(0.1).to_f32();
        let r = (1.0 - 0.5 - 0.25 - f16_01) / 2.0;
        close(&c(LabelType::MarginalSmoothing, 3).decode(&e.indices, &e.probs, 5), &[f16_01, 0.5, r, 0.25, r]);

        let f = c(LabelType::Full, 0);
        let e = f.encode(&P);
        assert!(e.indices.is_empty());
        let decoded = f.decode(&e.indices, &e.probs, 5);
        // f16 rounds 0.1 to 0.0999755859375 and 0.05 to 0.04998779296875 (numpy.float16); the
        // decoded distribution is the f16 values divided by their sum 0.99993896484375.
        let sum = 0.999_938_964_843_75f64;
        let f16_values: [f64; 5] = [0.099_975_585_937_5, 0.5, 0.049_987_792_968_75, 0.25, 0.099_975_585_937_5];
        let expected = f16_values.map(|v| (v / sum) as f32);
        close(&decoded, &expected);
    }

    /// u8: round(255 * 0.5) = 128 -> 0.50196; round(255 * 0.25) = 64 -> 0.25098; the residual
    /// 1 - 0.75294 = 0.24706 is spread over 3 classes, so the sum stays exactly 1.
    #[test]
    fn u8_quantisation_keeps_the_sum() {
        let m = Compression { label_type: LabelType::MarginalSmoothing, k: 2, encoding: ProbEncoding::U8 };
        let e = m.encode(&P);
        assert_eq!(e.probs, vec![128, 64]);
        let q = m.decode(&e.indices, &e.probs, 5);
        let r = (1.0 - 128.0 / 255.0 - 64.0 / 255.0) / 3.0;
        close(&q, &[r, 128.0 / 255.0, r, 64.0 / 255.0, r]);
        // Stored values above 1 after rounding are renormalised.
        let over = m.decode(&[0, 1], &[255, 10], 5);
        assert!((over.iter().sum::<f32>() - 1.0).abs() < 1e-6 && over[2] == 0.0);
    }

    #[test]
    fn k_is_checked() {
        assert!(c(LabelType::MarginalSmoothing, 5).validate(5).is_err());
        assert!(c(LabelType::MarginalRenorm, 0).validate(5).is_err());
        assert!(c(LabelType::MarginalRenorm, 4).validate(5).is_ok());
        assert_eq!("marginal-renorm".parse::<LabelType>().unwrap(), LabelType::MarginalRenorm);
    }
}

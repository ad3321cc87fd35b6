//! Classification metrics computed on the host from logits, in f64: top-1/top-5 accuracy,
//! negative log-likelihood, expected calibration error, per-class accuracy, confusion matrix,
//! and agreement / mean KL divergence to a reference model.

/// Number of equal-width confidence bins of the ECE (Guo et al., ICML 2017, §2, M = 15).
pub const ECE_BINS: usize = 15;

/// Log-softmax of one row, computed stably in f64.
pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let log_sum = row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
    row.iter().map(|&v| v as f64 - log_sum).collect()
}

/// Index of the largest value (the first one on ties).
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
}

/// Accumulates metrics over batches of logits.
#[derive(Clone, Debug)]
pub struct EvalAccumulator {
    classes: usize,
    count: u64,
    top1: u64,
    top5: u64,
    nll: f64,
    bin_count: [u64; ECE_BINS],
    bin_confidence: [f64; ECE_BINS],
    bin_correct: [u64; ECE_BINS],
    confusion: Vec<u64>,
    agree: u64,
    kl: f64,
    has_reference: bool,
}

/// The finished metrics.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    /// Images evaluated.
    pub images: u64,
    /// Top-1 accuracy in percent.
    pub top1: f64,
    /// Top-5 accuracy in percent (top-C when there are fewer than 5 classes).
    pub top5: f64,
    /// Mean negative log-likelihood of the true class (nats).
    pub nll: f64,
    /// Expected calibration error with 15 bins, in [0, 1].
    pub ece: f64,
    /// Accuracy of each class in percent (`null` for a class without images).
    pub per_class_top1: Vec<Option<f64>>,
    /// Confusion matrix, `confusion[true][predicted]`.
    #[serde(skip)]
    pub confusion: Vec<Vec<u64>>,
    /// Percent of images where the prediction equals the reference model's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
    /// Mean KL(reference || model) in nats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kl_to_reference: Option<f64>,
}

impl EvalAccumulator {
    /// An empty accumulator for `classes` classes.
    pub fn new(classes: usize) -> Self {
        Self {
            classes,
            count: 0,
            top1: 0,
            top5: 0,
            nll: 0.0,
            bin_count: [0; ECE_BINS],
            bin_confidence: [0.0; ECE_BINS],
            bin_correct: [0; ECE_BINS],
            confusion: vec![0; classes * classes],
            agree: 0,
            kl: 0.0,
            has_reference: false,
        }
    }

    /// Adds one image: its logits, its label and optionally a reference model's logits.
    pub fn add(&mut self, logits: &[f32], label: usize, reference: Option<&[f32]>) {
        debug_assert_eq!(logits.len(), self.classes);
        let log_p = log_softmax(logits);
        let predicted = argmax(logits);
        let correct = predicted == label;
        self.count += 1;
        self.top1 += correct as u64;
        // Rank of the true class: how many classes score strictly higher.
        let higher = logits.iter().filter(|&&v| v > logits[label]).count();
        self.top5 += (higher < 5) as u64;
        self.nll -= log_p[label];
        let confidence = log_p[predicted].exp();
        let bin = ((confidence * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        self.bin_count[bin] += 1;
        self.bin_confidence[bin] += confidence;
        self.bin_correct[bin] += correct as u64;
        self.confusion[label * self.classes + predicted] += 1;
        if let Some(reference) = reference {
            self.has_reference = true;
            self.agree += (argmax(reference) == predicted) as u64;
            let log_r = log_softmax(reference);
            self.kl += log_r.iter().zip(&log_p).map(|(&r, &p)| r.exp() * (r - p)).sum::<f64>();
        }
    }

    /// Adds a batch of row-major logits `[n, classes]`.
    pub fn add_batch(&mut self, logits: &[f32], labels: &[usize], reference: Option<&[f32]>) {
        let c = self.classes;
        for (i, &label) in labels.iter().enumerate() {
            let row = &logits[i * c..(i + 1) * c];
            self.add(row, label, reference.map(|r| &r[i * c..(i + 1) * c]));
        }
    }

    /// The metrics so far.
    pub fn report(&self) -> EvalReport {
        let n = self.count.max(1) as f64;
        let ece = (0..ECE_BINS)
            .filter(|&b| self.bin_count[b] > 0)
            .map(|b| {
                let size = self.bin_count[b] as f64;
                (size / n) * (self.bin_correct[b] as f64 / size - self.bin_confidence[b] / size).abs()
            })
            .sum();
        let confusion: Vec<Vec<u64>> = self.confusion.chunks(self.classes).map(<[u64]>::to_vec).collect();
        let per_class_top1 = confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let total: u64 = row.iter().sum();
                (total > 0).then(|| 100.0 * row[c] as f64 / total as f64)
            })
            .collect();
        EvalReport {
            images: self.count,
            top1: 100.0 * self.top1 as f64 / n,
            top5: 100.0 * self.top5 as f64 / n,
            nll: self.nll / n,
            ece,
            per_class_top1,
            confusion,
            agreement: self.has_reference.then(|| 100.0 * self.agree as f64 / n),
            kl_to_reference: self.has_reference.then(|| self.kl / n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        // Logits are f32, so inputs such as ln 3 carry ~1e-8 relative error.
        assert!((a - b).abs() < 1e-7, "{a} vs {b}");
    }

    /// Hand-made logits; expected values computed independently with Python/NumPy:
    /// ```python
    /// import numpy as np
    /// L = np.array([[2.,1.,0.],[0.,3.,0.],[1.,1.,4.],[0.,0.,0.]]); y = np.array([0,2,2,1])
    /// P = np.exp(L) / np.exp(L).sum(1, keepdims=True)
    /// nll = -np.log(P[np.arange(4), y]).mean()           # 1.174016041488603
    /// conf = P.max(1); pred = P.argmax(1)                # pred = [0,1,2,0]
    /// # bins of width 1/15: conf = [0.6652, 0.9094, 0.9094, 0.3333]
    /// # bin 9 (0.6652): acc 1; bin 13 (two images, 0.9094): acc 0.5; bin 4 (0.3333): acc 0
    /// ece = (1/4)*abs(1-0.66524096) + (2/4)*abs(0.5-0.90941165) + (1/4)*abs(0-1/3)
    /// #     = 0.3838963...
    /// ```
    #[test]
    fn top1_nll_ece_match_numpy() {
        let logits = [2., 1., 0., 0., 3., 0., 1., 1., 4., 0., 0., 0.];
        let labels = [0, 2, 2, 1];
        let mut acc = EvalAccumulator::new(3);
        acc.add_batch(&logits, &labels, None);
        let r = acc.report();
        close(r.top1, 50.0);
        close(r.top5, 100.0);
        // -log softmax of the true class, per row (Python's math module):
        // [0.40760596444438013, 3.094922956420961, 0.0949229564209606, 1.0986122886681098]
        close(r.nll, 1.174016041488603);
        let p1 = 2f64.exp() / (2f64.exp() + 1f64.exp() + 1.0);
        let p2 = 3f64.exp() / (3f64.exp() + 2.0);
        let p3 = 4f64.exp() / (4f64.exp() + 2.0 * 1f64.exp());
        assert!((p2 - p3).abs() < 1e-12);
        close(r.ece, 0.25 * (1.0 - p1) + 0.5 * (p2 - 0.5).abs() + 0.25 * (1.0 / 3.0));
        assert_eq!(r.confusion, vec![vec![1, 0, 0], vec![1, 0, 0], vec![0, 1, 1]]);
        assert_eq!(r.per_class_top1, vec![Some(100.0), Some(0.0), Some(50.0)]);
    }

    /// Top-5 over 7 classes: the true class has rank 6 in the first row (5 scores above it) and
    /// rank 5 in the second (4 above).
    #[test]
    fn top5_counts_rank() {
        let mut acc = EvalAccumulator::new(7);
        acc.add(&[6., 5., 4., 3., 2., 1., 0.], 5, None);
        acc.add(&[6., 5., 4., 3., 2., 1., 0.], 4, None);
        close(acc.report().top5, 50.0);
    }

    /// KL(r || p) for r = softmax([0, ln 3]) = [1/4, 3/4] and p = [1/2, 1/2]:
    /// 1/4 ln(1/2) + 3/4 ln(3/2) = 0.13081203594113694.
    #[test]
    fn agreement_and_kl_to_reference() {
        let mut acc = EvalAccumulator::new(2);
        acc.add(&[0.0, 0.0], 1, Some(&[0.0, 3f32.ln()]));
        let r = acc.report();
        close(r.kl_to_reference.unwrap(), 0.130_812_035_941_136_94);
        // argmax of [0, 0] is 0 (first on ties), the reference's is 1.
        close(r.agreement.unwrap(), 0.0);
    }
}

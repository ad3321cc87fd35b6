//! What did not fit when a file's tensors were applied to a network, told in PyTorch's terms
//! (the names and shapes a user sees in their `state_dict`).

use burn::store::{ApplyError, ApplyResult};

/// The problems of one apply; empty when every tensor fitted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TensorFit {
    /// `(name, file shape, network shape)`, shapes in PyTorch's order (a linear weight is
    /// `[out, in]`, where Burn stores `[in, out]`).
    pub misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// The network's tensors the file lacks, under PyTorch's names (a batch norm's `weight`
    /// and `bias`, where Burn says `gamma` and `beta`).
    pub missing: Vec<String>,
    /// The file's tensors the network lacks.
    pub unused: Vec<String>,
    /// Anything else: a tensor of another kind of dtype, unreadable data.
    pub other: Vec<String>,
}

/// How many names of each list a message shows.
const SHOWN: usize = 4;

impl TensorFit {
    /// The problems of `result`; the file's tensors for which `ignored` holds are not problems
    /// when the network lacks them (BatchNorm's `num_batches_tracked`, MoCo's key encoder).
    pub fn of(result: &ApplyResult, ignored: impl Fn(&str) -> bool) -> Self {
        let mut fit = Self::default();
        for error in &result.errors {
            match error {
                ApplyError::ShapeMismatch { path, expected, found } => {
                    let torch_order = |shape: &[usize]| -> Vec<usize> {
                        if shape.len() == 2 { shape.iter().rev().copied().collect() } else { shape.to_vec() }
                    };
                    fit.misshaped.push((path.clone(), torch_order(found.as_slice()), torch_order(expected.as_slice())));
                }
                other => fit.other.push(format!("{other:?}")),
            }
        }
        fit.missing = result
            .missing
            .iter()
            .map(|(name, _)| {
                name.strip_suffix(".gamma")
                    .map(|n| format!("{n}.weight"))
                    .or_else(|| name.strip_suffix(".beta").map(|n| format!("{n}.bias")))
                    .unwrap_or_else(|| name.clone())
            })
            .collect();
        fit.unused = result.unused.iter().filter(|n| !ignored(n)).cloned().collect();
        fit
    }

    /// Whether everything fitted.
    pub fn is_empty(&self) -> bool {
        self.misshaped.is_empty() && self.missing.is_empty() && self.unused.is_empty() && self.other.is_empty()
    }

    /// One message per kind of problem, each counted with its first few names.
    pub fn messages(&self) -> Vec<String> {
        let shown = |names: Vec<String>| {
            let first = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
            if names.len() > SHOWN { format!("{first}, ...") } else { first }
        };
        let mut messages = Vec::new();
        if !self.misshaped.is_empty() {
            let shapes =
                self.misshaped.iter().map(|(n, file, net)| format!("{n} (file {file:?}, network {net:?})")).collect();
            messages.push(format!("{} mis-shaped tensor(s): {}", self.misshaped.len(), shown(shapes)));
        }
        messages.extend(self.other.iter().cloned());
        if !self.missing.is_empty() {
            messages.push(format!(
                "{} tensor(s) missing from the file: {}",
                self.missing.len(),
                shown(self.missing.clone())
            ));
        }
        if !self.unused.is_empty() {
            messages.push(format!(
                "{} tensor(s) the architecture does not have: {}",
                self.unused.len(),
                shown(self.unused.clone())
            ));
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Shape;

    fn result(errors: Vec<ApplyError>, missing: &[&str], unused: &[&str]) -> ApplyResult {
        ApplyResult {
            applied: Vec::new(),
            skipped: Vec::new(),
            missing: missing.iter().map(|n| (n.to_string(), String::new())).collect(),
            unused: unused.iter().map(|n| n.to_string()).collect(),
            errors,
        }
    }

    /// A linear weight's shapes are shown as PyTorch's `[out, in]`, Burn's batch-norm names as
    /// PyTorch's, ignored names dropped, each list counted with four names at most.
    #[test]
    fn problems_are_told_in_pytorch_terms() {
        let shape = |d: &[usize]| Shape::from(d.to_vec());
        let errors = vec![ApplyError::ShapeMismatch {
            path: "fc.weight".into(),
            expected: shape(&[512, 10]),
            found: shape(&[512, 1000]),
        }];
        let fit = TensorFit::of(
            &result(errors, &["bn1.gamma", "bn1.beta", "a", "b", "c"], &["x.num_batches_tracked", "y"]),
            |n| n.ends_with("num_batches_tracked"),
        );
        assert_eq!(fit.misshaped, vec![("fc.weight".to_string(), vec![1000, 512], vec![10, 512])]);
        assert_eq!(
            fit.messages(),
            vec![
                "1 mis-shaped tensor(s): fc.weight (file [1000, 512], network [10, 512])".to_string(),
                "5 tensor(s) missing from the file: bn1.weight, bn1.bias, a, b, ...".into(),
                "1 tensor(s) the architecture does not have: y".into(),
            ]
        );
        assert!(
            TensorFit::of(&result(Vec::new(), &[], &["n.num_batches_tracked"]), |n| n.starts_with("n.")).is_empty()
        );
    }
}

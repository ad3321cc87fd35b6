//! What the loop measures after every pass: classification metrics of the network's logits,
//! weighted kNN accuracy on its embeddings (self-supervised runs), or nothing.

use super::evaluate::evaluate;
use super::knn::{KnnConfig, knn_top1};
use crate::error::Result;
use crate::models::Network;
use burn::tensor::Device;
use kd_datasets::BatchSource;

/// The validation of a run.
#[derive(Clone, Copy)]
pub enum Validation<'a> {
    /// None: the metrics rows have no validation columns.
    None,
    /// `val_loss` (NLL), `val_top1`, `val_top5` of the logits on `source`; with `references`
    /// (the teachers) also `val_agreement`, top-1 agreement with their ensemble (%).
    Classification {
        /// Labelled validation images.
        source: &'a dyn BatchSource,
        /// Teachers to compare with (empty: none).
        references: &'a [crate::models::Network],
    },
    /// `val_knn_top1`: the `queries` classified by weighted kNN over the `bank`'s embeddings.
    Knn {
        /// Labelled images whose embeddings vote (usually the training split).
        bank: &'a dyn BatchSource,
        /// Labelled images classified (the validation split).
        queries: &'a dyn BatchSource,
        /// k and temperature.
        config: KnnConfig,
    },
}

impl<'a> Validation<'a> {
    /// Classification on `source` without teacher references when there is a source (a
    /// validation split), else nothing.
    pub fn classification_if_any<S: BatchSource>(source: Option<&'a S>) -> Self {
        match source {
            Some(source) => Self::Classification { source, references: &[] },
            None => Self::None,
        }
    }
}

impl Validation<'_> {
    /// Runs the validation; named values in a fixed order.
    pub fn run(&self, network: &Network, device: &Device) -> Result<Vec<(String, f64)>> {
        Ok(match self {
            Self::None => Vec::new(),
            Self::Classification { source, references } => {
                let report = evaluate(network, references, *source, device)?;
                let mut values = vec![
                    ("val_loss".to_string(), report.nll),
                    ("val_top1".to_string(), report.top1),
                    ("val_top5".to_string(), report.top5),
                ];
                if let Some(agreement) = report.agreement {
                    values.push(("val_agreement".to_string(), agreement));
                }
                values
            }
            Self::Knn { bank, queries, config } => {
                vec![("val_knn_top1".to_string(), knn_top1(network, *bank, *queries, *config, device)?)]
            }
        })
    }
}

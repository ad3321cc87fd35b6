//! What follows a network's pooled embedding: a linear classifier (the default), MoCo v2's MLP
//! projection head (He et al. 2020; Chen et al., "Improved Baselines with Momentum Contrastive
//! Learning", 2020, §2: fc -> ReLU -> fc replacing the classifier), or nothing (a feature-only
//! encoder). The head keeps the architecture's classifier name, so a classifier is `fc.weight`
//! (ResNet) and a projection head `fc.0.weight`, `fc.1.weight`.

use super::layers::linear;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// The head of a [`super::ModelSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HeadSpec {
    /// `embedding -> num_classes` logits.
    #[default]
    Classifier,
    /// `embedding -> hidden -> ReLU -> out`.
    Projection {
        /// Hidden width (MoCo v2: the embedding width).
        hidden: usize,
        /// Output width (MoCo v2: 128).
        out: usize,
    },
    /// No head: the network outputs its embedding.
    None,
}

impl HeadSpec {
    /// True for the default classifier head (not written into sidecars).
    pub fn is_classifier(&self) -> bool {
        *self == Self::Classifier
    }

    /// Builds the head after an embedding of `dim` values.
    pub fn init(&self, dim: usize, num_classes: usize, device: &Device) -> Option<Head> {
        match *self {
            Self::Classifier => Some(Head::Linear(linear(dim, num_classes, device))),
            Self::Projection { hidden, out } => {
                Some(Head::Mlp(vec![linear(dim, hidden, device), linear(hidden, out, device)]))
            }
            Self::None => None,
        }
    }
}

/// A built head.
#[derive(Module, Debug)]
pub enum Head {
    /// Linear classifier.
    Linear(Linear),
    /// Two linear layers with a ReLU between.
    Mlp(Vec<Linear>),
}

impl Head {
    /// `[B, dim] -> [B, out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Linear(fc) => fc.forward(x),
            Self::Mlp(layers) => {
                let mut x = x;
                for (i, layer) in layers.iter().enumerate() {
                    if i > 0 {
                        x = relu(x);
                    }
                    x = layer.forward(x);
                }
                x
            }
        }
    }
}

/// Applies an optional head to an embedding.
pub fn apply(head: &Option<Head>, features: Tensor<2>) -> Tensor<2> {
    match head {
        Some(head) => head.forward(features),
        None => features,
    }
}

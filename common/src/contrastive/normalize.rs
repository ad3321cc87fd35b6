//! Rows scaled to unit L2 norm, `z / max(||z||, 1e-12)`: every embedding that a contrastive loss
//! or a kNN vote compares by cosine similarity.

use burn::tensor::Tensor;

/// `[B, D]` rows of unit length (a zero row stays zero).
pub fn l2_normalize(z: Tensor<2>) -> Tensor<2> {
    let norm = z.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    z / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData, Tolerance};

    /// [3, 4] -> [0.6, 0.8]; [0, 0] stays [0, 0].
    #[test]
    fn unit_rows() {
        let device = Device::flex();
        let z = l2_normalize(Tensor::<2>::from_data([[3.0f32, 4.0], [0.0, 0.0]], &device));
        z.to_data().assert_approx_eq::<f32>(&TensorData::from([[0.6f32, 0.8], [0.0, 0.0]]), Tolerance::absolute(1e-6));
    }
}

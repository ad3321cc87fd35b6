//! A first-in, first-out queue of embeddings on the device (MoCo, He et al., CVPR 2020, §3.2;
//! SEED, Fang et al., ICLR 2021, §3): `K` rows of dimension `D`, started from random unit vectors;
//! every step writes the batch's `B` embeddings over the oldest `B` rows. `K` must be a multiple
//! of `B`, so a batch never straddles the end. The queue is saved with the run's state, so a
//! resumed run continues with the queue it had.

use crate::error::{Error, Result};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};

/// The queue.
#[derive(Debug)]
pub struct EmbeddingQueue {
    /// `[K, D]` rows; row `pointer` is the oldest.
    rows: Tensor<2>,
    /// Next row to overwrite.
    pointer: usize,
    /// Rows written per push.
    batch: usize,
}

/// The most values a queue may hold (`2^30` f32, 4 GiB): `--queue` is a flag, so a typo must
/// not ask for terabytes.
pub const MAX_QUEUE_VALUES: usize = 1 << 30;

impl EmbeddingQueue {
    /// `size` random unit rows of dimension `dim` (a seeded normal sample, normalised), taking
    /// pushes of `batch` rows; `size` must be a positive multiple of `batch`.
    pub fn new(size: usize, dim: usize, batch: usize, seed: u64, device: &Device) -> Result<Self> {
        if batch == 0 || size == 0 || !size.is_multiple_of(batch) {
            return Err(Error::InvalidConfig(format!(
                "the queue size ({size}) must be a positive multiple of the batch size ({batch})"
            )));
        }
        if dim == 0 {
            return Err(Error::InvalidConfig("the queue's embedding dimension must be at least 1".into()));
        }
        if size.checked_mul(dim).is_none_or(|values| values > MAX_QUEUE_VALUES) {
            return Err(Error::InvalidConfig(format!(
                "a queue of {size} x {dim} embeddings is larger than the limit of {MAX_QUEUE_VALUES} values (4 GiB; \
                 MoCo v2's ImageNet queue is 65536 x 128)"
            )));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut values = Vec::with_capacity(size * dim);
        for _ in 0..size {
            // Box-Muller normal samples, then the row normalised.
            let row: Vec<f64> = (0..dim)
                .map(|_| {
                    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
                    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
                })
                .collect();
            let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            values.extend(row.iter().map(|x| (x / norm) as f32));
        }
        let rows = Tensor::from_data(TensorData::new(values, [size, dim]), device);
        Ok(Self { rows, pointer: 0, batch })
    }

    /// The rows `[K, D]` (oldest at [`Self::pointer`]).
    pub fn rows(&self) -> Tensor<2> {
        self.rows.clone()
    }

    /// Next row to be overwritten.
    pub fn pointer(&self) -> usize {
        self.pointer
    }

    /// Writes `batch` (`[B, D]`, detached) over the oldest rows.
    pub fn push(&mut self, batch: Tensor<2>) -> Result<()> {
        let [rows, dim] = batch.dims();
        let [size, queue_dim] = self.rows.dims();
        if rows != self.batch || dim != queue_dim {
            return Err(Error::Shape(format!(
                "the queue takes [{}, {queue_dim}] batches, got [{rows}, {dim}]",
                self.batch
            )));
        }
        let start = self.pointer;
        self.rows = self.rows.clone().slice_assign([start..start + rows, 0..dim], batch);
        self.pointer = (start + rows) % size;
        Ok(())
    }

    /// The queue as bytes: `K`, `D`, pointer, batch (u64 little-endian), then the rows (f32).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let [size, dim] = self.rows.dims();
        let values: Vec<f32> =
            self.rows.to_data().try_to_vec().map_err(|e| Error::Shape(format!("reading the queue: {e:?}")))?;
        let mut bytes = Vec::with_capacity(32 + 4 * values.len());
        for n in [size, dim, self.pointer, self.batch] {
            bytes.extend((n as u64).to_le_bytes());
        }
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        Ok(bytes)
    }

    /// Restores [`Self::to_bytes`]; the shape and batch must be this queue's.
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let bad = |m: &str| Error::InvalidConfig(format!("saved queue: {m}"));
        if bytes.len() < 32 {
            return Err(bad("truncated"));
        }
        let number = |i: usize| u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes")) as usize;
        let (size, dim, pointer, batch) = (number(0), number(1), number(2), number(3));
        if [size, dim] != self.rows.dims() || batch != self.batch {
            return Err(bad(&format!(
                "[{size}, {dim}] with batches of {batch}, this run's queue is {:?} with batches of {}",
                self.rows.dims(),
                self.batch
            )));
        }
        if bytes.len() != 32 + 4 * size * dim || pointer >= size || !pointer.is_multiple_of(batch) {
            return Err(bad("its length or pointer is inconsistent"));
        }
        let values: Vec<f32> =
            bytes[32..].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        self.rows = Tensor::from_data(TensorData::new(values, [size, dim]), &self.rows.device());
        self.pointer = pointer;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(queue: &EmbeddingQueue) -> Vec<f32> {
        queue.rows().into_data().try_to_vec().unwrap()
    }

    /// K = 6, B = 2, D = 1: three pushes fill the queue in order, the fourth overwrites the
    /// oldest rows (wrap-around); the pointer always names the oldest row.
    #[test]
    fn fifo_order_and_wrap_around() {
        let device = Device::flex();
        let mut queue = EmbeddingQueue::new(6, 1, 2, 0, &device).unwrap();
        let initial = rows(&queue);
        assert!(initial.iter().all(|v| (v.abs() - 1.0).abs() < 1e-6), "unit rows of dimension 1: {initial:?}");
        let push = |q: &mut EmbeddingQueue, a: f32, b: f32| {
            q.push(Tensor::from_data(TensorData::new(vec![a, b], [2, 1]), &device)).unwrap()
        };
        push(&mut queue, 1.0, 2.0);
        assert_eq!(queue.pointer(), 2);
        assert_eq!(&rows(&queue)[..2], &[1.0, 2.0]);
        assert_eq!(&rows(&queue)[2..], &initial[2..]);
        push(&mut queue, 3.0, 4.0);
        push(&mut queue, 5.0, 6.0);
        assert_eq!((rows(&queue), queue.pointer()), (vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0));
        push(&mut queue, 7.0, 8.0);
        assert_eq!((rows(&queue), queue.pointer()), (vec![7.0, 8.0, 3.0, 4.0, 5.0, 6.0], 2));

        // Saved and restored into a fresh queue: the same rows and pointer.
        let mut restored = EmbeddingQueue::new(6, 1, 2, 9, &device).unwrap();
        restored.load_bytes(&queue.to_bytes().unwrap()).unwrap();
        assert_eq!((rows(&restored), restored.pointer()), (rows(&queue), 2));
        let mut other = EmbeddingQueue::new(8, 1, 2, 0, &device).unwrap();
        assert!(other.load_bytes(&queue.to_bytes().unwrap()).unwrap_err().to_string().contains("[6, 1]"));
    }

    #[test]
    fn size_must_be_a_multiple_of_the_batch() {
        let device = Device::flex();
        let err = EmbeddingQueue::new(10, 4, 4, 0, &device).unwrap_err().to_string();
        assert!(err.contains("multiple of the batch size (4)"), "{err}");
        let mut queue = EmbeddingQueue::new(8, 4, 4, 0, &device).unwrap();
        let wrong = Tensor::<2>::zeros([2, 4], &device);
        assert!(queue.push(wrong).unwrap_err().to_string().contains("[4, 4] batches"));
    }

    /// `--queue` of 2^57 (overflows `size * dim` for dim 128) or 2^40 is refused before any
    /// allocation.
    #[test]
    fn oversized_queues_are_refused() {
        let device = Device::default();
        for size in [1usize << 57, 1 << 40, usize::MAX - 1] {
            let Err(err) = EmbeddingQueue::new(size, 128, 1, 0, &device) else { panic!("{size} accepted") };
            let err = err.to_string();
            assert!(err.contains("larger than the limit"), "{err}");
        }
    }
}

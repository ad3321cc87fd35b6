//! Elementwise loops split between the rayon threads for large tensors.
//!
//! The activations of a convolutional network at training batch sizes (a million elements and
//! more) are memory bound: one core cannot stream them at the memory's bandwidth, two can come
//! close. Each element is computed on its own, so the result does not depend on the split.

/// Elements at and above which a loop is split between the threads (256 Ki f32 = 1 MiB).
pub(crate) const PARALLEL_ELEMENTS: usize = 256 * 1024;

/// Elements per task: enough to outweigh the scheduling, few enough to balance the threads.
#[cfg(feature = "rayon")]
const TASK_ELEMENTS: usize = 32 * 1024;

/// `data[i] = op(data[i])`.
pub(crate) fn map_in_place<E, Op>(data: &mut [E], op: Op)
where
    E: Copy + Send + Sync,
    Op: Fn(E) -> E + Send + Sync,
{
    #[cfg(feature = "rayon")]
    if data.len() >= PARALLEL_ELEMENTS {
        use rayon::prelude::*;
        data.par_chunks_mut(TASK_ELEMENTS)
            .for_each(|chunk| chunk.iter_mut().for_each(|x| *x = op(*x)));
        return;
    }
    data.iter_mut().for_each(|x| *x = op(*x));
}

/// `dst[i] = op(dst[i], src[i])` over the shorter of the two.
pub(crate) fn zip_in_place<E, Op>(dst: &mut [E], src: &[E], op: Op)
where
    E: Copy + Send + Sync,
    Op: Fn(E, E) -> E + Send + Sync,
{
    #[cfg(feature = "rayon")]
    if dst.len() >= PARALLEL_ELEMENTS {
        use rayon::prelude::*;
        dst.par_chunks_mut(TASK_ELEMENTS)
            .zip(src.par_chunks(TASK_ELEMENTS))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &s)| *d = op(*d, s)));
        return;
    }
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = op(*d, s));
}

/// `op(src[i])` as a new vector.
pub(crate) fn map_collect<E, R, Op>(src: &[E], op: Op) -> Vec<R>
where
    E: Copy + Send + Sync,
    R: Send,
    Op: Fn(E) -> R + Send + Sync,
{
    #[cfg(feature = "rayon")]
    if src.len() >= PARALLEL_ELEMENTS {
        use rayon::prelude::*;
        return src
            .par_iter()
            .with_min_len(TASK_ELEMENTS)
            .map(|&x| op(x))
            .collect();
    }
    src.iter().map(|&x| op(x)).collect()
}

/// `op(lhs[i], rhs[i])` over the shorter of the two, as a new vector.
pub(crate) fn zip_collect<E, R, Op>(lhs: &[E], rhs: &[E], op: Op) -> Vec<R>
where
    E: Copy + Send + Sync,
    R: Send,
    Op: Fn(E, E) -> R + Send + Sync,
{
    #[cfg(feature = "rayon")]
    if lhs.len() >= PARALLEL_ELEMENTS {
        use rayon::prelude::*;
        return lhs
            .par_iter()
            .zip(rhs)
            .with_min_len(TASK_ELEMENTS)
            .map(|(&l, &r)| op(l, r))
            .collect();
    }
    lhs.iter().zip(rhs).map(|(&l, &r)| op(l, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both loops give the sequential result on either side of the threshold (expected values
    /// from the plain iterator chains they replace).
    #[test]
    fn parallel_loops_equal_the_sequential_ones() {
        for n in [10, PARALLEL_ELEMENTS + 12_345] {
            let a: Vec<f32> = (0..n).map(|i| (i % 97) as f32 - 48.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 31) as f32 * 0.5).collect();
            let mut mapped = a.clone();
            map_in_place(&mut mapped, |x| x.max(0.0));
            assert_eq!(mapped, a.iter().map(|x| x.max(0.0)).collect::<Vec<_>>());
            let mut zipped = a.clone();
            zip_in_place(&mut zipped, &b, |x, y| x * y - 1.0);
            let expected: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x * y - 1.0).collect();
            assert_eq!(zipped, expected);
            let collected: Vec<f32> = map_collect(&a, |x| x.max(0.0));
            assert_eq!(collected, mapped);
            assert_eq!(zip_collect(&a, &b, |x, y| x * y - 1.0), expected);
        }
    }

    /// A custom binary op (no SIMD hint) with a shared lhs writes into the unique rhs, in
    /// operand order, and leaves the lhs alone; expected values by hand (`lhs - 2·rhs`).
    #[test]
    fn a_custom_op_with_a_shared_lhs_writes_into_the_unique_rhs() {
        use crate::FlexTensor;
        use crate::ops::binary::binary_op;
        use burn_backend::TensorData;
        let a = FlexTensor::from_data(TensorData::new(vec![10.0f32, 20.0, 30.0, 40.0], vec![2, 2]));
        let keep_alive = a.clone();
        let b = FlexTensor::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], vec![2, 2]));
        let result = binary_op(a, b, |x, y| x - 2.0 * y, |x, y| x - 2.0 * y, None);
        assert_eq!(
            result.into_data().as_slice::<f32>().unwrap(),
            &[8.0, 16.0, 24.0, 32.0]
        );
        assert_eq!(
            keep_alive.into_data().as_slice::<f32>().unwrap(),
            &[10.0, 20.0, 30.0, 40.0]
        );
    }
}

//! 2x2 max pooling with stride 2 (no padding, no dilation) on contiguous NCHW f32: the pooling
//! of VGG- and LeNet-style networks, without the general kernel's per-element index arithmetic
//! (three range computations with integer divisions per output element).
//!
//! Same results as the general kernel, bit for bit: each window is scanned row by row, the
//! first element is taken, and a later one replaces it when it is larger or NaN (so NaN
//! propagates and the last NaN's index is reported, as in PyTorch). Indices are offsets in the
//! input plane, `ih * in_w + iw`.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape};

use crate::{FlexTensor, Layout};

/// Whether the options describe the 2x2 / stride 2 / no padding / no dilation pooling this
/// kernel computes, on an input whose output size is the same with and without `ceil_mode`.
pub(crate) fn applies(
    shape: &[usize],
    kernel_size: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> bool {
    shape.len() == 4
        && kernel_size == [2, 2]
        && stride == [2, 2]
        && padding == [0, 0]
        && dilation == [1, 1]
        && shape[2] >= 2
        && shape[3] >= 2
        && (!ceil_mode || (shape[2] % 2 == 0 && shape[3] % 2 == 0))
}

/// The window's `(max, index)` after the general kernel's scan order and NaN rule.
#[inline(always)]
fn window(x: &[f32], top: usize, in_w: usize, iw: usize) -> (f32, usize) {
    let candidates = [
        (top + iw, 0),
        (top + iw + 1, 1),
        (top + in_w + iw, in_w),
        (top + in_w + iw + 1, in_w + 1),
    ];
    let mut best = (x[candidates[0].0], candidates[0].1);
    for &(at, offset) in &candidates[1..] {
        let val = x[at];
        if val > best.0 || val.is_nan() {
            best = (val, offset);
        }
    }
    best
}

/// Pools one `[in_h, in_w]` plane into `out` (and its input offsets into `indices`).
fn pool_plane(
    x: &[f32],
    in_w: usize,
    out_h: usize,
    out_w: usize,
    out: &mut [f32],
    mut indices: Option<&mut [i64]>,
) {
    for oh in 0..out_h {
        let top = 2 * oh * in_w;
        for ow in 0..out_w {
            let (val, offset) = window(x, top, in_w, 2 * ow);
            let o = oh * out_w + ow;
            out[o] = val;
            if let Some(indices) = indices.as_deref_mut() {
                indices[o] = (2 * oh * in_w + 2 * ow + offset) as i64;
            }
        }
    }
}

/// `[B, C, H, W] -> ([B, C, H / 2, W / 2], its argmax offsets as i64)`. Callers check
/// [`applies`] first.
pub(crate) fn max_pool2x2_with_indices_f32(x: FlexTensor) -> (FlexTensor, FlexTensor) {
    let (output, indices, shape) = pool(x, true);
    (
        FlexTensor::new(
            Bytes::from_elems(output),
            Layout::contiguous(shape.clone()),
            DType::F32,
        ),
        FlexTensor::new(
            Bytes::from_elems(indices),
            Layout::contiguous(shape),
            DType::I64,
        ),
    )
}

/// `[B, C, H, W] -> [B, C, H / 2, W / 2]`. Callers check [`applies`] first.
pub(crate) fn max_pool2x2_f32(x: FlexTensor) -> FlexTensor {
    let (output, _, shape) = pool(x, false);
    FlexTensor::new(
        Bytes::from_elems(output),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// The pooled values, their offsets when `with_indices` (else empty), and the output shape.
fn pool(x: FlexTensor, with_indices: bool) -> (Vec<f32>, Vec<i64>, Shape) {
    let x = x.to_contiguous();
    let shape = x.layout().shape();
    let (batch, channels, in_h, in_w) = (shape[0], shape[1], shape[2], shape[3]);
    let (out_h, out_w) = (in_h / 2, in_w / 2);
    let (plane_in, plane_out) = (in_h * in_w, out_h * out_w);
    let planes = batch * channels;
    let data: &[f32] = x.storage();

    let mut output = vec![0f32; planes * plane_out];
    let mut indices = if with_indices {
        vec![0i64; planes * plane_out]
    } else {
        Vec::new()
    };
    let run = |p: usize, out: &mut [f32], idx: Option<&mut [i64]>| {
        pool_plane(
            &data[p * plane_in..(p + 1) * plane_in],
            in_w,
            out_h,
            out_w,
            out,
            idx,
        )
    };
    let out_shape = Shape::from(vec![batch, channels, out_h, out_w]);
    if plane_out == 0 {
        return (output, indices, out_shape);
    }
    #[cfg(feature = "rayon")]
    if output.len() >= crate::ops::PARALLEL_THRESHOLD && planes > 1 {
        use rayon::prelude::*;
        if with_indices {
            output
                .par_chunks_mut(plane_out)
                .zip(indices.par_chunks_mut(plane_out))
                .enumerate()
                .for_each(|(p, (out, idx))| run(p, out, Some(idx)));
        } else {
            output
                .par_chunks_mut(plane_out)
                .enumerate()
                .for_each(|(p, out)| run(p, out, None));
        }
        return (output, indices, out_shape);
    }
    if with_indices {
        for (p, (out, idx)) in output
            .chunks_mut(plane_out)
            .zip(indices.chunks_mut(plane_out))
            .enumerate()
        {
            run(p, out, Some(idx));
        }
    } else {
        for (p, out) in output.chunks_mut(plane_out).enumerate() {
            run(p, out, None);
        }
    }
    (output, indices, out_shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::pool::max_pool3d_with_indices_f32;

    fn tensor(data: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(Shape::from(shape.to_vec())),
            DType::F32,
        )
    }

    /// The general 3-d kernel on `[N, C, 1, H, W]`: the independent reference.
    fn general(x: &FlexTensor) -> (Vec<f32>, Vec<i64>) {
        let s = x.layout().shape().to_vec();
        let x3 = x.reshape(Shape::from(vec![s[0], s[1], 1, s[2], s[3]]));
        let (out, idx) =
            max_pool3d_with_indices_f32(x3, [1, 2, 2], [1, 2, 2], [0, 0, 0], [1, 1, 1], false);
        (out.storage::<f32>().to_vec(), idx.storage::<i64>().to_vec())
    }

    /// Bit patterns, so NaN compares equal to NaN.
    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    /// Values with ties (a coarse grid) and NaNs, from a 64-bit LCG.
    fn awkward_values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let r = (state >> 33) % 23;
                if r == 0 { f32::NAN } else { r as f32 - 11.0 }
            })
            .collect()
    }

    #[test]
    fn max_pool2x2_hand_case_keeps_first_tie_and_last_nan() {
        // Windows [[1, 5], [3, 5]] and [[NaN, 2], [0, NaN]] of a 2x4 plane: the first 5 wins
        // its tie (offset 1); the later NaN replaces the first (offset 1 * 4 + 3 = 7).
        let x = tensor(
            vec![1.0, 5.0, f32::NAN, 2.0, 3.0, 5.0, 0.0, f32::NAN],
            [1, 1, 2, 4],
        );
        let (out, idx) = max_pool2x2_with_indices_f32(x.clone());
        let out = out.storage::<f32>().to_vec();
        assert_eq!(out[0], 5.0);
        assert!(out[1].is_nan());
        assert_eq!(idx.storage::<i64>(), &[1, 7]);
        assert_eq!(bits(max_pool2x2_f32(x).storage::<f32>()), bits(&out));
    }

    #[test]
    fn max_pool2x2_matches_the_general_kernel() {
        // Even and odd sizes (the last row/column dropped), one plane and enough to split over rayon's threads.
        for (case, shape) in [
            [1, 1, 2, 2],
            [2, 3, 5, 7],
            [4, 8, 28, 28],
            [128, 32, 28, 28],
            [3, 2, 9, 2],
        ]
        .into_iter()
        .enumerate()
        {
            let x = tensor(
                awkward_values(shape.iter().product(), case as u64 + 7),
                shape,
            );
            let (want_out, want_idx) = general(&x);
            let (out, idx) = max_pool2x2_with_indices_f32(x.clone());
            assert_eq!(
                out.layout().shape().to_vec(),
                vec![shape[0], shape[1], shape[2] / 2, shape[3] / 2]
            );
            assert_eq!(
                bits(out.storage::<f32>()),
                bits(&want_out),
                "values, {shape:?}"
            );
            assert_eq!(
                idx.storage::<i64>(),
                want_idx.as_slice(),
                "indices, {shape:?}"
            );
            assert_eq!(
                bits(max_pool2x2_f32(x).storage::<f32>()),
                bits(&want_out),
                "values only, {shape:?}"
            );
        }
    }

    #[test]
    fn max_pool2x2_reads_a_permuted_input_in_logical_order() {
        let x = tensor(awkward_values(2 * 3 * 4 * 6, 3), [2, 3, 4, 6]);
        let transposed = x.permute(&[0, 1, 3, 2]);
        let (want_out, want_idx) = general(&transposed.to_contiguous());
        let (out, idx) = max_pool2x2_with_indices_f32(transposed);
        assert_eq!(bits(out.storage::<f32>()), bits(&want_out));
        assert_eq!(idx.storage::<i64>(), want_idx.as_slice());
    }

    #[test]
    fn max_pool2x2_applies_only_to_its_own_options() {
        let s = [1, 1, 4, 4];
        assert!(applies(&s, [2, 2], [2, 2], [0, 0], [1, 1], false));
        assert!(applies(&s, [2, 2], [2, 2], [0, 0], [1, 1], true));
        assert!(
            !applies(&[1, 1, 5, 4], [2, 2], [2, 2], [0, 0], [1, 1], true),
            "ceil mode, odd height"
        );
        assert!(
            !applies(&s, [2, 2], [1, 1], [0, 0], [1, 1], false),
            "stride 1"
        );
        assert!(!applies(&s, [3, 3], [2, 2], [0, 0], [1, 1], false), "3x3");
        assert!(
            !applies(&s, [2, 2], [2, 2], [1, 1], [1, 1], false),
            "padding"
        );
        assert!(
            !applies(&s, [2, 2], [2, 2], [0, 0], [2, 2], false),
            "dilation"
        );
        assert!(
            !applies(&[1, 1, 1, 4], [2, 2], [2, 2], [0, 0], [1, 1], false),
            "one row"
        );
    }
}

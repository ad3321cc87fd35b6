//! 2D convolution and its two backward passes for NCHW tensors, as per-sample im2col + GEMM
//! with no layout conversion (f32 and f64 natively, f16 and bf16 in f32).
//!
//! With `col = im2col(x_n)` of shape `[C_in·kh·kw, OH·OW]` (one row per input channel and
//! kernel offset, one column per output pixel, zeros where the window leaves the padded image):
//!
//! - forward:          `y_n  = W · col`                      (`[C_out, OH·OW]`)
//! - input gradient:   `dx_n = col2im(Wᵀ · dy_n)`            (scatter-add of the columns)
//!   or, at stride 1,  `dx_n = conv2d(dy_n, W')`             (`W'`: `Wᵀ` per group, each kernel
//!                                                            rotated by 180°; no col2im)
//! - weight gradient:  `dW   = Σ_n dy_n · col_nᵀ`            (`[C_out, C_in·kh·kw]`)
//!
//! (Chellapilla et al., "High Performance Convolutional Neural Networks for Document
//! Processing", 2006, §2: convolution unrolled into a matrix product.)
//!
//! Grouped convolutions run the same product per group (`C_in`, `C_out` per group), asymmetric
//! padding is part of the window bounds, and dilation of the offsets.
//!
//! With the `simd` feature, the forward pass and the weight gradient of every kernel but the
//! pointwise one run the products of [direct] instead, which read shifted copies of the image
//! rather than im2col columns; this file keeps the pointwise products and the input gradient at
//! strides above 1.
//!
//! Work is split over samples: every sample's forward output and input gradient is computed by
//! one thread, and the weight gradient is summed over fixed chunks of [WEIGHT_GRAD_CHUNK]
//! samples whose partial sums are added in chunk order, so the results are bitwise the same
//! for any number of threads. When there are fewer samples (or chunks) than threads, the GEMMs
//! themselves run in parallel (the gemm crate splits the output, never the reduction).

use alloc::vec;
use alloc::vec::Vec;
use core::ops::AddAssign;

use burn_backend::ops::ConvOptions;
use burn_backend::{DType, TensorMetadata};
use burn_std::{Bytes, Shape, bf16, f16};
use num_traits::Zero;

use crate::ops::module::{cast_from_f32, cast_to_f32};
use crate::{FlexTensor, Layout};

/// Samples whose weight-gradient contributions are summed into one partial result.
pub(crate) const WEIGHT_GRAD_CHUNK: usize = 4;

#[cfg(feature = "simd")]
#[path = "conv2d_direct.rs"]
mod direct;

/// The element types the SIMD kernels of [direct] run in.
#[cfg(feature = "simd")]
use direct::DirectElement as SimdElement;
#[cfg(not(feature = "simd"))]
trait SimdElement {}
#[cfg(not(feature = "simd"))]
impl SimdElement for f32 {}
#[cfg(not(feature = "simd"))]
impl SimdElement for f64 {}

/// The element types the kernels run in natively (gemm's f32 and f64 kernels).
pub(crate) trait ConvElement:
    bytemuck::Pod + burn_backend::Element + Zero + AddAssign + SimdElement + Send + Sync + 'static
{
    const ONE: Self;
}

impl ConvElement for f32 {
    const ONE: Self = 1.0;
}

impl ConvElement for f64 {
    const ONE: Self = 1.0;
}

/// Shapes of one convolution, read off its input and weight (channel counts per group).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeometry {
    batch: usize,
    groups: usize,
    channels_in: usize,
    height: usize,
    width: usize,
    channels_out: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding_begin: [usize; 2],
    dilation: [usize; 2],
    out_height: usize,
    out_width: usize,
}

impl ConvGeometry {
    /// The geometry of `conv2d(x, weight)`; panics on shapes no convolution has.
    pub(crate) fn new(x_shape: &Shape, weight_shape: &Shape, options: &ConvOptions<2>) -> Self {
        assert!(
            x_shape.num_dims() == 4 && weight_shape.num_dims() == 4,
            "conv2d: expected 4-d input and weight, got {x_shape:?} and {weight_shape:?}"
        );
        let groups = options.groups;
        assert!(
            groups > 0 && x_shape[1] == weight_shape[1] * groups && weight_shape[0] % groups == 0,
            "conv2d: input {x_shape:?} and weight {weight_shape:?} do not match {groups} groups"
        );
        let kernel = [weight_shape[2], weight_shape[3]];
        let out = |axis: usize, size: usize| -> usize {
            let (begin, end) = options.padding[axis];
            let reach = options.dilation[axis] * kernel[axis].saturating_sub(1) + 1;
            match (size + begin + end).checked_sub(reach) {
                Some(room) if kernel[axis] > 0 => room / options.stride[axis] + 1,
                _ => 0,
            }
        };
        Self {
            batch: x_shape[0],
            groups,
            channels_in: weight_shape[1],
            height: x_shape[2],
            width: x_shape[3],
            channels_out: weight_shape[0] / groups,
            kernel,
            stride: options.stride,
            padding_begin: options.padding_begin(),
            dilation: options.dilation,
            out_height: out(0, x_shape[2]),
            out_width: out(1, x_shape[3]),
        }
    }

    /// Whether some product is empty (every result is then zeros or empty).
    fn is_empty(&self) -> bool {
        self.batch == 0 || self.channels_out == 0 || self.col_rows() == 0 || self.out_pixels() == 0
    }

    pub(crate) fn output_shape(&self) -> [usize; 4] {
        let c_out = self.channels_out * self.groups;
        [self.batch, c_out, self.out_height, self.out_width]
    }

    fn input_shape(&self) -> [usize; 4] {
        let c_in = self.channels_in * self.groups;
        [self.batch, c_in, self.height, self.width]
    }

    fn weight_shape(&self) -> [usize; 4] {
        let c_out = self.channels_out * self.groups;
        [c_out, self.channels_in, self.kernel[0], self.kernel[1]]
    }

    /// Rows of one group's im2col matrix: `C_in·kh·kw`.
    fn col_rows(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    fn out_pixels(&self) -> usize {
        self.out_height * self.out_width
    }

    fn in_pixels(&self) -> usize {
        self.height * self.width
    }

    /// One group's input channels of one sample, and the same for the output.
    fn group_in(&self) -> usize {
        self.channels_in * self.in_pixels()
    }

    fn group_out(&self) -> usize {
        self.channels_out * self.out_pixels()
    }

    fn group_weight(&self) -> usize {
        self.channels_out * self.col_rows()
    }

    /// Whether forward and weight gradient run the direct kernels of [direct].
    #[cfg(all(test, feature = "simd"))]
    pub(crate) fn runs_direct(&self) -> bool {
        direct::ShiftedRows::new::<f32>(self).is_some()
    }

    /// A 1x1 kernel at stride 1 without padding: the image already is its im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.padding_begin == [0, 0]
            && self.out_height == self.height
            && self.out_width == self.width
    }

    /// Output positions `o` (half-open range) whose input index `o·stride + k·dilation - pad`
    /// along `axis` lies inside the image.
    fn valid_outputs(&self, axis: usize, k: usize) -> (usize, usize) {
        let (size, outs) = match axis {
            0 => (self.height, self.out_height),
            _ => (self.width, self.out_width),
        };
        let offset = (k * self.dilation[axis]) as isize - self.padding_begin[axis] as isize;
        let stride = self.stride[axis] as isize;
        // first o with o·stride + offset >= 0
        let start = if offset >= 0 {
            0
        } else {
            ((-offset + stride - 1) / stride) as usize
        };
        // one past the last o with o·stride + offset <= size - 1
        let last = size as isize - 1 - offset;
        let end = if last < 0 {
            0
        } else {
            ((last / stride) as usize + 1).min(outs)
        };
        (start.min(end), end)
    }

    /// The input gradient as a forward convolution of the output gradient, at stride 1:
    /// `dx = conv2d(dy, W')` with `W'[ci, co, ky, kx] = W[co, ci, kh-1-ky, kw-1-kx]` per group
    /// ([flipped_transposed]) and padding `d·(k-1) - pad` on each side (Dumoulin & Visin, "A
    /// guide to convolution arithmetic for deep learning", 2016, §4.1: the transpose of a
    /// stride-1 convolution is a convolution). `None` for other strides, for pointwise kernels
    /// (whose gradient needs no col2im) and where a side's padding exceeds `d·(k-1)`.
    pub(crate) fn output_grad_as_input(&self) -> Option<ConvGeometry> {
        if self.stride != [1, 1] || self.is_pointwise() {
            return None;
        }
        let mut padding_begin = [0; 2];
        for (axis, padding) in padding_begin.iter_mut().enumerate() {
            let reach = self.dilation[axis] * (self.kernel[axis] - 1);
            let (size, outs) = match axis {
                0 => (self.height, self.out_height),
                _ => (self.width, self.out_width),
            };
            let begin = self.padding_begin[axis];
            // At stride 1, outs = size + begin + end - reach.
            let end = (outs + reach).checked_sub(size + begin)?;
            reach.checked_sub(end)?;
            *padding = reach.checked_sub(begin)?;
        }
        Some(ConvGeometry {
            batch: self.batch,
            groups: self.groups,
            channels_in: self.channels_out,
            height: self.out_height,
            width: self.out_width,
            channels_out: self.channels_in,
            kernel: self.kernel,
            stride: [1, 1],
            padding_begin,
            dilation: self.dilation,
            out_height: self.height,
            out_width: self.width,
        })
    }

    /// Input index along `axis` of output position `o` at kernel offset `k` (inside the image).
    fn input_index(&self, axis: usize, o: usize, k: usize) -> usize {
        o * self.stride[axis] + k * self.dilation[axis] - self.padding_begin[axis]
    }
}

/// Fills `col` (`[C_in·kh·kw, OH·OW]`, row-major) with the windows of one `[C_in, H, W]` image.
fn im2col<T: ConvElement>(g: &ConvGeometry, image: &[T], col: &mut [T]) {
    let pixels = g.out_pixels();
    for ci in 0..g.channels_in {
        let plane = &image[ci * g.in_pixels()..(ci + 1) * g.in_pixels()];
        for ky in 0..g.kernel[0] {
            let (y0, y1) = g.valid_outputs(0, ky);
            for kx in 0..g.kernel[1] {
                let (x0, x1) = g.valid_outputs(1, kx);
                let row = (ci * g.kernel[0] + ky) * g.kernel[1] + kx;
                let row = &mut col[row * pixels..(row + 1) * pixels];
                for (oy, out_row) in row.chunks_exact_mut(g.out_width).enumerate() {
                    if oy < y0 || oy >= y1 || x0 >= x1 {
                        out_row.fill(T::zero());
                        continue;
                    }
                    let iy = g.input_index(0, oy, ky);
                    let in_row = &plane[iy * g.width..(iy + 1) * g.width];
                    out_row[..x0].fill(T::zero());
                    out_row[x1..].fill(T::zero());
                    let ix0 = g.input_index(1, x0, kx);
                    if g.stride[1] == 1 {
                        out_row[x0..x1].copy_from_slice(&in_row[ix0..ix0 + (x1 - x0)]);
                    } else {
                        let source = in_row[ix0..].iter().step_by(g.stride[1]);
                        for (dst, src) in out_row[x0..x1].iter_mut().zip(source) {
                            *dst = *src;
                        }
                    }
                }
            }
        }
    }
}

/// Adds the columns of `col` (`[C_in·kh·kw, OH·OW]`) back onto one `[C_in, H, W]` image
/// gradient: the adjoint of [im2col].
fn col2im<T: ConvElement>(g: &ConvGeometry, col: &[T], image: &mut [T]) {
    let pixels = g.out_pixels();
    for ci in 0..g.channels_in {
        let plane = &mut image[ci * g.in_pixels()..(ci + 1) * g.in_pixels()];
        for ky in 0..g.kernel[0] {
            let (y0, y1) = g.valid_outputs(0, ky);
            for kx in 0..g.kernel[1] {
                let (x0, x1) = g.valid_outputs(1, kx);
                if x0 >= x1 {
                    continue;
                }
                let row = (ci * g.kernel[0] + ky) * g.kernel[1] + kx;
                let row = &col[row * pixels..(row + 1) * pixels];
                let ix0 = g.input_index(1, x0, kx);
                for oy in y0..y1 {
                    let iy = g.input_index(0, oy, ky);
                    let src = &row[oy * g.out_width + x0..oy * g.out_width + x1];
                    let dst = &mut plane[iy * g.width..(iy + 1) * g.width];
                    if g.stride[1] == 1 {
                        for (d, s) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                            *d += *s;
                        }
                    } else {
                        for (d, s) in dst[ix0..].iter_mut().step_by(g.stride[1]).zip(src) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }
}

/// A row-major matrix, or the transpose of one, for [matmul].
#[derive(Clone, Copy)]
struct MatrixView<'a, T> {
    data: &'a [T],
    row_stride: isize,
    col_stride: isize,
}

impl<'a, T> MatrixView<'a, T> {
    fn row_major(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    fn transposed(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: cols as isize,
        }
    }

    /// Elements the view reaches as an `rows x cols` matrix.
    fn reach(&self, rows: usize, cols: usize) -> usize {
        (rows - 1) * self.row_stride as usize + (cols - 1) * self.col_stride as usize + 1
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, `dst` row-major (or column-major when
/// `dst_column_major`); accumulates when `accumulate`.
///
/// gemm computes column-major destinations from column-major left operands without copying
/// them; any other left operand is first packed (copied) into panels, which costs as much as
/// the product itself when `n` is small. The callers pick their operands accordingly.
#[allow(clippy::too_many_arguments)]
fn matmul<T: ConvElement>(
    dst: &mut [T],
    dst_column_major: bool,
    lhs: MatrixView<'_, T>,
    rhs: MatrixView<'_, T>,
    [m, n, k]: [usize; 3],
    accumulate: bool,
    parallel: bool,
) {
    assert!(m > 0 && n > 0 && k > 0, "matmul: empty operand");
    assert!(dst.len() >= m * n, "matmul: destination too small");
    assert!(lhs.data.len() >= lhs.reach(m, k), "matmul: lhs too small");
    assert!(rhs.data.len() >= rhs.reach(k, n), "matmul: rhs too small");
    #[cfg(feature = "rayon")]
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    #[cfg(not(feature = "rayon"))]
    let parallelism = {
        let _ = parallel;
        gemm::Parallelism::None
    };
    let (dst_rs, dst_cs) = if dst_column_major {
        (1, m as isize)
    } else {
        (n as isize, 1)
    };
    // SAFETY: the asserts above keep every index the strides reach inside the slices, and
    // `dst` is borrowed mutably, so nothing else reads or writes it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs,
            dst_rs,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride,
            lhs.row_stride,
            rhs.data.as_ptr(),
            rhs.col_stride,
            rhs.row_stride,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

fn into_tensor<T: ConvElement>(data: Vec<T>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(shape.to_vec())),
        T::dtype(),
    )
}

/// Whether the per-sample loop leaves threads idle, so that the GEMMs should split instead.
fn gemm_should_split(tasks: usize) -> bool {
    #[cfg(feature = "rayon")]
    {
        tasks < rayon::current_num_threads()
    }
    #[cfg(not(feature = "rayon"))]
    {
        let _ = tasks;
        false
    }
}

/// A buffer of `len` elements whose memory is not cleared first: for outputs and scratch that
/// every caller writes in full before reading, which saves a memset of each per step (5% of a
/// ResNet-20 training step on Flex, `perf record`). The scratch of [for_each_chunk] is one:
/// im2col, the transposed columns, a GEMM without accumulation and the shifted copies all
/// overwrite what they later read.
#[allow(unsafe_code, clippy::uninit_vec)]
pub(super) fn unfilled<T: ConvElement>(len: usize) -> Vec<T> {
    let mut buffer = Vec::with_capacity(len);
    // SAFETY: `T: Pod`, so any bits are a valid value, and every caller writes each element
    // before reading it (see the call sites), as burn-flex's mask kernels do with their outputs.
    unsafe { buffer.set_len(len) };
    buffer
}

/// Runs `body(index, chunk, scratch)` over the `per_item`-sized chunks of `output`, in parallel
/// where possible, with a `scratch_len` buffer per worker.
fn for_each_chunk<T: ConvElement, F>(output: &mut [T], per_item: usize, scratch_len: usize, body: F)
where
    F: Fn(usize, &mut [T], &mut Vec<T>) + Send + Sync,
{
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        output.par_chunks_mut(per_item).enumerate().for_each_init(
            || unfilled::<T>(scratch_len),
            |scratch, (i, chunk)| body(i, chunk, scratch),
        );
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut scratch = unfilled::<T>(scratch_len);
        for (i, chunk) in output.chunks_mut(per_item).enumerate() {
            body(i, chunk, &mut scratch);
        }
    }
}

/// The im2col matrix of one group's image: the image itself for pointwise kernels.
fn columns<'a, T: ConvElement>(g: &ConvGeometry, image: &'a [T], scratch: &'a mut [T]) -> &'a [T] {
    if g.is_pointwise() {
        image
    } else {
        im2col(g, image, scratch);
        scratch
    }
}

fn scratch_len(g: &ConvGeometry) -> usize {
    if g.is_pointwise() {
        0
    } else {
        g.col_rows() * g.out_pixels()
    }
}

/// Adds `bias[c]` to every pixel of output plane `c` of one sample.
fn add_bias<T: ConvElement>(out: &mut [T], bias: Option<&[T]>, pixels: usize) {
    if let Some(bias) = bias {
        for (plane, &b) in out.chunks_exact_mut(pixels).zip(bias) {
            plane.iter_mut().for_each(|v| *v += b);
        }
    }
}

/// Forward convolution `y = conv2d(x, W) + b` in `T`; `g` must not be empty. Every kernel but
/// the pointwise one runs the direct kernels of [direct].
fn forward<T: ConvElement>(g: ConvGeometry, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    let (rows, pixels, c_out) = (g.col_rows(), g.out_pixels(), g.channels_out);
    let split = gemm_should_split(g.batch);
    #[cfg(feature = "simd")]
    if let Some(shifted_rows) = direct::ShiftedRows::new::<T>(&g) {
        return direct::conv2d(&g, &shifted_rows, x, w, bias);
    }
    let sample_in = g.groups * g.group_in();
    let mut output = vec![T::zero(); g.batch * g.groups * g.group_out()];
    for_each_chunk(
        &mut output,
        g.groups * g.group_out(),
        scratch_len(&g),
        |n, out, col| {
            let image = &x[n * sample_in..(n + 1) * sample_in];
            for (group, out) in out.chunks_exact_mut(g.group_out()).enumerate() {
                let image = &image[group * g.group_in()..(group + 1) * g.group_in()];
                let weight = &w[group * g.group_weight()..(group + 1) * g.group_weight()];
                let col = columns(&g, image, col);
                let (lhs, rhs) = (
                    MatrixView::row_major(weight, rows),
                    MatrixView::row_major(col, pixels),
                );
                matmul(out, false, lhs, rhs, [c_out, pixels, rows], false, split);
            }
            add_bias(out, bias, pixels);
        },
    );
    output
}

/// `W'` of [ConvGeometry::output_grad_as_input]: per group `[C_in, C_out, kh, kw]`, each kernel
/// reversed in its flattened `kh·kw` order, which is the rotation by 180°.
fn flipped_transposed<T: ConvElement>(g: &ConvGeometry, w: &[T]) -> Vec<T> {
    let taps = g.kernel[0] * g.kernel[1];
    let mut flipped = Vec::with_capacity(w.len());
    for group in 0..g.groups {
        for ci in 0..g.channels_in {
            for co in 0..g.channels_out {
                let start = ((group * g.channels_out + co) * g.channels_in + ci) * taps;
                flipped.extend(w[start..start + taps].iter().rev().copied());
            }
        }
    }
    flipped
}

/// Input gradient in `T`, per sample; `g` must not be empty. At stride 1 a forward convolution
/// of `dy` ([ConvGeometry::output_grad_as_input]): one GEMM with `C_out·kh·kw` terms per output
/// instead of `C_out`, and no scatter-add of the columns. Otherwise `dx = col2im(Wᵀ · dy)`.
fn x_backward<T: ConvElement>(g: ConvGeometry, w: &[T], dy: &[T]) -> Vec<T> {
    if let Some(as_forward) = g.output_grad_as_input() {
        return forward(as_forward, dy, &flipped_transposed(&g, w), None);
    }
    let (rows, pixels, c_out) = (g.col_rows(), g.out_pixels(), g.channels_out);
    let split = gemm_should_split(g.batch);
    let sample_out = g.groups * g.group_out();
    let mut input_grad = vec![T::zero(); g.batch * g.groups * g.group_in()];
    for_each_chunk(
        &mut input_grad,
        g.groups * g.group_in(),
        scratch_len(&g),
        |n, dx, col| {
            let dy = &dy[n * sample_out..(n + 1) * sample_out];
            for (group, dx) in dx.chunks_exact_mut(g.group_in()).enumerate() {
                let dy = &dy[group * g.group_out()..(group + 1) * g.group_out()];
                let weight = &w[group * g.group_weight()..(group + 1) * g.group_weight()];
                // Wᵀ is [rows, C_out]: the transpose of the row-major [C_out, rows] weight.
                let (lhs, rhs) = (
                    MatrixView::transposed(weight, rows),
                    MatrixView::row_major(dy, pixels),
                );
                if g.is_pointwise() {
                    matmul(dx, false, lhs, rhs, [rows, pixels, c_out], false, split);
                } else {
                    matmul(col, false, lhs, rhs, [rows, pixels, c_out], false, split);
                    col2im(&g, col, dx);
                }
            }
        },
    );
    input_grad
}

/// `colᵀ` (`[OH·OW, C_in·kh·kw]`) of a row-major `col` (`[C_in·kh·kw, OH·OW]`), in 16 x 16
/// tiles.
fn transpose_into<T: ConvElement>(col: &[T], rows: usize, pixels: usize, col_t: &mut [T]) {
    const TILE: usize = 16;
    for r0 in (0..rows).step_by(TILE) {
        for p0 in (0..pixels).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                let source = &col[r * pixels..(r + 1) * pixels];
                for p in p0..(p0 + TILE).min(pixels) {
                    col_t[p * rows + r] = source[p];
                }
            }
        }
    }
}

/// Weight gradient `dW = Σ_n dy_n · im2col(x_n)ᵀ` in `T`, summed over fixed chunks of
/// [WEIGHT_GRAD_CHUNK] samples whose partial sums are then added in order; `g` must not be
/// empty.
///
/// Computed as `dWᵀ = im2col(x_n) · dy_nᵀ` into a column-major `dWᵀ` (= row-major `dW`), with
/// `im2col(x_n)` stored transposed so that gemm reads it in place instead of packing it.
fn weight_backward<T: ConvElement>(g: ConvGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    let (rows, pixels, c_out) = (g.col_rows(), g.out_pixels(), g.channels_out);
    let chunks = g.batch.div_ceil(WEIGHT_GRAD_CHUNK);
    let split = gemm_should_split(chunks);
    let (sample_in, sample_out) = (g.groups * g.group_in(), g.groups * g.group_out());
    let size = g.groups * g.group_weight();
    let col_len = rows * pixels;

    #[cfg(feature = "simd")]
    if let Some(shifted_rows) = direct::ShiftedRows::for_weight_grad::<T>(&g) {
        let partials = direct::conv2d_weight_grad(&g, &shifted_rows, x, dy);
        return sum_partials(partials, size);
    }

    let mut partials = vec![T::zero(); chunks * size];
    for_each_chunk(
        &mut partials,
        size,
        scratch_len(&g) + col_len,
        |chunk, partial, scratch| {
            let (col, col_t) = scratch.split_at_mut(scratch_len(&g));
            let first = chunk * WEIGHT_GRAD_CHUNK;
            for n in first..(first + WEIGHT_GRAD_CHUNK).min(g.batch) {
                let image = &x[n * sample_in..(n + 1) * sample_in];
                let dy = &dy[n * sample_out..(n + 1) * sample_out];
                for (group, dw) in partial.chunks_exact_mut(g.group_weight()).enumerate() {
                    let image = &image[group * g.group_in()..(group + 1) * g.group_in()];
                    let dy = &dy[group * g.group_out()..(group + 1) * g.group_out()];
                    transpose_into(columns(&g, image, col), rows, pixels, col_t);
                    // im2col(x_n) as a column-major [rows, pixels] matrix, dy_nᵀ as a column-major
                    // [pixels, C_out] one, into dWᵀ column-major [rows, C_out].
                    let lhs = MatrixView::transposed(col_t, rows);
                    let rhs = MatrixView::transposed(dy, pixels);
                    matmul(dw, true, lhs, rhs, [rows, c_out, pixels], n > first, split);
                }
            }
        },
    );
    sum_partials(partials, size)
}

/// The first `size` elements plus every later `size`-element partial, in order.
fn sum_partials<T: ConvElement>(mut partials: Vec<T>, size: usize) -> Vec<T> {
    let (total, rest) = partials.split_at_mut(size);
    for partial in rest.chunks_exact(size) {
        total.iter_mut().zip(partial).for_each(|(t, &p)| *t += p);
    }
    partials.truncate(size);
    partials
}

/// Runs `kernel` on the tensors' data in their own type (f32, f64) or in f32 (f16, bf16), and
/// returns the result as a tensor of `shape` in the inputs' type.
fn dispatch(
    name: &str,
    inputs: &[&FlexTensor],
    shape: [usize; 4],
    kernel_f32: impl Fn(&[&[f32]]) -> Vec<f32>,
    kernel_f64: impl Fn(&[&[f64]]) -> Vec<f64>,
) -> FlexTensor {
    let dtype = inputs[0].dtype();
    let contiguous: Vec<FlexTensor> = match dtype {
        DType::F32 | DType::F64 => inputs.iter().map(|t| t.to_contiguous()).collect(),
        DType::F16 => inputs
            .iter()
            .map(|t| cast_to_f32((*t).clone(), f16::to_f32))
            .collect(),
        DType::BF16 => inputs
            .iter()
            .map(|t| cast_to_f32((*t).clone(), bf16::to_f32))
            .collect(),
        other => panic!("{name}: unsupported dtype {other:?}"),
    };
    if dtype == DType::F64 {
        let data: Vec<&[f64]> = contiguous.iter().map(|t| t.storage()).collect();
        return into_tensor(kernel_f64(&data), shape);
    }
    let data: Vec<&[f32]> = contiguous.iter().map(|t| t.storage()).collect();
    let result = into_tensor(kernel_f32(&data), shape);
    match dtype {
        DType::F16 => cast_from_f32(result, f16::from_f32),
        DType::BF16 => cast_from_f32(result, bf16::from_f32),
        _ => result,
    }
}

fn zeros_like_dtype(shape: [usize; 4], dtype: DType) -> FlexTensor {
    let f32_zeros = into_tensor(vec![0.0f32; shape.iter().product()], shape);
    match dtype {
        DType::F64 => into_tensor(vec![0.0f64; shape.iter().product()], shape),
        DType::F16 => cast_from_f32(f32_zeros, f16::from_f32),
        DType::BF16 => cast_from_f32(f32_zeros, bf16::from_f32),
        _ => f32_zeros,
    }
}

/// `conv2d(x, W) + b`; `None` when the convolution is empty (the caller's path handles it).
pub(crate) fn conv2d(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    let g = ConvGeometry::new(&x.shape(), &weight.shape(), options);
    if g.is_empty() {
        return None;
    }
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    Some(dispatch(
        "conv2d",
        &inputs,
        g.output_shape(),
        |d| forward(g, d[0], d[1], d.get(2).copied()),
        |d| forward(g, d[0], d[1], d.get(2).copied()),
    ))
}

/// Gradient of `conv2d(x, W)` with respect to `x`, given the output gradient.
pub(crate) fn conv2d_x_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let g = ConvGeometry::new(&x.shape(), &weight.shape(), options);
    if g.is_empty() {
        return zeros_like_dtype(g.input_shape(), x.dtype());
    }
    dispatch(
        "conv2d_x_backward",
        &[weight, output_grad],
        g.input_shape(),
        |d| x_backward(g, d[0], d[1]),
        |d| x_backward(g, d[0], d[1]),
    )
}

/// Gradient of `conv2d(x, W)` with respect to `W`, given the output gradient.
pub(crate) fn conv2d_weight_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let g = ConvGeometry::new(&x.shape(), &weight.shape(), options);
    if g.is_empty() {
        return zeros_like_dtype(g.weight_shape(), x.dtype());
    }
    dispatch(
        "conv2d_weight_backward",
        &[x, output_grad],
        g.weight_shape(),
        |d| weight_backward(g, d[0], d[1]),
        |d| weight_backward(g, d[0], d[1]),
    )
}

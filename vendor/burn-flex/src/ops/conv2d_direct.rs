//! Convolution without im2col: a register-blocked SIMD product that reads its operand rows
//! straight out of shifted copies of the padded image, one per kernel column and row phase.
//!
//! The window row of kernel tap `(ci, ky, kx)` at output pixel `p = oy·OW + ox` is
//! `x[ci, oy·s + ky·d - pad_top, ox·s + kx·d - pad_left]` (stride `s`, dilation `d`). Write
//! `ky·d = q·s + φ` (`φ < s`, the row phase). One copy per kernel column and phase,
//! `shifted[ci, kx, φ][oy', ox] = x[ci, oy'·s + φ - pad_top, ox·s + kx·d - pad_left]` (zero
//! outside), turns that row into the contiguous run `shifted[ci, kx, φ][p + q·OW ..]`: at stride
//! 1 the im2col matrix becomes `kw` copies of the image instead of `kh·kw`, and every output
//! pixel of a sample, across output rows, is one flat index. The product
//! `y[co, p] = Σ_r W[co, r] · row_r[p]` then runs as a GEMM micro-kernel (Goto & van de Geijn,
//! "Anatomy of High-Performance Matrix Multiplication", 2008, §4: a register block of `CB`
//! output channels by `V` vectors of pixels, one FMA per weight and vector) whose right operand
//! rows are `shifted` at precomputed offsets.
//!
//! For a 3-wide kernel at stride 1 with "same" width (the usual 3x3 case) and rows a whole
//! number of vectors wide, there is a single copy per channel, whose rows are `OW + 1` wide:
//! a zero column, then the image row. Kernel columns 0, 1, 2 read it at column shifts -1, 0,
//! +1, and a shift past a row end lands on a zero column. A vector of pixels never crosses a
//! row, so its elements stay contiguous in the copy. That writes one copy instead of three.
//!
//! The weight gradient reads the same rows: `dW[co, r] = Σ_p dy[co, p] · row_r[p]`, a dot
//! product over the pixels, accumulated lane-wise over a fixed chunk of samples and reduced
//! across lanes once per chunk.
//!
//! Every output element is one fixed-order chain of fused multiply-adds, independent of the
//! thread count.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use macerator::{ReduceAdd, Simd, VAdd, VMulAdd, Vector, vload_unaligned, vstore_unaligned};

use super::{ConvElement, ConvGeometry, add_bias, for_each_chunk, unfilled};

/// The scalar types the direct kernels run in (f32 and f64).
pub(crate) trait DirectElement: VMulAdd + VAdd + ReduceAdd {}

impl DirectElement for f32 {}
impl DirectElement for f64 {}

/// Operand layout of one group's convolution of one sample.
#[derive(Clone, Debug)]
pub(super) struct ShiftedRows {
    /// Output pixels per row: `OW`.
    row_width: usize,
    /// Elements from one row of a copy to the next: `OW`, or `OW + 1` in the single-copy layout
    /// (module docs), whose rows start with a zero column.
    row_pitch: usize,
    /// Rows of each copy: `OH + ⌊d·(kh-1) / s⌋`.
    copy_rows: usize,
    /// The row phases `ky·d mod s` some kernel row has, ascending.
    phases: Vec<usize>,
    /// Output pixels `OH·OW` of one channel.
    pixels: usize,
    /// Offset of each im2col row `r = (ci·kh + ky)·kw + kx` in the shifted copies.
    offsets: Vec<usize>,
    /// Elements of the shifted copies, plus one block of slack that the last, partial pixel
    /// block reads (and whose results it discards).
    len: usize,
}

impl ShiftedRows {
    /// The forward kernel's layout for `g` and vectors of `T`, or `None` for pointwise kernels
    /// (whose image already is the im2col matrix).
    pub(super) fn new<T: DirectElement>(g: &ConvGeometry) -> Option<Self> {
        let single_copy = Self::single_copy_fits(g) && g.width % vector_lanes::<T>() == 0;
        Self::with_layout(g, single_copy)
    }

    /// The weight gradient's layout for `g` and `T`: the single copy where [weight_grad]'s
    /// outer-product kernel reads it (one element at a time) or the lane-wise kernel reads
    /// rows of at least two vectors, else one copy per kernel column (there the lane-wise
    /// kernel runs over a sample's pixels as one flat run, which measured faster than runs of
    /// one vector at 16x16), or `None` for pointwise kernels.
    pub(super) fn for_weight_grad<T: DirectElement>(g: &ConvGeometry) -> Option<Self> {
        let lanes = vector_lanes::<T>();
        let single_copy = Self::single_copy_fits(g)
            && (weight_grad_is_outer::<T>(g.channels_out) || g.width % (2 * lanes) == 0);
        Self::with_layout(g, single_copy)
    }

    /// Whether `g` is a 3-wide kernel at stride 1 with "same" width, which the single-copy
    /// layout (module docs) serves.
    fn single_copy_fits(g: &ConvGeometry) -> bool {
        g.kernel[1] == 3
            && g.stride == [1, 1]
            && g.dilation == [1, 1]
            && g.padding_begin[1] == 1
            && g.out_width == g.width
    }

    /// The layout for `g`: one copy per kernel column and row phase, or, for `single_copy`
    /// ([Self::single_copy_fits] must hold), one per channel with rows one zero column wider.
    fn with_layout(g: &ConvGeometry, single_copy: bool) -> Option<Self> {
        if g.is_pointwise() {
            return None;
        }
        let [kh, kw] = g.kernel;
        let (s, d) = (g.stride[0], g.dilation[0]);
        let copy_rows = g.out_height + d * (kh - 1) / s;
        let mut phases: Vec<usize> = (0..kh).map(|ky| ky * d % s).collect();
        phases.sort_unstable();
        phases.dedup();
        let width = g.out_width;
        let mut offsets = Vec::with_capacity(g.col_rows());
        if single_copy {
            let pitch = width + 1;
            let plane = copy_rows * pitch;
            for ci in 0..g.channels_in {
                for ky in 0..kh {
                    // column ox + kx - 1 of the image is element ox + kx of a copy row
                    offsets.extend((0..kw).map(|kx| ci * plane + ky * pitch + kx));
                }
            }
            // A block of pixels reads at most 64 elements from its first pixel on, which in
            // this layout spans at most ⌈64 / OW⌉ + 1 rows.
            let slack = (64 / width + 2) * pitch;
            return Some(Self {
                row_width: width,
                row_pitch: pitch,
                copy_rows,
                phases,
                pixels: g.out_pixels(),
                offsets,
                len: g.channels_in * plane + slack,
            });
        }
        let plane = copy_rows * width;
        for ci in 0..g.channels_in {
            for ky in 0..kh {
                let phase = phases.binary_search(&(ky * d % s)).unwrap_or(0);
                for kx in 0..kw {
                    let copy = (ci * kw + kx) * phases.len() + phase;
                    offsets.push(copy * plane + ky * d / s * g.out_width);
                }
            }
        }
        // A block of pixels reads at most 64 elements past a row start (4 vectors of 16 f32,
        // 3 of 16, 4 of 8 f64...): 64 elements of slack cover every block shape below.
        let len = g.channels_in * kw * phases.len() * plane + 64;
        Some(Self {
            row_width: width,
            row_pitch: width,
            copy_rows,
            phases,
            pixels: g.out_pixels(),
            offsets,
            len,
        })
    }

    /// Index in a copy of output pixel `p`'s element (at the copy's offset in [Self::offsets]).
    #[inline(always)]
    fn position(&self, p: usize) -> usize {
        (p / self.row_width) * self.row_pitch + p % self.row_width
    }

    /// Whether this is the single-copy layout (module docs).
    fn is_single_copy(&self) -> bool {
        self.row_pitch != self.row_width
    }

    /// Writes the shifted copies of one group's `[C_in, H, W]` image into `shifted`, compiled
    /// for this machine's widest SIMD registers (its copies and gathers vectorise over them).
    pub(super) fn fill<T: ConvElement>(&self, g: &ConvGeometry, image: &[T], shifted: &mut [T]) {
        #[macerator::with_simd]
        fn fill_vectorised<S: Simd, T: ConvElement>(
            rows: &ShiftedRows,
            g: &ConvGeometry,
            image: &[T],
            shifted: &mut [T],
        ) {
            rows.fill_any(g, image, shifted)
        }
        fill_vectorised::<T>(self, g, image, shifted)
    }

    /// [Self::fill]'s body, inlined into its SIMD-compiled wrapper.
    #[inline(always)]
    fn fill_any<T: ConvElement>(&self, g: &ConvGeometry, image: &[T], shifted: &mut [T]) {
        let [_, kw] = g.kernel;
        if self.is_single_copy() {
            self.fill_single(g, image, shifted);
            return;
        }
        let plane = self.copy_rows * g.out_width;
        let mut copies = shifted.chunks_exact_mut(plane);
        for ci in 0..g.channels_in {
            let source = &image[ci * g.in_pixels()..(ci + 1) * g.in_pixels()];
            for kx in 0..kw {
                for &phase in &self.phases {
                    let copy = copies.next().expect("conv2d direct: scratch too small");
                    if g.stride == [1, 1] && g.out_width == g.width {
                        self.fill_plane(g, kx, source, copy);
                    } else {
                        self.fill_rows(g, kx, phase, source, copy);
                    }
                }
            }
        }
        shifted[self.len - 64..self.len].fill(T::zero());
    }

    /// The single-copy layout: per channel, `copy_rows` rows of a zero column followed by an
    /// image row (zeros above and below the image), then zeros to the end of `shifted`.
    #[inline(always)]
    fn fill_single<T: ConvElement>(&self, g: &ConvGeometry, image: &[T], shifted: &mut [T]) {
        let (width, pitch) = (self.row_width, self.row_pitch);
        let pad_top = g.padding_begin[0];
        let plane = self.copy_rows * pitch;
        let channels = image.chunks_exact(g.in_pixels());
        for (source, copy) in channels.zip(shifted.chunks_exact_mut(plane)) {
            for (y, row) in copy.chunks_exact_mut(pitch).enumerate() {
                row[0] = T::zero();
                match y.checked_sub(pad_top).filter(|&iy| iy < g.height) {
                    Some(iy) => copy_short(&mut row[1..], &source[iy * width..][..width]),
                    None => row[1..].fill(T::zero()),
                }
            }
        }
        shifted[g.channels_in * plane..self.len].fill(T::zero());
    }

    /// One copy where output and input rows are equally wide ("same" padding): the image
    /// shifted by `kx·d - pad_left` elements as one block, then zeros over the padding rows and
    /// over the columns that the shift carried across a row end.
    #[inline(always)]
    fn fill_plane<T: ConvElement>(
        &self,
        g: &ConvGeometry,
        kx: usize,
        source: &[T],
        copy: &mut [T],
    ) {
        let width = g.width;
        let shift = (kx * g.dilation[1]) as isize - g.padding_begin[1] as isize;
        let (top, image_end) = (
            g.padding_begin[0] * width,
            (g.padding_begin[0] + g.height) * width,
        );
        let magnitude = shift.unsigned_abs().min(width);
        let image = &mut copy[top..image_end];
        if shift >= 0 {
            let n = source.len() - magnitude;
            image[..n].copy_from_slice(&source[magnitude..]);
        } else {
            let n = source.len() - magnitude;
            image[magnitude..].copy_from_slice(&source[..n]);
        }
        let edge = if shift >= 0 {
            width - magnitude..width
        } else {
            0..magnitude
        };
        for row in image.chunks_exact_mut(width) {
            if edge.len() == 1 {
                // the usual 3x3 case, without a call to memset per row
                row[edge.start] = T::zero();
            } else {
                row[edge.clone()].fill(T::zero());
            }
        }
        copy[..top].fill(T::zero());
        copy[image_end..].fill(T::zero());
    }

    /// One copy, row by row (any stride and padding).
    #[inline(always)]
    fn fill_rows<T: ConvElement>(
        &self,
        g: &ConvGeometry,
        kx: usize,
        phase: usize,
        source: &[T],
        copy: &mut [T],
    ) {
        let pad_top = g.padding_begin[0] as isize;
        let (x0, x1) = g.valid_outputs(1, kx);
        let step = g.stride[1];
        for (q, row) in copy.chunks_exact_mut(g.out_width).enumerate() {
            let iy = (q * g.stride[0] + phase) as isize - pad_top;
            if iy < 0 || iy >= g.height as isize || x0 >= x1 {
                row.fill(T::zero());
                continue;
            }
            let in_row = &source[iy as usize * g.width..(iy as usize + 1) * g.width];
            let ix0 = g.input_index(1, x0, kx);
            row[..x0].fill(T::zero());
            let n = x1 - x0;
            if step == 1 {
                row[x0..x1].copy_from_slice(&in_row[ix0..ix0 + n]);
            } else if step == 2 {
                // every other element, as whole pairs (which the compiler vectorises with
                // shuffles) and then the last one
                let pairs = in_row[ix0..ix0 + 2 * (n - 1)].chunks_exact(2);
                for (o, pair) in row[x0..x1 - 1].iter_mut().zip(pairs) {
                    *o = pair[0];
                }
                row[x1 - 1] = in_row[ix0 + 2 * (n - 1)];
            } else {
                let gathered = in_row[ix0..].iter().step_by(step);
                row[x0..x1]
                    .iter_mut()
                    .zip(gathered)
                    .for_each(|(o, &v)| *o = v);
            }
            row[x1..].fill(T::zero());
        }
    }
}

/// `out.copy_from_slice(source)` for the short rows of an image: in blocks of 16 elements that
/// the compiler copies with vector moves, where `copy_from_slice` calls `memmove` per row.
#[inline(always)]
fn copy_short<T: Copy>(out: &mut [T], source: &[T]) {
    assert_eq!(
        out.len(),
        source.len(),
        "conv2d direct: rows of different widths"
    );
    let mut blocks = out.chunks_exact_mut(16);
    let mut sources = source.chunks_exact(16);
    for (out, source) in (&mut blocks).zip(&mut sources) {
        let out: &mut [T; 16] = out.try_into().expect("a block of 16");
        *out = source.try_into().expect("a block of 16");
    }
    for (out, &value) in blocks.into_remainder().iter_mut().zip(sources.remainder()) {
        *out = value;
    }
}

/// The `[C_in, H, W]` image of `unit = n·groups + group` in an `[N, groups·C_in, H, W]` input.
fn unit_image<'a, T>(g: &ConvGeometry, x: &'a [T], unit: usize) -> &'a [T] {
    &x[unit * g.group_in()..][..g.group_in()]
}

/// Output channels per task when `units` independent products share the threads: all of them
/// where there are at least as many units as threads, else a block-aligned share so that every
/// thread gets work (results do not depend on it, see [forward] and [weight_grad]). `block`:
/// the forward kernel's channels per block, which a task's first channel must be a multiple of.
fn channels_per_task(units: usize, channels_out: usize, block: usize) -> usize {
    #[cfg(feature = "rayon")]
    let threads = rayon::current_num_threads();
    #[cfg(not(feature = "rayon"))]
    let threads = 1;
    if units >= threads {
        return channels_out;
    }
    let tasks = threads.div_ceil(units.max(1));
    channels_out.div_ceil(tasks).next_multiple_of(block)
}

/// The shifted copies of every sample and group, `[N·groups][ShiftedRows::len]`.
fn fill_all<T: ConvElement>(g: &ConvGeometry, rows: &ShiftedRows, x: &[T]) -> Vec<T> {
    // Unfilled: [ShiftedRows::fill] writes every element of each unit's copies.
    let mut shifted = unfilled(g.batch * g.groups * rows.len);
    for_each_chunk(&mut shifted, rows.len, 0, |unit, copy, _| {
        rows.fill(g, unit_image(g, x, unit), copy)
    });
    shifted
}

/// Samples whose weight-gradient terms one register block sums before its lanes are reduced:
/// enough for 4 KiB of pixels per kernel row (one sample from 32x32 up in f32), so that the
/// reduction is amortised over at least 64 vectors and a block's rows of all the chunk's samples
/// stay in L1. Fixed by the geometry, so the summation order does not depend on the threads.
pub(super) fn samples_per_chunk<T>(g: &ConvGeometry) -> usize {
    let row_bytes = g.out_pixels() * core::mem::size_of::<T>();
    (4096 / row_bytes.max(1)).clamp(1, 64)
}

/// `y = conv2d(x, W) + b` for a geometry [ShiftedRows::new] accepts. One task per sample and
/// group fills its copies into its own scratch; with fewer of those than threads, the copies
/// are made first and each one's output channels are split between tasks.
pub(super) fn conv2d<T: ConvElement>(
    g: &ConvGeometry,
    rows: &ShiftedRows,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let (c_out, pixels, units) = (g.channels_out, g.out_pixels(), g.batch * g.groups);
    let block = forward_block::<T>(pixels).0;
    let packed: Vec<Vec<T>> = w
        .chunks_exact(g.group_weight())
        .map(|weight| pack_weights(weight, c_out, g.col_rows(), block))
        .collect();
    let unit_bias = |unit: usize, channels: Range<usize>| {
        bias.map(|b| &b[(unit % g.groups) * c_out..][channels])
    };
    // Unfilled: [forward] writes every output channel of each unit (all of them in one task, or
    // a tiling of them between tasks).
    let mut output = unfilled(units * g.group_out());
    let task_channels = channels_per_task(units, c_out, block);
    if task_channels >= c_out {
        for_each_chunk(
            &mut output,
            g.group_out(),
            rows.len,
            |unit, out, shifted| {
                rows.fill(g, unit_image(g, x, unit), shifted);
                forward(rows, &packed[unit % g.groups], shifted, out, 0..c_out);
                add_bias(out, unit_bias(unit, 0..c_out), pixels);
            },
        );
    } else {
        let shifted = fill_all(g, rows, x);
        for_each_chunk(&mut output, g.group_out(), 0, |unit, out, _| {
            let shifted = &shifted[unit * rows.len..][..rows.len];
            for_each_chunk(out, task_channels * pixels, 0, |task, out, _| {
                let channels = task * task_channels..((task + 1) * task_channels).min(c_out);
                forward(
                    rows,
                    &packed[unit % g.groups],
                    shifted,
                    out,
                    channels.clone(),
                );
                add_bias(out, unit_bias(unit, channels), pixels);
            });
        });
    }
    output
}

/// `dW = Σ_n dy_n · im2col(x_n)ᵀ` for a geometry [ShiftedRows::new] accepts, as fixed chunks of
/// [samples_per_chunk] samples whose partial sums the caller adds in order (`[chunks][groups·
/// C_out·C_in·kh·kw]`). With fewer chunks·groups than threads, the copies are made first and each
/// partial's output channels are split between tasks.
pub(super) fn conv2d_weight_grad<T: ConvElement>(
    g: &ConvGeometry,
    rows: &ShiftedRows,
    x: &[T],
    dy: &[T],
) -> Vec<T> {
    let (c_out, r_count, len) = (g.channels_out, g.col_rows(), rows.len);
    let per_chunk = samples_per_chunk::<T>(g);
    let chunks = g.batch.div_ceil(per_chunk);
    let samples = |chunk: usize| chunk * per_chunk..((chunk + 1) * per_chunk).min(g.batch);
    let gradients = |chunk: usize, group: usize| -> Vec<&[T]> {
        samples(chunk)
            .map(|n| &dy[(n * g.groups + group) * g.group_out()..][..g.group_out()])
            .collect()
    };
    // Unfilled: [weight_grad] writes (does not accumulate) every channel of each partial.
    let mut partials = unfilled(chunks * g.groups * g.group_weight());
    let task_channels = channels_per_task(chunks * g.groups, c_out, 1);
    if task_channels >= c_out {
        for_each_chunk(
            &mut partials,
            g.group_weight(),
            per_chunk * len,
            |index, dw, scratch| {
                let (chunk, group) = (index / g.groups, index % g.groups);
                let mut copies = Vec::with_capacity(per_chunk);
                for (n, copy) in samples(chunk).zip(scratch.chunks_exact_mut(len)) {
                    rows.fill(g, unit_image(g, x, n * g.groups + group), copy);
                    copies.push(&*copy);
                }
                weight_grad(rows, &copies, &gradients(chunk, group), dw, 0..c_out);
            },
        );
    } else {
        let shifted = fill_all(g, rows, x);
        for_each_chunk(&mut partials, g.group_weight(), 0, |index, dw, _| {
            let (chunk, group) = (index / g.groups, index % g.groups);
            let copies: Vec<&[T]> = samples(chunk)
                .map(|n| &shifted[(n * g.groups + group) * len..][..len])
                .collect();
            let gradients = gradients(chunk, group);
            for_each_chunk(dw, task_channels * r_count, 0, |task, dw, _| {
                let channels = task * task_channels..((task + 1) * task_channels).min(c_out);
                weight_grad(rows, &copies, &gradients, dw, channels);
            });
        });
    }
    partials
}

/// Weights packed for the forward kernel: per block of `block` output channels, `[r][c]`, zero
/// for channels past `C_out`.
pub(super) fn pack_weights<T: ConvElement>(
    weight: &[T],
    channels_out: usize,
    rows: usize,
    block: usize,
) -> Vec<T> {
    let blocks = channels_out.div_ceil(block);
    let mut packed = vec![T::zero(); blocks * rows * block];
    for co in 0..channels_out {
        let (b, c) = (co / block, co % block);
        for r in 0..rows {
            packed[(b * rows + r) * block + c] = weight[co * rows + r];
        }
    }
    packed
}

/// Lanes of this machine's widest SIMD registers for `T`.
fn vector_lanes<T: DirectElement>() -> usize {
    #[macerator::with_simd]
    fn lanes<S: Simd, T: DirectElement>(_marker: core::marker::PhantomData<T>) -> usize {
        T::lanes::<S>()
    }
    lanes::<T>(core::marker::PhantomData)
}

/// Whether this machine's widest SIMD registers for `T` are 64 bytes (AVX-512: 32 of them).
fn wide_registers<T: DirectElement>() -> bool {
    vector_lanes::<T>() * core::mem::size_of::<T>() >= 64
}

/// The forward kernel's register block for `T` and images of `pixels` output pixels: output
/// channels by vectors of pixels. On 64-byte registers (32 of them) 8 channels by 3 vectors
/// where that wastes little of the last block of pixels (from 32x32 in f32), else 8 by 2 (4 by
/// 4 and 6 by 4 measured no faster on 16x16 and 8x8); on narrower ones (16 registers) 4 by 2.
pub(super) fn forward_block<T: DirectElement>(pixels: usize) -> (usize, usize) {
    if !wide_registers::<T>() {
        return (4, 2);
    }
    let lanes = 64 / core::mem::size_of::<T>();
    if pixels >= 48 * lanes { (8, 3) } else { (8, 2) }
}

/// `out[co, p] = Σ_r W[co, r] · row_r[p]` for the output channels `channels` of one sample's
/// group: `out` is `[channels.len(), OH·OW]`, `packed` comes from [pack_weights], `shifted` from
/// [ShiftedRows::fill]. Each output element is the same chain whatever the channel range.
pub(super) fn forward<T: DirectElement + ConvElement>(
    rows: &ShiftedRows,
    packed: &[T],
    shifted: &[T],
    out: &mut [T],
    channels: Range<usize>,
) {
    assert!(
        shifted.len() >= rows.len,
        "conv2d direct: scratch too small"
    );
    if channels.is_empty() {
        return;
    }
    match forward_block::<T>(rows.pixels) {
        (8, 3) => forward_blocks::<T, 8, 3>(rows, packed, shifted, out, channels),
        (8, 2) => forward_blocks::<T, 8, 2>(rows, packed, shifted, out, channels),
        _ => forward_blocks::<T, 4, 2>(rows, packed, shifted, out, channels),
    }
}

#[macerator::with_simd]
fn forward_blocks<S: Simd, T: DirectElement + ConvElement, const CB: usize, const V: usize>(
    rows: &ShiftedRows,
    packed: &[T],
    shifted: &[T],
    out: &mut [T],
    channels: Range<usize>,
) {
    let lanes = T::lanes::<S>();
    let pixels = rows.pixels;
    assert!(
        out.len() == channels.len() * pixels,
        "conv2d direct: output of another size"
    );
    let width = V * lanes;
    let r_count = rows.offsets.len();
    assert!(width <= 64, "conv2d direct: block wider than the slack");
    assert!(
        channels.start % CB == 0,
        "conv2d direct: channel range not block-aligned"
    );
    let max_offset = rows.offsets.iter().copied().max().unwrap_or(0);
    let last_vector = pixels.next_multiple_of(width) - lanes;
    assert!(max_offset + rows.position(last_vector) + lanes <= rows.len);
    assert!(rows.row_pitch == rows.row_width || rows.row_width % lanes == 0);
    assert!(packed.len() >= channels.end.div_ceil(CB) * r_count * CB);
    let mut spill = [T::zero(); 64];
    for co0 in channels.clone().step_by(CB) {
        let weights = &packed[(co0 / CB) * r_count * CB..][..r_count * CB];
        let valid = CB.min(channels.end - co0);
        for p0 in (0..pixels).step_by(width) {
            let zero = T::zero().splat::<S>();
            let mut acc = [[zero; V]; CB];
            // Each vector of pixels lies in one row of the copies (asserted above).
            let at: [usize; V] = core::array::from_fn(|v| rows.position(p0 + v * lanes));
            for (&offset, w) in rows.offsets.iter().zip(weights.chunks_exact(CB)) {
                // SAFETY: offset + at[v] + lanes <= max_offset + position(last_vector) + lanes
                // <= rows.len <= shifted.len() (asserted above; position is increasing).
                let x: [Vector<S, T>; V] = core::array::from_fn(|v| unsafe {
                    vload_unaligned(shifted.as_ptr().add(offset + at[v]))
                });
                for c in 0..CB {
                    let wc = w[c].splat::<S>();
                    for v in 0..V {
                        acc[c][v] = x[v].mul_add(wc, acc[c][v]);
                    }
                }
            }
            let whole = p0 + width <= pixels;
            for (c, acc) in acc.iter().enumerate().take(valid) {
                let row = &mut out[(co0 - channels.start + c) * pixels..][..pixels];
                if whole {
                    for (v, &value) in acc.iter().enumerate() {
                        // SAFETY: p0 + (v + 1)·lanes <= p0 + width <= pixels = row.len().
                        unsafe { vstore_unaligned(row.as_mut_ptr().add(p0 + v * lanes), value) };
                    }
                } else {
                    for (v, &value) in acc.iter().enumerate() {
                        // SAFETY: (v + 1)·lanes <= width <= 64 = spill.len().
                        unsafe { vstore_unaligned(spill.as_mut_ptr().add(v * lanes), value) };
                    }
                    let n = pixels - p0;
                    row[p0..].copy_from_slice(&spill[..n]);
                }
            }
        }
    }
}

/// `dW[co, r] = Σ_n Σ_p dy_n[co, p] · row_{r,n}[p]` for the output channels `channels` over the
/// samples of one chunk, written (not accumulated) into `dw` (`[channels.len(), C_in·kh·kw]`).
/// `shifted` holds the samples' shifted copies ([ShiftedRows::fill]), `dy` their `[C_out, OH·OW]`
/// output gradients. Each element is the same chain whatever the range.
pub(super) fn weight_grad<T: DirectElement + ConvElement>(
    rows: &ShiftedRows,
    shifted: &[&[T]],
    dy: &[&[T]],
    dw: &mut [T],
    channels: Range<usize>,
) {
    assert!(
        shifted.len() == dy.len(),
        "conv2d direct: {} copies for {} gradients",
        shifted.len(),
        dy.len()
    );
    if channels.is_empty() || dy.is_empty() {
        return;
    }
    // The kernel follows from the convolution's output channels (not the task's share), so
    // every element's chain is the same whatever the split.
    let channels_out = dy[0].len() / rows.pixels.max(1);
    let lanes = vector_lanes::<T>();
    if weight_grad_is_outer::<T>(channels_out) {
        if channels.len() > 2 * lanes {
            weight_grad_outer::<T, 4, 6>(rows, shifted, dy, dw, channels)
        } else {
            weight_grad_outer::<T, 2, 12>(rows, shifted, dy, dw, channels)
        }
    } else if wide_registers::<T>() {
        weight_grad_blocks::<T, 4, 4>(rows, shifted, dy, dw, channels)
    } else {
        weight_grad_blocks::<T, 2, 4>(rows, shifted, dy, dw, channels)
    }
}

/// Whether [weight_grad] runs [weight_grad_outer] for `channels_out` output channels: with
/// 64-byte registers and at least two vectors of channels.
fn weight_grad_is_outer<T: DirectElement>(channels_out: usize) -> bool {
    wide_registers::<T>() && channels_out >= 2 * vector_lanes::<T>()
}

/// `dW[co, r] = Σ_n Σ_p dy_n[co, p] · row_{r,n}[p]` as outer products (Goto & van de Geijn,
/// 2008, §4, with channels as the vector axis): the output gradients of the chunk are first
/// transposed to `[n, p][co]`, then a register block of `RB` rows by `CV` vectors of channels
/// takes, per pixel, `CV` vectors of gradients and `RB` broadcast row elements. There is no
/// reduction across lanes, and each element is one chain over the samples and pixels in order,
/// whatever the block shape or channel range. For convolutions with at least two vectors of
/// output channels (the lane-wise dot products of [weight_grad_blocks] load two operands per
/// multiply-add there, this kernel under one).
#[macerator::with_simd]
fn weight_grad_outer<
    'a,
    S: Simd,
    T: DirectElement + ConvElement,
    const CV: usize,
    const RB: usize,
>(
    rows: &ShiftedRows,
    shifted: &[&'a [T]],
    dy: &[&'a [T]],
    dw: &mut [T],
    channels: Range<usize>,
) {
    let lanes = T::lanes::<S>();
    let block = CV * lanes;
    let (r_count, pixels) = (rows.offsets.len(), rows.pixels);
    let width = channels.len().next_multiple_of(block);
    let max_offset = rows.offsets.iter().copied().max().unwrap_or(0);
    assert!(max_offset + rows.position(pixels - 1) < rows.len);
    assert!(shifted.iter().all(|s| s.len() >= rows.len));
    assert!(dy.iter().all(|d| d.len() >= channels.end * pixels));
    assert!(dw.len() == channels.len() * r_count);
    // [n, p][c - channels.start], zero past the last channel; written in tiles of 16 pixels
    // so that both sides stay in L1.
    let mut transposed = unfilled::<T>(dy.len() * pixels * width);
    for (dy, out) in dy.iter().zip(transposed.chunks_exact_mut(pixels * width)) {
        for p0 in (0..pixels).step_by(16) {
            let tile = p0..(p0 + 16).min(pixels);
            for (c, co) in channels.clone().enumerate() {
                let source = &dy[co * pixels..][tile.clone()];
                for (p, &value) in tile.clone().zip(source) {
                    out[p * width + c] = value;
                }
            }
            for p in tile {
                out[p * width + channels.len()..(p + 1) * width].fill(T::zero());
            }
        }
    }
    // The running sums, `[r][c]`: a register block is loaded and stored around each sample, so
    // that the sample's transposed gradients stay in L1 across the row blocks (which does not
    // change any chain: loads and stores are exact).
    let mut sums = vec![T::zero(); r_count.next_multiple_of(RB) * width];
    for c0 in (0..width).step_by(block) {
        for (&sample, gradients) in shifted.iter().zip(transposed.chunks_exact(pixels * width)) {
            for r0 in (0..r_count).step_by(RB) {
                // rows past the end repeat the last row; their sums are discarded
                let offsets: [usize; RB] =
                    core::array::from_fn(|i| rows.offsets[(r0 + i).min(r_count - 1)]);
                let at = |i: usize, v: usize| (r0 + i) * width + c0 + v * lanes;
                // SAFETY: (r0 + RB)·width <= sums.len() and c0 + block <= width.
                let mut acc: [[Vector<S, T>; CV]; RB] = core::array::from_fn(|i| {
                    core::array::from_fn(|v| unsafe {
                        vload_unaligned(sums.as_ptr().add(at(i, v)))
                    })
                });
                for (oy, row_start) in (0..pixels).step_by(rows.row_width).enumerate() {
                    let row = row_start..(row_start + rows.row_width).min(pixels);
                    // position(p) along the row, without a division
                    for (p, position) in row.zip(oy * rows.row_pitch..) {
                        // SAFETY: (p + 1)·width <= gradients.len() and c0 + block <= width;
                        // offset + position(p) <= max_offset + position(pixels - 1) < rows.len
                        // <= sample.len() (asserted above).
                        let g: [Vector<S, T>; CV] = core::array::from_fn(|v| unsafe {
                            vload_unaligned(gradients.as_ptr().add(p * width + c0 + v * lanes))
                        });
                        for i in 0..RB {
                            let x = unsafe { *sample.get_unchecked(offsets[i] + position) };
                            let x = x.splat::<S>();
                            for v in 0..CV {
                                acc[i][v] = g[v].mul_add(x, acc[i][v]);
                            }
                        }
                    }
                }
                for (i, acc) in acc.iter().enumerate() {
                    for (v, &value) in acc.iter().enumerate() {
                        // SAFETY: as for the loads above.
                        unsafe { vstore_unaligned(sums.as_mut_ptr().add(at(i, v)), value) };
                    }
                }
            }
        }
    }
    for (c, dw) in dw.chunks_exact_mut(r_count).enumerate() {
        for (r, dw) in dw.iter_mut().enumerate() {
            *dw = sums[r * width + c];
        }
    }
}

#[macerator::with_simd]
fn weight_grad_blocks<
    'a,
    S: Simd,
    T: DirectElement + ConvElement,
    const CB: usize,
    const RB: usize,
>(
    rows: &ShiftedRows,
    shifted: &[&'a [T]],
    dy: &[&'a [T]],
    dw: &mut [T],
    channels: Range<usize>,
) {
    let lanes = T::lanes::<S>();
    let r_count = rows.offsets.len();
    let pixels = rows.pixels;
    let max_offset = rows.offsets.iter().copied().max().unwrap_or(0);
    // Runs of pixels contiguous in the copies: each row in the single-copy layout (a whole
    // number of vectors, asserted), else all of a sample's pixels, whose last `pixels mod
    // lanes` are summed as scalars.
    let run = if rows.is_single_copy() {
        rows.row_width
    } else {
        pixels
    };
    let run_pitch = if rows.is_single_copy() {
        rows.row_pitch
    } else {
        0
    };
    let vectors = run / lanes;
    assert!(!rows.is_single_copy() || run % lanes == 0);
    assert!(max_offset + rows.position(pixels - 1) < rows.len);
    assert!(shifted.iter().all(|s| s.len() >= rows.len));
    assert!(dy.iter().all(|d| d.len() >= channels.end * pixels));
    assert!(dw.len() == channels.len() * r_count);
    // Channels past the end repeat the last one, rows past the end the last row; their sums
    // are discarded.
    for co0 in channels.clone().step_by(CB) {
        let last = channels.end - 1;
        let planes: [usize; CB] = core::array::from_fn(|c| (co0 + c).min(last) * pixels);
        for r0 in (0..r_count).step_by(RB) {
            let offsets: [usize; RB] =
                core::array::from_fn(|i| rows.offsets[(r0 + i).min(r_count - 1)]);
            let zero = T::zero().splat::<S>();
            let mut acc = [[zero; RB]; CB];
            let mut tail = [[T::zero(); RB]; CB];
            for (&sample, &dy) in shifted.iter().zip(dy) {
                for (index, p0) in (0..pixels).step_by(run).enumerate() {
                    // = position(p0), without a division
                    let start = index * run_pitch;
                    for v in 0..vectors {
                        let p = p0 + v * lanes;
                        // SAFETY: p + lanes <= p0 + run <= pixels, and a run is contiguous in
                        // the copies: offset + start + (v + 1)·lanes - 1 = offset +
                        // position(p + lanes - 1) <= max_offset + position(pixels - 1)
                        // < rows.len <= sample.len(); plane + pixels <= channels.end·pixels
                        // <= dy.len() (asserted above).
                        let x: [Vector<S, T>; RB] = core::array::from_fn(|i| unsafe {
                            vload_unaligned(sample.as_ptr().add(offsets[i] + start + v * lanes))
                        });
                        for (c, &plane) in planes.iter().enumerate() {
                            let g: Vector<S, T> =
                                unsafe { vload_unaligned(dy.as_ptr().add(plane + p)) };
                            for i in 0..RB {
                                acc[c][i] = g.mul_add(x[i], acc[c][i]);
                            }
                        }
                    }
                }
                // the flat layout's last pixels (none in the single copy)
                for p in pixels / lanes * lanes..pixels {
                    for (c, &plane) in planes.iter().enumerate() {
                        let g = dy[plane + p];
                        for i in 0..RB {
                            tail[c][i] += g * sample[offsets[i] + p];
                        }
                    }
                }
            }
            for c in 0..CB.min(channels.end - co0) {
                for i in 0..RB.min(r_count - r0) {
                    let row = co0 - channels.start + c;
                    dw[row * r_count + r0 + i] = acc[c][i].reduce_add() + tail[c][i];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_backend::ops::ConvOptions;
    use burn_std::Shape;

    /// A convolution: input `[1, C_in, H, W]`, `C_out` outputs, 3x3 kernel.
    struct Conv {
        input: [usize; 3],
        channels_out: usize,
        stride: usize,
        padding: usize,
    }

    impl Conv {
        fn geometry(&self) -> ConvGeometry {
            let [c, h, w] = self.input;
            let options = ConvOptions {
                stride: [self.stride; 2],
                padding: [(self.padding, self.padding); 2],
                dilation: [1, 1],
                groups: 1,
            };
            ConvGeometry::new(
                &Shape::from(vec![1, c, h, w]),
                &Shape::from(vec![self.channels_out, c, 3, 3]),
                &options,
            )
        }
    }

    /// Deterministic values in [-1, 1) with a few exact zeros.
    fn values(len: usize, seed: usize) -> Vec<f64> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f64 / 1001.5 - 1.0)
            .collect()
    }

    /// `y[co, p]` and `dW[co, r]` written from the definition of the convolution, in f64:
    /// `y[co, oy, ox] = Σ W[co, ci, ky, kx] · x[ci, oy·s + ky - pad, ox·s + kx - pad]`,
    /// `dW[co, ci, ky, kx] = Σ dy[co, oy, ox] · x[ci, oy·s + ky - pad, ox·s + kx - pad]`.
    fn naive(conv: &Conv, g: &ConvGeometry, x: &[f64], w: &[f64], dy: &[f64]) -> [Vec<f64>; 2] {
        let [c_in, h, wd] = conv.input;
        let (oh, ow) = (g.out_height, g.out_width);
        let mut y = vec![0.0; conv.channels_out * oh * ow];
        let mut dw = vec![0.0; conv.channels_out * c_in * 9];
        for co in 0..conv.channels_out {
            for (ci, k) in (0..c_in).flat_map(|ci| (0..9).map(move |k| (ci, k))) {
                let r = ci * 9 + k;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let iy = (oy * conv.stride + k / 3) as isize - conv.padding as isize;
                        let ix = (ox * conv.stride + k % 3) as isize - conv.padding as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                            continue;
                        }
                        let xv = x[(ci * h + iy as usize) * wd + ix as usize];
                        let p = co * oh * ow + oy * ow + ox;
                        y[p] += w[co * c_in * 9 + r] * xv;
                        dw[co * c_in * 9 + r] += dy[p] * xv;
                    }
                }
            }
        }
        [y, dw]
    }

    /// Every forward and weight-gradient block shape, on SIMD registers of this machine, over
    /// whole and partial blocks of pixels and channels, a channel range that starts mid-way,
    /// strides 1 and 2, "same" and zero padding, against the definition.
    #[test]
    fn every_block_shape_matches_the_definition() {
        let convs = [
            Conv {
                input: [3, 9, 11],
                channels_out: 13,
                stride: 1,
                padding: 1,
            },
            Conv {
                input: [2, 30, 28],
                channels_out: 9,
                stride: 1,
                padding: 1,
            },
            Conv {
                input: [4, 13, 10],
                channels_out: 10,
                stride: 2,
                padding: 1,
            },
            Conv {
                input: [2, 8, 8],
                channels_out: 5,
                stride: 1,
                padding: 0,
            },
            // the forward kernel's single-copy layout (rows a whole number of vectors of f64 wide)
            Conv {
                input: [3, 6, 16],
                channels_out: 13,
                stride: 1,
                padding: 1,
            },
        ];
        for conv in &convs {
            let g = conv.geometry();
            let rows = ShiftedRows::new::<f64>(&g).expect("3x3 runs direct");
            let (c_out, r_count, pixels) = (conv.channels_out, g.col_rows(), g.out_pixels());
            let x = values(g.group_in(), 1);
            let w = values(c_out * r_count, 2);
            let dy = values(c_out * pixels, 3);
            let [y_ref, dw_ref] = naive(conv, &g, &x, &w, &dy);
            let mut shifted = vec![0.0f64; rows.len];
            rows.fill(&g, &x, &mut shifted);
            let check = |got: &[f64], want: &[f64], what: &str| {
                for (i, (a, b)) in got.iter().zip(want).enumerate() {
                    assert!((a - b).abs() < 1e-12, "{what} [{i}]: {a} vs {b}");
                }
            };
            type Forward = fn(&ShiftedRows, &[f64], &[f64], &mut [f64], Range<usize>);
            let shapes: [(usize, Forward); 3] = [
                (8, forward_blocks::<f64, 8, 3>),
                (8, forward_blocks::<f64, 8, 2>),
                (4, forward_blocks::<f64, 4, 2>),
            ];
            for (block, kernel) in shapes {
                let packed = pack_weights(&w, c_out, r_count, block);
                for channels in [0..c_out, block.min(c_out)..c_out] {
                    if channels.is_empty() {
                        continue;
                    }
                    let mut out = vec![f64::NAN; channels.len() * pixels];
                    kernel(&rows, &packed, &shifted, &mut out, channels.clone());
                    let want = &y_ref[channels.start * pixels..channels.end * pixels];
                    check(&out, want, &format!("forward {block}, {channels:?}"));
                }
            }
            let rows = ShiftedRows::with_layout(&g, false).expect("3x3 runs direct");
            let mut shifted = vec![0.0f64; rows.len];
            rows.fill(&g, &x, &mut shifted);
            type WeightGrad = fn(&ShiftedRows, &[&[f64]], &[&[f64]], &mut [f64], Range<usize>);
            let kernels: [(&str, WeightGrad); 4] = [
                ("dot 4x4", weight_grad_blocks::<f64, 4, 4>),
                ("dot 2x4", weight_grad_blocks::<f64, 2, 4>),
                ("outer 4x6", weight_grad_outer::<f64, 4, 6>),
                ("outer 2x12", weight_grad_outer::<f64, 2, 12>),
            ];
            for (name, kernel) in kernels {
                // two samples: the chunk's sums run over both
                let mut dy2 = dy.clone();
                dy2.iter_mut().for_each(|v| *v *= -0.5);
                let (copies, gradients): ([&[f64]; 2], [&[f64]; 2]) =
                    ([&shifted, &shifted], [&dy, &dy2]);
                for channels in [0..c_out, 3..c_out] {
                    let mut dw = vec![f64::NAN; channels.len() * r_count];
                    kernel(&rows, &copies, &gradients, &mut dw, channels.clone());
                    let want: Vec<f64> = dw_ref[channels.start * r_count..channels.end * r_count]
                        .iter()
                        .map(|v| v * 0.5)
                        .collect();
                    check(&dw, &want, &format!("weight gradient {name}, {channels:?}"));
                }
            }
        }
    }

    /// The single-copy layout gives bitwise the products of the copy-per-column layout, forward
    /// and both weight-gradient kernels, with NaN and infinities in the image (which a column shift
    /// must not carry into the neighbouring row), on rows of one and several vectors.
    #[test]
    fn single_copy_is_bitwise_the_copy_per_column() {
        for [c, h, w] in [[3, 9, 8], [2, 8, 16], [2, 3, 32], [3, 1, 16]] {
            let conv = Conv {
                input: [c, h, w],
                channels_out: 11,
                stride: 1,
                padding: 1,
            };
            let g = conv.geometry();
            let single = ShiftedRows::with_layout(&g, true).expect("3x3 runs direct");
            let per_column = ShiftedRows::with_layout(&g, false).expect("3x3 runs direct");
            assert!(single.is_single_copy() && !per_column.is_single_copy());
            let mut x = values(g.group_in(), 4);
            x[0] = f64::NAN;
            x[w - 1] = f64::INFINITY;
            x[g.group_in() - 1] = f64::NEG_INFINITY;
            x[g.group_in() - w] = f64::NAN;
            let weights = values(11 * g.col_rows(), 5);
            let run = |rows: &ShiftedRows| {
                let mut shifted = vec![f64::NAN; rows.len];
                rows.fill(&g, &x, &mut shifted);
                let mut out8 = vec![0.0; 11 * g.out_pixels()];
                let packed = pack_weights(&weights, 11, g.col_rows(), 8);
                forward_blocks::<f64, 8, 2>(rows, &packed, &shifted, &mut out8, 0..11);
                let mut out4 = vec![0.0; 11 * g.out_pixels()];
                let packed = pack_weights(&weights, 11, g.col_rows(), 4);
                forward_blocks::<f64, 4, 2>(rows, &packed, &shifted, &mut out4, 0..11);
                let dy = values(11 * g.out_pixels(), 6);
                let mut dw = vec![0.0; 11 * g.col_rows()];
                weight_grad_outer::<f64, 2, 12>(rows, &[&shifted], &[&dy], &mut dw, 0..11);
                let mut dw_dot = vec![0.0; 11 * g.col_rows()];
                weight_grad_blocks::<f64, 4, 4>(rows, &[&shifted], &[&dy], &mut dw_dot, 0..11);
                [out8, out4, dw, dw_dot].map(|v| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            };
            assert_eq!(run(&single), run(&per_column), "{:?}", conv.input);
        }
    }
}

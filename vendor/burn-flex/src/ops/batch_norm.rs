//! Training-mode batch normalisation and its backward pass for `[N, C, ...]` tensors, each
//! fused into one statistics pass per channel and one elementwise pass, on all threads (f32 and
//! f64 natively, f16 and bf16 in f32).
//!
//! Forward (Ioffe & Szegedy, "Batch Normalization", 2015, Algorithm 1), with `M = N·(spatial)`
//! values per channel:
//!
//! `μ = Σx / M`, `σ² = Σ(x - μ)² / M` (biased), `x̂ = (x - μ)/√(σ² + ε)`, `y = γ·x̂ + β`.
//!
//! Backward (same paper, §3, simplified):
//!
//! `∂β = Σ dy`, `∂γ = Σ dy·x̂`, `dx = γ/√(σ² + ε) · (dy - ∂β/M - x̂·∂γ/M)`.
//!
//! Per-channel sums run in f64, each channel on one thread in a fixed order, so the results do
//! not depend on the number of threads.

use alloc::vec;
use alloc::vec::Vec;
use core::mem::MaybeUninit;

use burn_backend::{DType, TensorMetadata};
use burn_std::{Bytes, Shape, bf16, f16};

#[cfg(feature = "simd")]
use macerator::Simd;

use crate::ops::module::{cast_from_f32, cast_to_f32};
use crate::{FlexTensor, Layout};

/// The element types the kernels run in natively; f16 and bf16 are computed in f32.
trait NormElement:
    bytemuck::Pod
    + burn_backend::Element
    + Send
    + Sync
    + core::ops::Add<Output = Self>
    + core::ops::Sub<Output = Self>
    + core::ops::Mul<Output = Self>
    + core::ops::Div<Output = Self>
    + PartialOrd
{
    fn to_f64(self) -> f64;
    fn from_f64(value: f64) -> Self;
    fn sqrt(self) -> Self;
}

impl NormElement for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value as f32
    }
    fn sqrt(self) -> Self {
        num_traits::Float::sqrt(self)
    }
}

impl NormElement for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value
    }
    fn sqrt(self) -> Self {
        num_traits::Float::sqrt(self)
    }
}

/// `[N, C, spatial]` view of a batch-norm input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelLayout {
    batch: usize,
    channels: usize,
    spatial: usize,
}

impl ChannelLayout {
    /// The layout of a `[N, C, ...]` input; panics on rank < 2.
    fn new(shape: &Shape) -> Self {
        assert!(
            shape.num_dims() >= 2,
            "batch_norm: expected an input of rank >= 2, got {shape:?}"
        );
        Self {
            batch: shape[0],
            channels: shape[1],
            spatial: shape.iter().skip(2).product(),
        }
    }

    #[inline(always)]
    fn per_channel(&self) -> usize {
        self.batch * self.spatial
    }

    /// The contiguous runs (one per sample) of channel `c` in a `[N, C, spatial]` buffer.
    #[inline(always)]
    fn runs<'a, T>(&self, data: &'a [T], c: usize) -> impl Iterator<Item = &'a [T]> + 'a {
        let (channels, spatial) = (self.channels, self.spatial);
        (0..self.batch).map(move |n| {
            let start = (n * channels + c) * spatial;
            &data[start..start + spatial]
        })
    }
}

fn tensor<T: NormElement>(data: Vec<T>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(shape),
        T::dtype(),
    )
}

fn vector<T: NormElement>(data: Vec<T>) -> FlexTensor {
    let len = data.len();
    tensor(data, Shape::from(vec![len]))
}

/// `f(c)` for every channel, on all threads, collected in channel order.
fn per_channel<T: Send, F: Fn(usize) -> T + Send + Sync>(channels: usize, f: F) -> Vec<T> {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..channels).into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "rayon"))]
    {
        (0..channels).map(f).collect()
    }
}

/// `f(c, offset, run)` over the `[N, C]` contiguous spatial runs of an output buffer (`offset`:
/// where the run starts), in parallel.
fn for_each_run<T: Send, F: Fn(usize, usize, &mut [T]) + Send + Sync>(
    out: &mut [T],
    layout: ChannelLayout,
    f: F,
) {
    let spatial = layout.spatial;
    if spatial == 0 {
        return;
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(spatial)
            .enumerate()
            .for_each(|(i, run)| f(i % layout.channels, i * spatial, run));
    }
    #[cfg(not(feature = "rayon"))]
    {
        for (i, run) in out.chunks_mut(spatial).enumerate() {
            f(i % layout.channels, i * spatial, run);
        }
    }
}

/// Eight f64 accumulators for a per-channel sum: element `i` of a run goes to lane `i % 8`,
/// eight independent chains the compiler can vectorise instead of one serial chain of adds;
/// [Lanes::total] combines them pairwise in a fixed order. A channel's sum therefore depends on
/// its data alone, not on how channels are spread over threads.
#[derive(Clone, Copy, Default)]
struct Lanes([f64; 8]);

impl Lanes {
    /// Adds `term(v)` for every `v` of `values`.
    #[inline(always)]
    fn add<T: Copy>(&mut self, values: &[T], term: impl Fn(T) -> f64) {
        let mut chunks = values.chunks_exact(8);
        for chunk in &mut chunks {
            for (lane, &v) in self.0.iter_mut().zip(chunk) {
                *lane += term(v);
            }
        }
        for (lane, &v) in self.0.iter_mut().zip(chunks.remainder()) {
            *lane += term(v);
        }
    }

    /// Adds `term(a, b)` for every pair of `a` and `b` (of equal length).
    #[inline(always)]
    fn add_pairs<T: Copy>(&mut self, a: &[T], b: &[T], term: impl Fn(T, T) -> f64) {
        let (mut left, mut right) = (a.chunks_exact(8), b.chunks_exact(8));
        for (xs, ys) in (&mut left).zip(&mut right) {
            for ((lane, &x), &y) in self.0.iter_mut().zip(xs).zip(ys) {
                *lane += term(x, y);
            }
        }
        for ((lane, &x), &y) in self
            .0
            .iter_mut()
            .zip(left.remainder())
            .zip(right.remainder())
        {
            *lane += term(x, y);
        }
    }

    /// `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))`.
    #[inline(always)]
    fn total(self) -> f64 {
        let l = self.0;
        ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
    }
}

/// Batch statistics `(μ, σ²)` of channel `c` in one pass over memory: with `K` the mean of the
/// channel's first run (sample 0), `S₁ = Σ(x - K)` and `S₂ = Σ(x - K)²` in f64 give
/// `μ = K + S₁/M` and `σ² = S₂/M - (S₁/M)²` (the shifted-data algorithm; Chan, Golub & LeVeque,
/// "Algorithms for Computing the Sample Variance", 1983, §3): the relative error of `σ²` is
/// about f64's epsilon times `(μ - K)²/σ²`, nothing at f32 precision. Each run is read twice
/// while it is in L1, where a second pass over the channel (whose runs, one per sample, lie a
/// channel plane apart) would fetch it again from L3 or memory. Compiled for the widest SIMD
/// registers, which the f32 to f64 conversions and the eight-lane sums fill.
#[cfg_attr(feature = "simd", macerator::with_simd)]
fn channel_stats<#[cfg(feature = "simd")] S: Simd, T: NormElement>(
    layout: &ChannelLayout,
    x: &[T],
    c: usize,
) -> (f64, f64) {
    let count = layout.per_channel() as f64;
    let shift = layout.runs(x, c).next().map_or(0.0, |run| {
        let mut first = Lanes::default();
        first.add(run, NormElement::to_f64);
        first.total() / run.len().max(1) as f64
    });
    let (mut sum, mut squares) = (Lanes::default(), Lanes::default());
    for run in layout.runs(x, c) {
        sum.add(run, |v| v.to_f64() - shift);
        squares.add(run, |v| {
            let d = v.to_f64() - shift;
            d * d
        });
    }
    let mean = sum.total() / count;
    // clamped at 0 against rounding; NaN stays NaN
    let variance = squares.total() / count - mean * mean;
    (shift + mean, if variance < 0.0 { 0.0 } else { variance })
}

/// A buffer of `len` values (the size of a `[N, C, spatial]` tensor of `layout`) written by
/// `write(c, offset, run)`, which must initialise every element of each run it is given, in
/// parallel as [for_each_run]; no copy or zeroing before.
fn written_by_runs<T: Send, F: Fn(usize, usize, &mut [MaybeUninit<T>]) + Send + Sync>(
    len: usize,
    layout: ChannelLayout,
    write: F,
) -> Vec<T> {
    // The runs must tile exactly `len` elements, or some would stay uninitialised (e.g. a `dy`
    // whose shape does not match `x`'s).
    assert_eq!(
        len,
        layout.batch * layout.channels * layout.spatial,
        "batch_norm: a buffer of {len} values for a {layout:?} layout"
    );
    let mut out = Vec::with_capacity(len);
    for_each_run(&mut out.spare_capacity_mut()[..len], layout, write);
    // SAFETY: `for_each_run` hands each of the `len` elements to `write` in exactly one run
    // (the runs tile the buffer; `len` is 0 when `spatial` is), and every caller's `write`
    // initialises each element of its run.
    unsafe { out.set_len(len) };
    out
}

/// What follows the normalisation in one fused pass.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Activation {
    /// Nothing: plain batch norm.
    Identity,
    /// ReLU as Flex computes it: `y` where `y > 0` or `y` is NaN, else 0.
    Relu,
}

/// ReLU's gate for channel `c` of a fused batch norm + ReLU, recomputed from `x` with the
/// forward's own `(μ, scale, β)` in the element type, so bitwise the forward's decision: the
/// gradient passes where `(x - μ)·scale + β` is `> 0` or NaN (as Flex's `relu_backward`, which
/// gates on the output).
#[derive(Clone, Copy)]
struct ReluGate<T> {
    mean: T,
    scale: T,
    shift: T,
}

impl<T: NormElement> ReluGate<T> {
    /// `g` where the forward's ReLU passed `x`, else 0.
    #[inline(always)]
    fn pass(&self, x: T, g: T) -> T {
        let zero = T::from_f64(0.0);
        if (x - self.mean) * self.scale + self.shift <= zero {
            zero
        } else {
            g
        }
    }
}

/// Normalises `x` (`[N, C, ...]`) with its own batch statistics and applies `activation`:
/// `(z, μ, σ², scale)` with `scale = γ/√(σ² + ε)` per channel as the output used it (the fused
/// backward needs it to recompute ReLU's gate bitwise).
fn forward<T: NormElement>(
    layout: ChannelLayout,
    [x, gamma, beta]: [&[T]; 3],
    epsilon: f64,
    activation: Activation,
) -> [Vec<T>; 4] {
    let stats = per_channel(layout.channels, |c| channel_stats(&layout, x, c));
    // y = (x - μ)·scale + β with scale = γ/√(σ²+ε)
    let affine: Vec<(T, T, T)> = stats
        .iter()
        .enumerate()
        .map(|(c, &(mean, var))| {
            let scale = gamma[c].to_f64() / (var + epsilon).sqrt();
            (T::from_f64(mean), T::from_f64(scale), beta[c])
        })
        .collect();
    let zero = T::from_f64(0.0);
    let output = written_by_runs(x.len(), layout, |c, offset, run| {
        let (mean, scale, shift) = affine[c];
        let xs = &x[offset..offset + run.len()];
        match activation {
            Activation::Identity => {
                for (y, &v) in run.iter_mut().zip(xs) {
                    y.write((v - mean) * scale + shift);
                }
            }
            Activation::Relu => {
                for (z, &v) in run.iter_mut().zip(xs) {
                    let y = (v - mean) * scale + shift;
                    z.write(if y <= zero { zero } else { y });
                }
            }
        }
    });
    let mean = stats.iter().map(|s| T::from_f64(s.0)).collect();
    let variance = stats.iter().map(|s| T::from_f64(s.1)).collect();
    let scale = affine.iter().map(|a| a.1).collect();
    [output, mean, variance, scale]
}

/// `(Σ g, Σ g·(x - μ))` of channel `c` in f64, `mu` = μ, with `g = dy`, or `dy` through ReLU's
/// `gate` for the fused op.
#[cfg_attr(feature = "simd", macerator::with_simd)]
fn gradient_sums<#[cfg(feature = "simd")] S: Simd, T: NormElement>(
    layout: &ChannelLayout,
    x: &[T],
    dy: &[T],
    mu: f64,
    gate: Option<ReluGate<T>>,
    c: usize,
) -> (f64, f64) {
    let (mut db, mut dg) = (Lanes::default(), Lanes::default());
    for (xs, gs) in layout.runs(x, c).zip(layout.runs(dy, c)) {
        match gate {
            None => {
                db.add(gs, NormElement::to_f64);
                dg.add_pairs(xs, gs, |v, g| g.to_f64() * (v.to_f64() - mu));
            }
            Some(gate) => {
                db.add_pairs(xs, gs, |v, g| gate.pass(v, g).to_f64());
                dg.add_pairs(xs, gs, |v, g| gate.pass(v, g).to_f64() * (v.to_f64() - mu));
            }
        }
    }
    (db.total(), dg.total())
}

/// Gradients `(dx, ∂γ, ∂β)` of [forward] given its statistics and `dy`; `relu` holds the
/// forward's `(scale, β)` when it applied ReLU.
fn backward<T: NormElement>(
    layout: ChannelLayout,
    [x, gamma, mean, variance, dy]: [&[T]; 5],
    epsilon: f64,
    relu: Option<[&[T]; 2]>,
) -> [Vec<T>; 3] {
    let inv_std: Vec<f64> = variance
        .iter()
        .map(|&v| 1.0 / (v.to_f64() + epsilon).sqrt())
        .collect();
    let gate = |c: usize| {
        relu.map(|[scale, beta]| ReluGate {
            mean: mean[c],
            scale: scale[c],
            shift: beta[c],
        })
    };
    // (∂β, ∂γ) per channel: Σ g and Σ g·x̂
    let sums = per_channel(layout.channels, |c| {
        let (db, dg) = gradient_sums(&layout, x, dy, mean[c].to_f64(), gate(c), c);
        (db, dg * inv_std[c])
    });
    let count = layout.per_channel() as f64;
    // dx = a·g + b·(x - μ) + c per channel, with a = γ/σ, b = -a·(∂γ/M)/σ, c = -a·∂β/M
    let coefficients: Vec<(T, T, T)> = sums
        .iter()
        .enumerate()
        .map(|(c, &(db, dg))| {
            let a = gamma[c].to_f64() * inv_std[c];
            let b = -a * dg / count * inv_std[c];
            (T::from_f64(a), T::from_f64(b), T::from_f64(-a * db / count))
        })
        .collect();
    let x_grad = written_by_runs(dy.len(), layout, |c, offset, run| {
        let (a, b, shift) = coefficients[c];
        let mu = mean[c];
        let range = offset..offset + run.len();
        let pairs = run.iter_mut().zip(&x[range.clone()]).zip(&dy[range]);
        match gate(c) {
            None => {
                for ((dx, &v), &g) in pairs {
                    dx.write(a * g + b * (v - mu) + shift);
                }
            }
            Some(gate) => {
                for ((dx, &v), &g) in pairs {
                    dx.write(a * gate.pass(v, g) + b * (v - mu) + shift);
                }
            }
        }
    });
    let gamma_grad = sums.iter().map(|s| T::from_f64(s.1)).collect();
    let beta_grad = sums.iter().map(|s| T::from_f64(s.0)).collect();
    [x_grad, gamma_grad, beta_grad]
}

/// Inference-mode normalisation with given statistics, `y = (x - μ)/√(σ² + ε)·γ + β`, in one
/// parallel pass. The operations and their order are those of Burn's default
/// `ModuleOps::batch_norm` (four broadcast passes on one thread), in the element type, so f32 and
/// f64 results are bitwise the same.
fn inference<T: NormElement>(
    layout: ChannelLayout,
    [x, gamma, beta, mean, variance]: [&[T]; 5],
    epsilon: f64,
) -> Vec<T> {
    let epsilon = T::from_f64(epsilon);
    let std: Vec<T> = variance.iter().map(|&v| (v + epsilon).sqrt()).collect();
    written_by_runs(x.len(), layout, |c, offset, run| {
        let (mu, sigma, g, b) = (mean[c], std[c], gamma[c], beta[c]);
        let xs = &x[offset..offset + run.len()];
        for (y, &v) in run.iter_mut().zip(xs) {
            y.write((v - mu) / sigma * g + b);
        }
    })
}

/// The tensors' data as contiguous tensors of f32 or f64 (f16 and bf16 are widened to f32).
fn widened(name: &str, tensors: &[&FlexTensor]) -> Vec<FlexTensor> {
    tensors
        .iter()
        .map(|t| match t.dtype() {
            DType::F32 | DType::F64 => t.to_contiguous(),
            DType::F16 => cast_to_f32((*t).clone(), f16::to_f32),
            DType::BF16 => cast_to_f32((*t).clone(), bf16::to_f32),
            other => panic!("{name}: unsupported dtype {other:?}"),
        })
        .collect()
}

/// Narrows an f32 result back to `dtype` (f16, bf16); f32 and f64 results pass through.
fn narrowed(tensor: FlexTensor, dtype: DType) -> FlexTensor {
    match dtype {
        DType::F16 => cast_from_f32(tensor, f16::from_f32),
        DType::BF16 => cast_from_f32(tensor, bf16::from_f32),
        _ => tensor,
    }
}

/// The first `K` tensors' data as slices of `T`.
fn slices<T: NormElement, const K: usize>(tensors: &[FlexTensor]) -> [&[T]; K] {
    core::array::from_fn(|i| tensors[i].storage::<T>())
}

/// The kernel's results as a `shape`-sized tensor followed by per-channel vectors.
fn assembled<T: NormElement, const R: usize>(
    results: [Vec<T>; R],
    shape: Shape,
) -> [FlexTensor; R] {
    let mut shape = Some(shape);
    results.map(|data| match shape.take() {
        Some(shape) => tensor(data, shape),
        None => vector(data),
    })
}

/// Training-mode batch norm followed by `activation`: `(z, μ, σ², scale)`.
pub(super) fn batch_norm_activation_train(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
    activation: Activation,
) -> [FlexTensor; 4] {
    let shape = x.shape();
    let layout = ChannelLayout::new(&shape);
    let dtype = x.dtype();
    let tensors = widened("batch_norm_train", &[x, gamma, beta]);
    let results = match tensors[0].dtype() {
        DType::F64 => assembled(
            forward::<f64>(layout, slices(&tensors), epsilon, activation),
            shape,
        ),
        _ => assembled(
            forward::<f32>(layout, slices(&tensors), epsilon, activation),
            shape,
        ),
    };
    results.map(|t| narrowed(t, dtype))
}

/// Training-mode batch norm: `(y, μ, σ²)`.
pub(crate) fn batch_norm_train(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> [FlexTensor; 3] {
    let [y, mean, variance, _] =
        batch_norm_activation_train(x, gamma, beta, epsilon, Activation::Identity);
    [y, mean, variance]
}

/// Gradients `(dx, ∂γ, ∂β)` of training-mode batch norm, followed by ReLU when `relu` holds the
/// forward's `(scale, β)`.
pub(super) fn batch_norm_activation_train_backward(
    x: &FlexTensor,
    [gamma, mean, variance]: [&FlexTensor; 3],
    epsilon: f64,
    relu: Option<[&FlexTensor; 2]>,
    output_grad: &FlexTensor,
) -> [FlexTensor; 3] {
    let shape = x.shape();
    let layout = ChannelLayout::new(&shape);
    let dtype = x.dtype();
    let mut inputs = vec![x, gamma, mean, variance, output_grad];
    inputs.extend(relu.iter().flatten());
    let tensors = widened("batch_norm_train_backward", &inputs);
    let results = match tensors[0].dtype() {
        DType::F64 => {
            let relu = relu.map(|_| [tensors[5].storage(), tensors[6].storage()]);
            assembled(
                backward::<f64>(layout, slices(&tensors), epsilon, relu),
                shape,
            )
        }
        _ => {
            let relu = relu.map(|_| [tensors[5].storage(), tensors[6].storage()]);
            assembled(
                backward::<f32>(layout, slices(&tensors), epsilon, relu),
                shape,
            )
        }
    };
    results.map(|t| narrowed(t, dtype))
}

/// Gradients `(dx, ∂γ, ∂β)` of training-mode batch norm.
pub(crate) fn batch_norm_train_backward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    mean: &FlexTensor,
    variance: &FlexTensor,
    epsilon: f64,
    output_grad: &FlexTensor,
) -> [FlexTensor; 3] {
    batch_norm_activation_train_backward(x, [gamma, mean, variance], epsilon, None, output_grad)
}

/// Inference-mode batch norm with running statistics (`[C]` vectors each).
pub(crate) fn batch_norm_inference(
    x: &FlexTensor,
    [gamma, beta, mean, variance]: [&FlexTensor; 4],
    epsilon: f64,
) -> FlexTensor {
    let shape = x.shape();
    let layout = ChannelLayout::new(&shape);
    let dtype = x.dtype();
    let tensors = widened("batch_norm", &[x, gamma, beta, mean, variance]);
    let output = match tensors[0].dtype() {
        DType::F64 => tensor(inference::<f64>(layout, slices(&tensors), epsilon), shape),
        _ => tensor(inference::<f32>(layout, slices(&tensors), epsilon), shape),
    };
    narrowed(output, dtype)
}

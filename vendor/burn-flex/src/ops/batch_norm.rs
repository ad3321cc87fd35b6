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

use burn_backend::{DType, TensorMetadata};
use burn_std::{Bytes, Shape, bf16, f16};

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
{
    fn to_f64(self) -> f64;
    fn from_f64(value: f64) -> Self;
}

impl NormElement for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(value: f64) -> Self {
        value as f32
    }
}

impl NormElement for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(value: f64) -> Self {
        value
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

    fn per_channel(&self) -> usize {
        self.batch * self.spatial
    }

    /// The contiguous runs (one per sample) of channel `c` in a `[N, C, spatial]` buffer.
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

/// Batch statistics `(μ, σ²)` of channel `c`, two-pass in f64.
fn channel_stats<T: NormElement>(layout: &ChannelLayout, x: &[T], c: usize) -> (f64, f64) {
    let count = layout.per_channel() as f64;
    let sum: f64 = layout
        .runs(x, c)
        .map(|run| run.iter().map(|&v| v.to_f64()).sum::<f64>())
        .sum();
    let mean = sum / count;
    let squares: f64 = layout
        .runs(x, c)
        .map(|run| {
            run.iter()
                .map(|&v| {
                    let d = v.to_f64() - mean;
                    d * d
                })
                .sum::<f64>()
        })
        .sum();
    (mean, squares / count)
}

/// Normalises `x` (`[N, C, ...]`) with its own batch statistics: `(y, μ, σ²)`.
fn forward<T: NormElement>(
    layout: ChannelLayout,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    epsilon: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
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
    let mut output = x.to_vec();
    for_each_run(&mut output, layout, |c, _, run| {
        let (mean, scale, shift) = affine[c];
        for y in run.iter_mut() {
            *y = (*y - mean) * scale + shift;
        }
    });
    let mean = stats.iter().map(|s| T::from_f64(s.0)).collect();
    let variance = stats.iter().map(|s| T::from_f64(s.1)).collect();
    (output, mean, variance)
}

/// Gradients `(dx, ∂γ, ∂β)` of [forward] given its statistics and `dy`.
fn backward<T: NormElement>(
    layout: ChannelLayout,
    [x, gamma, mean, variance, dy]: [&[T]; 5],
    epsilon: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let inv_std: Vec<f64> = variance
        .iter()
        .map(|&v| 1.0 / (v.to_f64() + epsilon).sqrt())
        .collect();
    // (∂β, ∂γ) per channel: Σ dy and Σ dy·x̂
    let sums = per_channel(layout.channels, |c| {
        let (mu, istd) = (mean[c].to_f64(), inv_std[c]);
        layout
            .runs(x, c)
            .zip(layout.runs(dy, c))
            .fold((0.0f64, 0.0f64), |(db, dg), (xs, gs)| {
                let (mut run_db, mut run_dg) = (0.0f64, 0.0f64);
                for (&v, &g) in xs.iter().zip(gs) {
                    run_db += g.to_f64();
                    run_dg += g.to_f64() * (v.to_f64() - mu);
                }
                (db + run_db, dg + run_dg * istd)
            })
    });
    let count = layout.per_channel() as f64;
    // dx = a·dy + b·(x - μ) + c per channel, with a = γ/σ, b = -a·(∂γ/M)/σ, c = -a·∂β/M
    let coefficients: Vec<(T, T, T)> = sums
        .iter()
        .enumerate()
        .map(|(c, &(db, dg))| {
            let a = gamma[c].to_f64() * inv_std[c];
            let b = -a * dg / count * inv_std[c];
            (T::from_f64(a), T::from_f64(b), T::from_f64(-a * db / count))
        })
        .collect();
    let mut x_grad = dy.to_vec();
    for_each_run(&mut x_grad, layout, |c, offset, run| {
        let (a, b, shift) = coefficients[c];
        let mu = mean[c];
        let xs = &x[offset..offset + run.len()];
        for (dx, &v) in run.iter_mut().zip(xs) {
            *dx = a * *dx + b * (v - mu) + shift;
        }
    });
    let gamma_grad = sums.iter().map(|s| T::from_f64(s.1)).collect();
    let beta_grad = sums.iter().map(|s| T::from_f64(s.0)).collect();
    (x_grad, gamma_grad, beta_grad)
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

fn run<T: NormElement, const K: usize>(
    tensors: &[FlexTensor],
    kernel: impl Fn([&[T]; K]) -> (Vec<T>, Vec<T>, Vec<T>),
    shape: &Shape,
) -> [FlexTensor; 3] {
    let data: [&[T]; K] = core::array::from_fn(|i| tensors[i].storage::<T>());
    let (full, first, second) = kernel(data);
    [tensor(full, shape.clone()), vector(first), vector(second)]
}

/// Training-mode batch norm: `(y, μ, σ²)`.
pub(crate) fn batch_norm_train(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> [FlexTensor; 3] {
    let shape = x.shape();
    let layout = ChannelLayout::new(&shape);
    let dtype = x.dtype();
    let tensors = widened("batch_norm_train", &[x, gamma, beta]);
    let results = match tensors[0].dtype() {
        DType::F64 => run::<f64, 3>(
            &tensors,
            |[x, g, b]| forward(layout, x, g, b, epsilon),
            &shape,
        ),
        _ => run::<f32, 3>(
            &tensors,
            |[x, g, b]| forward(layout, x, g, b, epsilon),
            &shape,
        ),
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
    let shape = x.shape();
    let layout = ChannelLayout::new(&shape);
    let dtype = x.dtype();
    let tensors = widened(
        "batch_norm_train_backward",
        &[x, gamma, mean, variance, output_grad],
    );
    let results = match tensors[0].dtype() {
        DType::F64 => run::<f64, 5>(&tensors, |d| backward(layout, d, epsilon), &shape),
        _ => run::<f32, 5>(&tensors, |d| backward(layout, d, epsilon), &shape),
    };
    results.map(|t| narrowed(t, dtype))
}

//! Tests of the conv2d and batch-norm kernels (`conv2d_nchw`, `batch_norm`) against naive
//! f64 references written from the definitions, central finite differences, and themselves
//! under different thread counts.

use alloc::vec;
use alloc::vec::Vec;

use burn_backend::ops::{ActivationOps, ConvOptions, ModuleOps};
use burn_backend::{DType, TensorMetadata};
use burn_std::{Bytes, Shape, f16};

use crate::{Flex, FlexTensor, Layout};

fn tensor_f64(data: &[f64], shape: &[usize], dtype: DType) -> FlexTensor {
    let layout = Layout::contiguous(Shape::from(shape.to_vec()));
    match dtype {
        DType::F64 => FlexTensor::new(Bytes::from_elems(data.to_vec()), layout, dtype),
        DType::F32 => {
            let data: Vec<f32> = data.iter().map(|&v| v as f32).collect();
            FlexTensor::new(Bytes::from_elems(data), layout, dtype)
        }
        DType::F16 => {
            let data: Vec<f16> = data.iter().map(|&v| f16::from_f64(v)).collect();
            FlexTensor::new(Bytes::from_elems(data), layout, dtype)
        }
        other => panic!("test tensor: {other:?}"),
    }
}

fn values(t: &FlexTensor) -> Vec<f64> {
    let t = t.to_contiguous();
    match t.dtype() {
        DType::F64 => t.storage::<f64>().to_vec(),
        DType::F32 => t.storage::<f32>().iter().map(|&v| v as f64).collect(),
        DType::F16 => t.storage::<f16>().iter().map(|v| v.to_f64()).collect(),
        other => panic!("test values: {other:?}"),
    }
}

/// Deterministic pseudo-random values in [-1, 1) (a 64-bit LCG, Knuth's MMIX constants).
fn pseudo_random(len: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// One convolution case: `[N, C_in, H, W]` input, `C_out` outputs, `k_h x k_w` kernel.
#[derive(Clone, Copy, Debug)]
struct Case {
    input: [usize; 4],
    channels_out: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
    dilation: [usize; 2],
    groups: usize,
}

impl Case {
    fn options(&self) -> ConvOptions<2> {
        ConvOptions {
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
        }
    }

    fn weight_shape(&self) -> [usize; 4] {
        let c_in = self.input[1] / self.groups;
        [self.channels_out, c_in, self.kernel[0], self.kernel[1]]
    }

    fn out_size(&self, axis: usize) -> usize {
        let (begin, end) = self.padding[axis];
        let reach = self.dilation[axis] * (self.kernel[axis] - 1) + 1;
        (self.input[2 + axis] + begin + end - reach) / self.stride[axis] + 1
    }

    fn output_shape(&self) -> [usize; 4] {
        let [n, ..] = self.input;
        [n, self.channels_out, self.out_size(0), self.out_size(1)]
    }

    /// Calls `visit(x_index, w_index, y_index)` for every product term of the convolution:
    /// `y[n, o, oy, ox] += x[n, g·C_in/g + c, iy, ix] · w[o, c, ky, kx]`.
    fn for_each_term(&self, mut visit: impl FnMut(usize, usize, usize)) {
        let [n, c_in_total, h, w] = self.input;
        let [c_out_total, c_in, kh, kw] = self.weight_shape();
        let [_, _, oh, ow] = self.output_shape();
        let c_out = c_out_total / self.groups;
        for b in 0..n {
            for o in 0..c_out_total {
                let group = o / c_out;
                for c in 0..c_in {
                    let ci = group * c_in + c;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    let iy = (oy * self.stride[0] + ky * self.dilation[0]) as isize
                                        - self.padding[0].0 as isize;
                                    let ix = (ox * self.stride[1] + kx * self.dilation[1]) as isize
                                        - self.padding[1].0 as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let x_index =
                                        ((b * c_in_total + ci) * h + iy as usize) * w + ix as usize;
                                    let w_index = ((o * c_in + c) * kh + ky) * kw + kx;
                                    let y_index = ((b * c_out_total + o) * oh + oy) * ow + ox;
                                    visit(x_index, w_index, y_index);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn volume(shape: [usize; 4]) -> usize {
    shape.iter().product()
}

const CASES: [Case; 13] = [
    // 3x3, stride 1, padding 1, batch 1, non-square
    Case {
        input: [1, 3, 5, 7],
        channels_out: 4,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        groups: 1,
    },
    // stride 2 (ResNet downsampling)
    Case {
        input: [2, 2, 6, 5],
        channels_out: 3,
        kernel: [3, 3],
        stride: [2, 2],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        groups: 1,
    },
    // no padding, dilation 2, two groups
    Case {
        input: [3, 4, 7, 7],
        channels_out: 6,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(0, 0), (0, 0)],
        dilation: [2, 2],
        groups: 2,
    },
    // depthwise, stride 2 along one axis
    Case {
        input: [2, 4, 5, 6],
        channels_out: 4,
        kernel: [3, 3],
        stride: [1, 2],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        groups: 4,
    },
    // pointwise
    Case {
        input: [2, 3, 4, 4],
        channels_out: 5,
        kernel: [1, 1],
        stride: [1, 1],
        padding: [(0, 0), (0, 0)],
        dilation: [1, 1],
        groups: 1,
    },
    // strided 1x1 (projection shortcut)
    Case {
        input: [2, 3, 5, 5],
        channels_out: 2,
        kernel: [1, 1],
        stride: [2, 2],
        padding: [(0, 0), (0, 0)],
        dilation: [1, 1],
        groups: 1,
    },
    // even, non-square kernel, asymmetric padding
    Case {
        input: [2, 2, 5, 6],
        channels_out: 3,
        kernel: [2, 3],
        stride: [1, 1],
        padding: [(0, 1), (2, 1)],
        dilation: [1, 1],
        groups: 1,
    },
    // stride 1 with more padding than d·(k-1) on two sides: the input gradient by col2im
    Case {
        input: [2, 2, 4, 5],
        channels_out: 3,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(3, 0), (1, 3)],
        dilation: [1, 1],
        groups: 1,
    },
    // direct kernels' partial blocks: 10 output channels (blocks of 8 or 4), 81 pixels (not a
    // whole number of vectors), 45 kernel rows (weight-gradient blocks of 4 or 2)
    Case {
        input: [3, 5, 9, 9],
        channels_out: 10,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        groups: 1,
    },
    // 9 samples: weight-gradient chunks of 4, 4 and 1
    Case {
        input: [9, 2, 4, 4],
        channels_out: 3,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        groups: 1,
    },
    // rows of 16 (one f32 vector on AVX-512): the forward kernel's single copy (also for the
    // input gradient, a forward convolution of dy's 33 channels), and 33 output channels: the
    // outer-product weight gradient on the single copy, with a partial block of channels
    Case {
        input: [3, 3, 6, 16],
        channels_out: 33,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        groups: 1,
    },
    // rows of 32: the lane-wise weight gradient on the single copy
    Case {
        input: [2, 2, 3, 32],
        channels_out: 5,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        groups: 1,
    },
    // stride 2 with 32 output channels: the outer-product weight gradient on one copy per
    // kernel column and row phase
    Case {
        input: [2, 3, 8, 7],
        channels_out: 32,
        kernel: [3, 3],
        stride: [2, 2],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        groups: 1,
    },
];

struct ConvData {
    x: Vec<f64>,
    w: Vec<f64>,
    bias: Vec<f64>,
    dy: Vec<f64>,
}

impl ConvData {
    fn new(case: &Case) -> Self {
        Self {
            x: pseudo_random(volume(case.input), 1),
            w: pseudo_random(volume(case.weight_shape()), 2),
            bias: pseudo_random(case.channels_out, 3),
            dy: pseudo_random(volume(case.output_shape()), 4),
        }
    }

    /// `(y, dx, dW)` by the naive reference.
    fn reference(&self, case: &Case) -> [Vec<f64>; 3] {
        let [n, c_out, oh, ow] = case.output_shape();
        let mut y: Vec<f64> = (0..n * c_out * oh * ow)
            .map(|i| self.bias[(i / (oh * ow)) % c_out])
            .collect();
        let mut dx = vec![0.0; self.x.len()];
        let mut dw = vec![0.0; self.w.len()];
        case.for_each_term(|xi, wi, yi| {
            y[yi] += self.x[xi] * self.w[wi];
            dx[xi] += self.dy[yi] * self.w[wi];
            dw[wi] += self.dy[yi] * self.x[xi];
        });
        [y, dx, dw]
    }

    /// `(y, dx, dW)` by the backend in `dtype`.
    fn backend(&self, case: &Case, dtype: DType) -> [Vec<f64>; 3] {
        let x = tensor_f64(&self.x, &case.input, dtype);
        let w = tensor_f64(&self.w, &case.weight_shape(), dtype);
        let b = tensor_f64(&self.bias, &[case.channels_out], dtype);
        let dy = tensor_f64(&self.dy, &case.output_shape(), dtype);
        let y = Flex::conv2d(x.clone(), w.clone(), Some(b), case.options());
        assert_eq!(y.shape().to_vec(), case.output_shape().to_vec(), "{case:?}");
        let dx = Flex::conv2d_x_backward(x.clone(), w.clone(), dy.clone(), case.options());
        assert_eq!(dx.shape().to_vec(), case.input.to_vec(), "{case:?}");
        assert_eq!(dx.dtype(), dtype);
        let dw = Flex::conv2d_weight_backward(x, w, dy, case.options());
        assert_eq!(
            dw.shape().to_vec(),
            case.weight_shape().to_vec(),
            "{case:?}"
        );
        assert_eq!(dw.dtype(), dtype);
        [values(&y), values(&dx), values(&dw)]
    }
}

fn assert_close(actual: &[f64], expected: &[f64], tolerance: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tolerance * (1.0 + e.abs()),
            "{what}[{i}]: {a} vs {e}"
        );
    }
}

#[test]
fn conv2d_and_both_gradients_match_the_naive_reference_in_f32_and_f64() {
    for case in &CASES {
        let data = ConvData::new(case);
        let expected = data.reference(case);
        for (dtype, tolerance) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
            let actual = data.backend(case, dtype);
            for ((a, e), name) in actual.iter().zip(&expected).zip(["y", "dx", "dw"]) {
                assert_close(
                    a,
                    e,
                    tolerance,
                    &alloc::format!("{name} {dtype:?} {case:?}"),
                );
            }
        }
    }
}

fn geometry(case: &Case) -> crate::ops::conv2d_nchw::ConvGeometry {
    let shape = |dims: [usize; 4]| Shape::from(dims.to_vec());
    crate::ops::conv2d_nchw::ConvGeometry::new(
        &shape(case.input),
        &shape(case.weight_shape()),
        &case.options(),
    )
}

/// The cases above take both input-gradient paths: stride 1 as a forward convolution of the
/// output gradient (padding up to `d·(k-1)`), col2im for strides, pointwise kernels and wider
/// padding.
#[test]
fn stride_one_input_gradients_run_as_forward_convolutions() {
    let as_forward: Vec<bool> = CASES
        .iter()
        .map(|case| geometry(case).output_grad_as_input().is_some())
        .collect();
    assert_eq!(
        as_forward,
        [
            true, false, true, false, false, false, true, false, true, true, true, true, false
        ]
    );
}

/// The cases above take both forward and weight-gradient paths: the direct kernels for every
/// kernel but the pointwise one (which is a plain GEMM).
#[cfg(feature = "simd")]
#[test]
fn non_pointwise_kernels_run_direct() {
    let direct: Vec<bool> = CASES
        .iter()
        .map(|case| geometry(case).runs_direct())
        .collect();
    assert_eq!(
        direct,
        [
            true, true, true, true, false, true, true, true, true, true, true, true, true
        ]
    );
}

#[test]
fn half_precision_gradients_are_computed_in_f32() {
    let case = CASES[1];
    let data = ConvData::new(&case);
    let expected = data.reference(&case);
    let actual = data.backend(&case, DType::F16);
    for ((a, e), name) in actual.iter().zip(&expected).zip(["y", "dx", "dw"]) {
        // f16 inputs and outputs: ~3 significant digits
        assert_close(a, e, 2e-2, name);
    }
}

/// Runs `f` on a rayon pool of `threads` threads.
fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

fn batch_norm_case() -> (Vec<f64>, [usize; 4], Vec<f64>, Vec<f64>, Vec<f64>) {
    let shape = [5, 3, 4, 3];
    let x: Vec<f64> = pseudo_random(volume(shape), 5)
        .iter()
        .enumerate()
        .map(|(i, v)| 3.0 * v + (i / 12 % 3) as f64) // per-channel offsets
        .collect();
    let gamma = pseudo_random(3, 6).iter().map(|v| 1.0 + v / 2.0).collect();
    let beta = pseudo_random(3, 7);
    let dy = pseudo_random(volume(shape), 8);
    (x, shape, gamma, beta, dy)
}

fn batch_norm_outputs(dtype: DType) -> Vec<Vec<f64>> {
    let (x, shape, gamma, beta, dy) = batch_norm_case();
    let x = tensor_f64(&x, &shape, dtype);
    let gamma = tensor_f64(&gamma, &[3], dtype);
    let beta = tensor_f64(&beta, &[3], dtype);
    let dy = tensor_f64(&dy, &shape, dtype);
    let train = Flex::batch_norm_train(x.clone(), gamma.clone(), beta, 1e-5);
    let grads = Flex::batch_norm_train_backward(
        x,
        gamma,
        train.mean.clone(),
        train.variance.clone(),
        1e-5,
        dy,
    );
    [
        &train.output,
        &train.mean,
        &train.variance,
        &grads.x_grad,
        &grads.gamma_grad,
        &grads.beta_grad,
    ]
    .iter()
    .map(|t| values(t))
    .collect()
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    for case in &CASES {
        let data = ConvData::new(case);
        let one = with_threads(1, || data.backend(case, DType::F32));
        for threads in [2, 3] {
            let many = with_threads(threads, || data.backend(case, DType::F32));
            assert_eq!(one, many, "{threads} threads, {case:?}");
        }
    }
    let one = with_threads(1, || batch_norm_outputs(DType::F32));
    for threads in [2, 3] {
        let many = with_threads(threads, || batch_norm_outputs(DType::F32));
        assert_eq!(one, many, "batch norm, {threads} threads");
    }
}

/// Training batch statistics of a channel far from zero (mean 1e6, standard deviation about 1,
/// where `Σx²/M - μ²` in f64 without a shift keeps about four of the variance's digits; the
/// second case puts the first sample's first element far off): the mean and variance of the
/// f32 values match a two-pass computation in f64 of the same values.
#[test]
fn batch_norm_statistics_hold_far_from_zero() {
    let shape = [4, 1, 5, 7];
    for outlier in [None, Some(-1.0e6)] {
        let mut x: Vec<f64> = pseudo_random(volume(shape), 11)
            .iter()
            .map(|v| (1.0e6 + 2.0 * v) as f32 as f64)
            .collect();
        if let Some(value) = outlier {
            x[0] = value;
        }
        let count = x.len() as f64;
        let mean = x.iter().sum::<f64>() / count;
        let variance = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / count;
        let train = Flex::batch_norm_train(
            tensor_f64(&x, &shape, DType::F32),
            tensor_f64(&[1.0], &[1], DType::F32),
            tensor_f64(&[0.0], &[1], DType::F32),
            1e-5,
        );
        let (got_mean, got_variance) = (values(&train.mean)[0], values(&train.variance)[0]);
        // f32 results: one rounding of the exact statistics
        assert!(
            (got_mean - mean).abs() <= mean.abs() * 1e-7,
            "{outlier:?}: mean {got_mean} vs {mean}"
        );
        assert!(
            (got_variance - variance).abs() <= variance * 1e-6,
            "{outlier:?}: variance {got_variance} vs {variance}"
        );
    }
}

/// Inference batch norm equals, bit for bit, Burn's default composition of four broadcast
/// operations (the `ModuleOps::batch_norm` it overrides), in f32 and f64; spatial size 12 also
/// covers runs that are not a multiple of the kernels' 8 lanes.
#[test]
fn batch_norm_inference_is_the_default_composition_bitwise() {
    use burn_backend::Scalar;
    use burn_backend::ops::FloatTensorOps;
    let (x, shape, gamma, beta, _) = batch_norm_case();
    let mean = pseudo_random(3, 9);
    let variance: Vec<f64> = pseudo_random(3, 10).iter().map(|v| v.abs() + 0.5).collect();
    for dtype in [DType::F32, DType::F64] {
        let t = |data: &[f64], shape: &[usize]| tensor_f64(data, shape, dtype);
        let column = |data: &[f64]| t(data, &[1, 3, 1, 1]);
        let fused = Flex::batch_norm(
            t(&x, &shape),
            t(&gamma, &[3]),
            t(&beta, &[3]),
            t(&mean, &[3]),
            t(&variance, &[3]),
            1e-5,
        );
        let std = Flex::float_sqrt(Flex::float_add_scalar(
            column(&variance),
            Scalar::Float(1e-5),
        ));
        let normalized = Flex::float_div(Flex::float_sub(t(&x, &shape), column(&mean)), std);
        let composed = Flex::float_add(Flex::float_mul(normalized, column(&gamma)), column(&beta));
        assert_eq!(fused.shape(), composed.shape());
        assert_eq!(values(&fused), values(&composed), "{dtype:?}");
    }
}

#[test]
fn batch_norm_matches_its_definition_and_finite_differences() {
    let (x, shape, gamma, beta, dy) = batch_norm_case();
    let [n, c, h, w] = shape;
    let spatial = h * w;
    let channel = |i: usize| i / spatial % c;
    // Forward from the definition (biased variance), in f64.
    let forward = |x: &[f64], gamma: &[f64], beta: &[f64]| -> Vec<f64> {
        let count = (n * spatial) as f64;
        let mut mean = vec![0.0; c];
        let mut var = vec![0.0; c];
        x.iter()
            .enumerate()
            .for_each(|(i, v)| mean[channel(i)] += v / count);
        x.iter()
            .enumerate()
            .for_each(|(i, v)| var[channel(i)] += (v - mean[channel(i)]).powi(2) / count);
        x.iter()
            .enumerate()
            .map(|(i, v)| {
                let k = channel(i);
                (v - mean[k]) / (var[k] + 1e-5).sqrt() * gamma[k] + beta[k]
            })
            .collect()
    };
    let loss = |x: &[f64], gamma: &[f64], beta: &[f64]| -> f64 {
        forward(x, gamma, beta)
            .iter()
            .zip(&dy)
            .map(|(y, g)| y * g)
            .sum()
    };
    let outputs = batch_norm_outputs(DType::F64);
    assert_close(&outputs[0], &forward(&x, &gamma, &beta), 1e-12, "y");

    // d(Σ dy·y)/dθ by central differences, step 1e-6 (error ~1e-10 in f64).
    let step = 1e-6;
    let numeric = |which: usize, len: usize| -> Vec<f64> {
        (0..len)
            .map(|i| {
                let mut params = [x.clone(), gamma.clone(), beta.clone()];
                params[which][i] += step;
                let plus = loss(&params[0], &params[1], &params[2]);
                params[which][i] -= 2.0 * step;
                let minus = loss(&params[0], &params[1], &params[2]);
                (plus - minus) / (2.0 * step)
            })
            .collect()
    };
    assert_close(&outputs[3], &numeric(0, x.len()), 1e-6, "dx");
    assert_close(&outputs[4], &numeric(1, c), 1e-6, "dgamma");
    assert_close(&outputs[5], &numeric(2, c), 1e-6, "dbeta");

    // f32 agrees with f64 to single precision.
    for (single, double) in batch_norm_outputs(DType::F32).iter().zip(&outputs) {
        assert_close(single, double, 1e-5, "f32 vs f64");
    }
}

#[test]
fn empty_batches_give_empty_or_zero_gradients() {
    let case = Case {
        input: [0, 3, 5, 7],
        ..CASES[0]
    };
    let weight = pseudo_random(volume(case.weight_shape()), 1);
    let x = tensor_f64(&[], &case.input, DType::F32);
    let w = tensor_f64(&weight, &case.weight_shape(), DType::F32);
    let dy = tensor_f64(&[], &case.output_shape(), DType::F32);
    let dx = Flex::conv2d_x_backward(x.clone(), w.clone(), dy.clone(), case.options());
    assert_eq!(dx.shape().to_vec(), case.input.to_vec());
    let dw = Flex::conv2d_weight_backward(x, w, dy, case.options());
    assert_eq!(values(&dw), vec![0.0; volume(case.weight_shape())]);
}

/// Milliseconds per call of each kernel on ResNet-20's layer shapes at batch 64 (a profile aid,
/// not a test: `cargo test --release --lib kernel_timings -- --ignored --nocapture`).
#[test]
#[ignore]
fn kernel_timings() {
    extern crate std;
    use std::time::Instant;
    for (c, side, stride) in [(16, 32, 1), (16, 32, 2), (32, 16, 1), (64, 8, 1)] {
        let case = Case {
            input: [64, c, side, side],
            channels_out: if stride == 2 { 2 * c } else { c },
            kernel: [3, 3],
            stride: [stride, stride],
            padding: [(1, 1), (1, 1)],
            dilation: [1, 1],
            groups: 1,
        };
        let data = ConvData::new(&case);
        let x = tensor_f64(&data.x, &case.input, DType::F32);
        let w = tensor_f64(&data.w, &case.weight_shape(), DType::F32);
        let dy = tensor_f64(&data.dy, &case.output_shape(), DType::F32);
        let time = |f: &dyn Fn()| {
            f();
            // the best of 5 means of 10 calls
            (0..5)
                .map(|_| {
                    let started = Instant::now();
                    for _ in 0..10 {
                        f();
                    }
                    started.elapsed().as_secs_f64() * 1000.0 / 10.0
                })
                .fold(f64::INFINITY, f64::min)
        };
        let fwd = time(&|| {
            Flex::conv2d(x.clone(), w.clone(), None, case.options());
        });
        let dx = time(&|| {
            Flex::conv2d_x_backward(x.clone(), w.clone(), dy.clone(), case.options());
        });
        let dw = time(&|| {
            Flex::conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), case.options());
        });
        let gamma = tensor_f64(&vec![1.0; c], &[c], DType::F32);
        let bn = time(&|| {
            Flex::batch_norm_train(x.clone(), gamma.clone(), gamma.clone(), 1e-5);
        });
        let bn_back = time(&|| {
            let t = Flex::batch_norm_train(x.clone(), gamma.clone(), gamma.clone(), 1e-5);
            Flex::batch_norm_train_backward(
                x.clone(),
                gamma.clone(),
                t.mean,
                t.variance,
                1e-5,
                x.clone(),
            );
        });
        let bn_relu_back = time(&|| {
            let t = Flex::batch_norm_train(x.clone(), gamma.clone(), gamma.clone(), 1e-5);
            let z = Flex::relu(t.output);
            let g = Flex::relu_backward(z, x.clone());
            Flex::batch_norm_train_backward(x.clone(), gamma.clone(), t.mean, t.variance, 1e-5, g);
        });
        let fused_back = time(&|| {
            use crate::ops::batch_norm_relu::*;
            let [_, mean, var, scale] = batch_norm_relu_train(&x, &gamma, &gamma, 1e-5);
            batch_norm_relu_train_backward(&x, [&gamma, &gamma, &mean, &var, &scale], 1e-5, &x);
        });
        let flops = 2.0 * volume(case.output_shape()) as f64 * (c * 9) as f64;
        std::println!(
            "{case:?}\n  fwd {fwd:.2} ms ({:.1} GFLOP/s)  dx {dx:.2} ms  dw {dw:.2} ms  bn {bn:.2} ms  bn+back {bn_back:.2} ms  bn+relu+backs {bn_relu_back:.2} ms  fused {fused_back:.2} ms",
            flops / fwd / 1e6
        );
    }
}

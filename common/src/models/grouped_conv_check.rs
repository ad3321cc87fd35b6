//! Grouped and depthwise convolutions (MobileNet, EfficientNet) checked against a naive
//! reference, forward and backward, on the CPU backend and on the default device (wgpu in CI,
//! CUDA under `make test-cuda`). The reference is the definition evaluated in f64 loops:
//! `y[b, o, i, j] = sum_{c in group(o), u, v} x[b, c, s i + u - p, s j + v - p] w[o, c', u, v]`,
//! and for `L = sum(y * g)`: `dL/dw[o, c', u, v] = sum_{b, i, j} g[b, o, i, j] x[...]`,
//! `dL/dx[b, c, ...] = sum g[b, o, i, j] w[o, c', u, v]` over the outputs that read it.
//!
//! Tolerance: `1e-4 (1 + |ref|)` for f32 arithmetic; where the default device computes in TF32
//! (CUDA, [`crate::test_precision`]) each product may be off by up to `2^-10` of its magnitude,
//! so that check adds `2^-10 sum |products|` of the element. Each sum has fewer than 1024
//! products, so a missed or doubled product of average size still exceeds the allowance.

use crate::test_precision::{TF32_PRODUCT_ERROR, default_device_uses_tf32};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};

struct Shape {
    batch: usize,
    c_in: usize,
    c_out: usize,
    groups: usize,
    k: usize,
    stride: usize,
    pad: usize,
    side: usize,
}

impl Shape {
    fn out_side(&self) -> usize {
        (self.side + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Calls `f(y_index, x_index, w_index)` for every product of the sum (flat NCHW / OIHW indices).
    fn for_each_product(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (cig, cog, n) = (self.c_in / self.groups, self.c_out / self.groups, self.out_side());
        for b in 0..self.batch {
            for o in 0..self.c_out {
                let group = o / cog;
                for i in 0..n {
                    for j in 0..n {
                        let y = ((b * self.c_out + o) * n + i) * n + j;
                        for cl in 0..cig {
                            let c = group * cig + cl;
                            for u in 0..self.k {
                                for v in 0..self.k {
                                    let (r, q) = (
                                        (self.stride * i + u) as isize - self.pad as isize,
                                        (self.stride * j + v) as isize - self.pad as isize,
                                    );
                                    if r < 0 || q < 0 || r as usize >= self.side || q as usize >= self.side {
                                        continue;
                                    }
                                    let x = ((b * self.c_in + c) * self.side + r as usize) * self.side + q as usize;
                                    let w = ((o * cig + cl) * self.k + u) * self.k + v;
                                    f(y, x, w);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn host(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn check(shape: &Shape, device: &Device, tf32: bool) {
    let ad = device.clone().autodiff();
    let n = shape.out_side();
    let x =
        Tensor::<4>::random([shape.batch, shape.c_in, shape.side, shape.side], Distribution::Normal(0.0, 1.0), device);
    let w = Tensor::<4>::random(
        [shape.c_out, shape.c_in / shape.groups, shape.k, shape.k],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let g = Tensor::<4>::random([shape.batch, shape.c_out, n, n], Distribution::Normal(0.0, 1.0), device);
    let (xh, wh, gh) = (host(x.clone()), host(w.clone()), host(g.clone()));

    let xa = Tensor::<4>::from_data(x.into_data(), &ad).require_grad();
    let wa = Tensor::<4>::from_data(w.into_data(), &ad).require_grad();
    let options = ConvOptions::new([shape.stride; 2], [shape.pad; 2], [1, 1], shape.groups);
    let y = conv2d(xa.clone(), wa.clone(), None, options);
    let got_y = host(y.clone().inner());
    let grads = (y * Tensor::<4>::from_data(g.into_data(), &ad)).sum().backward();
    let got_dx = host(xa.grad(&grads).unwrap());
    let got_dw = host(wa.grad(&grads).unwrap());

    // Each reference element, and the sum of its products' magnitudes (for the TF32 bound).
    let (mut want_y, mut want_dx, mut want_dw) =
        (vec![(0f64, 0f64); gh.len()], vec![(0f64, 0f64); xh.len()], vec![(0f64, 0f64); wh.len()]);
    let add = |acc: &mut (f64, f64), a: f32, b: f32| {
        acc.0 += a as f64 * b as f64;
        acc.1 += (a as f64 * b as f64).abs();
    };
    shape.for_each_product(|yi, xi, wi| {
        add(&mut want_y[yi], xh[xi], wh[wi]);
        add(&mut want_dx[xi], gh[yi], wh[wi]);
        add(&mut want_dw[wi], gh[yi], xh[xi]);
    });
    for (name, got, want) in [("output", &got_y, &want_y), ("dL/dx", &got_dx, &want_dx), ("dL/dw", &got_dw, &want_dw)] {
        assert_eq!(got.len(), want.len(), "{name}");
        for (k, (a, (b, magnitude))) in got.iter().zip(want).enumerate() {
            let bound = 1e-4 * (1.0 + b.abs()) + if tf32 { TF32_PRODUCT_ERROR * magnitude } else { 0.0 };
            assert!(
                (*a as f64 - b).abs() <= bound,
                "{name}[{k}]: {a} vs reference {b}, bound {bound:.2e} (groups {})",
                shape.groups
            );
        }
    }
}

/// `(c_in, c_out, groups, stride)`: depthwise, depthwise with channel multiplier 2, two
/// groups, dense, depthwise strided.
const LAYOUTS: [(usize, usize, usize, usize); 5] =
    [(4, 4, 4, 1), (4, 8, 4, 2), (6, 4, 2, 1), (4, 6, 1, 2), (8, 8, 8, 2)];

fn check_layouts(device: &Device, tf32: bool, kernel_sizes: impl Fn(usize) -> Vec<usize>) {
    for (index, (c_in, c_out, groups, stride)) in LAYOUTS.into_iter().enumerate() {
        for k in kernel_sizes(index) {
            let shape = Shape { batch: 2, c_in, c_out, groups, k, stride, pad: k / 2, side: 7 };
            check(&shape, device, tf32);
        }
    }
}

/// Every layout with 3x3 and 5x5 kernels.
#[test]
fn grouped_and_depthwise_convolutions_match_the_reference_on_the_cpu() {
    check_layouts(&Device::flex(), false, |_| vec![3, 5]);
}

/// The default device: wgpu (lavapipe in CI), CUDA when `BURN_DEVICE=cuda`. Every layout once,
/// 3x3 and 5x5 kernels alternating (each new shape costs lavapipe an autotuning run of three
/// convolution kernels, forward and both gradients). With the TF32 allowance on CUDA.
#[test]
fn grouped_and_depthwise_convolutions_match_the_reference_on_the_default_device() {
    check_layouts(&Device::default(), default_device_uses_tf32(), |index| vec![[3, 5][index % 2]]);
}

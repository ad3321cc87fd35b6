//! Grouped and depthwise convolutions (MobileNet, EfficientNet) checked against a naive
//! reference, forward and backward, on the CPU backend and on the default device (wgpu in CI,
//! CUDA under `make test-cuda`). The reference is the definition evaluated in f64 loops:
//! `y[b, o, i, j] = sum_{c in group(o), u, v} x[b, c, s i + u - p, s j + v - p] w[o, c', u, v]`,
//! and for `L = sum(y * g)`: `dL/dw[o, c', u, v] = sum_{b, i, j} g[b, o, i, j] x[...]`,
//! `dL/dx[b, c, ...] = sum g[b, o, i, j] w[o, c', u, v]` over the outputs that read it.

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

fn check(shape: &Shape, device: &Device) {
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

    let (mut want_y, mut want_dx, mut want_dw) = (vec![0f64; gh.len()], vec![0f64; xh.len()], vec![0f64; wh.len()]);
    shape.for_each_product(|yi, xi, wi| {
        want_y[yi] += xh[xi] as f64 * wh[wi] as f64;
        want_dx[xi] += gh[yi] as f64 * wh[wi] as f64;
        want_dw[wi] += gh[yi] as f64 * xh[xi] as f64;
    });
    for (name, got, want) in [("output", &got_y, &want_y), ("dL/dx", &got_dx, &want_dx), ("dL/dw", &got_dw, &want_dw)] {
        assert_eq!(got.len(), want.len(), "{name}");
        for (k, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{name}[{k}]: {a} vs reference {b} (groups {})",
                shape.groups
            );
        }
    }
}

/// `(c_in, c_out, groups, stride)`: depthwise, depthwise with channel multiplier 2, two
/// groups, dense, depthwise strided.
const LAYOUTS: [(usize, usize, usize, usize); 5] =
    [(4, 4, 4, 1), (4, 8, 4, 2), (6, 4, 2, 1), (4, 6, 1, 2), (8, 8, 8, 2)];

fn check_layouts(device: &Device, kernel_sizes: impl Fn(usize) -> Vec<usize>) {
    for (index, (c_in, c_out, groups, stride)) in LAYOUTS.into_iter().enumerate() {
        for k in kernel_sizes(index) {
            let shape = Shape { batch: 2, c_in, c_out, groups, k, stride, pad: k / 2, side: 7 };
            check(&shape, device);
        }
    }
}

/// Every layout with 3x3 and 5x5 kernels.
#[test]
fn grouped_and_depthwise_convolutions_match_the_reference_on_the_cpu() {
    check_layouts(&Device::flex(), |_| vec![3, 5]);
}

/// The default device: wgpu (lavapipe in CI), CUDA when `BURN_DEVICE=cuda`. Every layout once,
/// 3x3 and 5x5 kernels alternating (each new shape costs lavapipe an autotuning run of three
/// convolution kernels, forward and both gradients).
#[test]
fn grouped_and_depthwise_convolutions_match_the_reference_on_the_default_device() {
    check_layouts(&Device::default(), |index| vec![[3, 5][index % 2]]);
}

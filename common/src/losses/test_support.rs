//! Shared inputs and a finite-difference gradient check for the loss tests (here and in the
//! distillation methods of kd-tools).

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

/// Student logits of the loss tests.
pub const STUDENT: [[f32; 3]; 2] = [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]];
/// Teacher logits of the loss tests.
pub const TEACHER: [[f32; 3]; 2] = [[3.0, 1.0, 0.0], [0.5, 0.5, 0.0]];

/// A `[2, 3]` tensor.
pub fn value(device: &Device, v: [[f32; 3]; 2]) -> Tensor<2> {
    Tensor::from_data(v, device)
}

/// `softmax(v / T)`.
pub fn probs(device: &Device, v: [[f32; 3]; 2], temperature: f32) -> Tensor<2> {
    softmax(value(device, v).div_scalar(temperature), 1)
}

/// Compares the autodiff gradient of `loss` at [`STUDENT`] with central finite differences
/// (step 1e-2, f32) within 2e-3.
pub fn check_gradient(loss: impl Fn(Tensor<2>, &Device) -> Tensor<1>) {
    check_gradient_at(STUDENT, loss);
}

/// [`check_gradient`] at any `[R, 3]` point.
pub fn check_gradient_at<const R: usize>(at: [[f32; 3]; R], loss: impl Fn(Tensor<2>, &Device) -> Tensor<1>) {
    let device = Device::default();
    let ad = device.clone().autodiff();
    let z = Tensor::<2>::from_data(TensorData::from(at), &ad).require_grad();
    let grads = loss(z.clone(), &ad).backward();
    let analytic: Vec<f32> = z.grad(&grads).expect("gradient").into_data().try_to_vec().unwrap();
    let h = 1e-2f32;
    for i in 0..R * 3 {
        let mut plus = at;
        let mut minus = at;
        plus[i / 3][i % 3] += h;
        minus[i / 3][i % 3] -= h;
        let f =
            |v: [[f32; 3]; R]| -> f32 { loss(Tensor::from_data(TensorData::from(v), &device), &device).into_scalar() };
        let numeric = (f(plus) - f(minus)) / (2.0 * h);
        assert!(
            (numeric - analytic[i]).abs() < 2e-3,
            "element {i}: autodiff {} vs finite difference {numeric}",
            analytic[i]
        );
    }
}

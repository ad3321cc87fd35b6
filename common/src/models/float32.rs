//! One float type for every parameter: weights stored as f16, bf16 or f64 (a foreign state
//! dict, or a checkpoint written from one) load with the file's dtype, and the kernels of a
//! network need all its tensors in one type. kdkit trains and evaluates in f32.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, FloatDType, Tensor};

/// `module` with every float parameter cast to f32 (those already f32 untouched), each still a
/// leaf with its `require_grad` setting.
pub fn to_f32<M: Module>(module: M) -> M {
    module.map(&mut ToF32)
}

struct ToF32;

impl ModuleMapper for ToF32 {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| {
            if tensor.dtype() == DType::F32 {
                return tensor;
            }
            // On the inner backend, then back as a fresh leaf (an op result cannot require grad).
            let (autodiff, tracked) = (tensor.is_autodiff(), tensor.is_require_grad());
            let cast = tensor.inner().cast(FloatDType::F32);
            if autodiff { cast.autodiff().set_require_grad(tracked) } else { cast }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, ModelSpec};
    use burn::module::ModuleVisitor;
    use burn::tensor::{Device, Distribution, Tolerance};

    struct Dtypes(Vec<DType>);

    impl ModuleVisitor for Dtypes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().dtype());
        }
    }

    /// A network whose parameters are f64 (as a file of f64 tensors loads) becomes all f32 and
    /// computes what the f32 original computes.
    #[test]
    fn f64_parameters_become_f32() {
        let device = Device::default();
        let spec = ModelSpec { width: 0.25, ..ModelSpec::new(Arch::SmallCnn, 1, 3) };
        let network = spec.init(&device).unwrap();
        let wide = network.clone().map(&mut Cast(FloatDType::F64));
        let mut seen = Dtypes(vec![]);
        wide.visit(&mut seen);
        assert!(seen.0.iter().all(|d| *d == DType::F64), "{:?}", seen.0);
        let narrow = to_f32(wide);
        let mut seen = Dtypes(vec![]);
        narrow.visit(&mut seen);
        assert!(seen.0.iter().all(|d| *d == DType::F32), "{:?}", seen.0);
        let x = Tensor::<4>::random([2, 1, 8, 8], Distribution::Default, &device);
        let (a, b) = (network.valid().forward(x.clone()).into_data(), narrow.valid().forward(x).into_data());
        a.assert_approx_eq::<f32>(&b, Tolerance::absolute(1e-6));
    }

    struct Cast(FloatDType);

    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|t| t.cast(dtype))
        }
    }
}

//! `--device auto|cpu|wgpu[:N]|cuda[:N]` and the checks that turn a missing driver into a clear
//! error instead of a panic deep inside a backend.
//!
//! `auto` picks CUDA when it is compiled in and a driver answers, then a hardware wgpu adapter
//! (never a software Vulkan adapter such as lavapipe or llvmpipe when Flex is compiled in), then
//! the CPU (Flex). `wgpu` on its own accepts any Vulkan/Metal/DX12 adapter, software included,
//! which is how CI runs the wgpu backend on a machine without a GPU.

use crate::error::{Error, Result};
use burn::tensor::Device;
use std::fmt;
use std::str::FromStr;

/// What the user asked for with `--device`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// CUDA, else a hardware wgpu adapter, else the CPU.
    Auto,
    /// The CPU through Burn's Flex backend.
    Cpu,
    /// A wgpu adapter; `None` lets wgpu choose the best one.
    Wgpu(Option<usize>),
    /// A CUDA device by index.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let bad = || Error::BadDeviceSpec(text.to_string());
        let (name, index) = match text.split_once(':') {
            Some((name, index)) => (name, Some(index.parse::<usize>().map_err(|_| bad())?)),
            None => (text, None),
        };
        match (name, index) {
            ("auto", None) => Ok(Self::Auto),
            ("cpu" | "flex", None | Some(0)) => Ok(Self::Cpu),
            ("wgpu", index) => Ok(Self::Wgpu(index)),
            ("cuda", index) => Ok(Self::Cuda(index.unwrap_or(0))),
            _ => Err(bad()),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;
    fn try_from(text: String) -> Result<Self> {
        text.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(spec: DeviceSpec) -> String {
        spec.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Wgpu(None) => write!(f, "wgpu"),
            Self::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// The backend a resolved device runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Burn's Flex CPU backend.
    Flex,
    /// wgpu (Vulkan, Metal or DX12).
    Wgpu,
    /// CUDA.
    Cuda,
}

/// A device ready for tensors, with a human-readable description for logs and reports.
#[derive(Clone, Debug)]
pub struct ResolvedDevice {
    /// The Burn device (without autodiff).
    pub device: Device,
    /// Backend of the device.
    pub backend: BackendKind,
    /// For example `cpu (flex, 2 threads)` or `wgpu: llvmpipe (Vulkan, software)`.
    pub description: String,
    /// The device's index in `--device`'s syntax: N of `cuda:N` or `wgpu:N`; 0 for the CPU.
    pub ordinal: usize,
}

/// Turns a `--device` choice into a usable device, or an error that says how to get one.
pub fn resolve(spec: &DeviceSpec) -> Result<ResolvedDevice> {
    match spec {
        DeviceSpec::Cpu => cpu(),
        DeviceSpec::Cuda(index) => cuda(*index),
        DeviceSpec::Wgpu(index) => wgpu(*index, true),
        DeviceSpec::Auto => {
            if cfg!(feature = "cuda") && cuda_driver_device_count().is_ok_and(|n| n > 0) {
                return cuda(0);
            }
            // Software adapters are accepted only when no CPU backend is compiled in. With Flex
            // compiled in, wgpu is probed only where a GPU can be: enumerating adapters starts
            // the Vulkan loader and its software driver, which costs time and prints warnings
            // on machines that have no GPU at all.
            if cfg!(feature = "wgpu")
                && (!cfg!(feature = "flex") || gpu_device_nodes_present())
                && let Ok(device) = wgpu(None, !cfg!(feature = "flex"))
            {
                return Ok(device);
            }
            cpu()
        }
    }
}

/// Whether this machine exposes a GPU to user space: on Linux a DRM render node or an NVIDIA
/// device file (a hardware Vulkan driver needs one of them); elsewhere assumed.
fn gpu_device_nodes_present() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let render_node = std::fs::read_dir("/dev/dri")
        .map(|entries| entries.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with("renderD")))
        .unwrap_or(false);
    render_node || std::path::Path::new("/dev/nvidia0").exists()
}

/// Threads of CPU work: `RAYON_NUM_THREADS` when set to a positive number (the size of the pool
/// Flex computes on), else the available cores.
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(feature = "flex")]
fn cpu() -> Result<ResolvedDevice> {
    let threads = cpu_threads();
    Ok(ResolvedDevice {
        device: Device::flex(),
        backend: BackendKind::Flex,
        description: format!("cpu (flex, {threads} threads)"),
        ordinal: 0,
    })
}

#[cfg(not(feature = "flex"))]
fn cpu() -> Result<ResolvedDevice> {
    Err(Error::BackendNotCompiled { backend: "flex", hint: "the pure-Rust CPU backend" })
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<ResolvedDevice> {
    // Burn's CUDA runtime panics when libcuda.so is missing: ask the driver first.
    let names = crate::cuda_probe::device_names().map_err(Error::DeviceUnavailable)?;
    let Some(name) = names.get(index) else {
        return Err(Error::DeviceUnavailable(format!(
            "CUDA device {index} requested but the driver reports {} device(s)",
            names.len()
        )));
    };
    Ok(ResolvedDevice {
        device: Device::cuda(index),
        backend: BackendKind::Cuda,
        description: format!("cuda:{index} ({name})"),
        ordinal: index,
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Result<ResolvedDevice> {
    Err(Error::BackendNotCompiled {
        backend: "cuda",
        hint: "run scripts/setup-cuda.sh first; see docs/devices.md, section CUDA",
    })
}

/// Number of CUDA devices the driver reports, or why the driver cannot be used.
pub fn cuda_driver_device_count() -> std::result::Result<usize, String> {
    crate::cuda_probe::device_names().map(|names| names.len())
}

#[cfg(feature = "wgpu")]
fn wgpu(index: Option<usize>, allow_software: bool) -> Result<ResolvedDevice> {
    use burn::tensor::DeviceKind;
    use burn::tensor::wgpu::{WgpuBackend, wgpu};

    let native = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = native;
    let instance = wgpu::Instance::new(descriptor);
    let adapters: Vec<wgpu::AdapterInfo> =
        block_on(instance.enumerate_adapters(native)).iter().map(|a| a.get_info()).collect();
    let no_adapter = |what: &str| {
        Error::DeviceUnavailable(format!(
            "no usable wgpu adapter{what}: wgpu needs a Vulkan, Metal or DX12 driver (GL is not \
             supported). On Debian/Ubuntu without a GPU: `apt-get install mesa-vulkan-drivers \
             libvulkan1` (software Vulkan, slow); otherwise install your GPU's Vulkan driver, or \
             use --device cpu. Adapters seen: {}",
            describe_adapters(&adapters)
        ))
    };
    let is_software = |info: &wgpu::AdapterInfo| info.device_type == wgpu::DeviceType::Cpu;
    let usable: Vec<&wgpu::AdapterInfo> = adapters.iter().filter(|a| allow_software || !is_software(a)).collect();
    let chosen = match index {
        Some(i) => *usable.get(i).ok_or_else(|| no_adapter(&format!(" with index {i}")))?,
        None => {
            let rank = |a: &wgpu::AdapterInfo| match a.device_type {
                wgpu::DeviceType::DiscreteGpu => 0,
                wgpu::DeviceType::IntegratedGpu => 1,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Other => 3,
                wgpu::DeviceType::Cpu => 4,
            };
            *usable.iter().min_by_key(|a| rank(a)).ok_or_else(|| no_adapter(""))?
        }
    };
    // Index of the chosen adapter among the adapters of its type, as cubecl counts them.
    let same_type_index = adapters
        .iter()
        .filter(|a| a.device_type == chosen.device_type)
        .position(|a| std::ptr::eq(a, chosen))
        .unwrap_or(0);
    let kind = match chosen.device_type {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(same_type_index),
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(same_type_index),
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(same_type_index),
        wgpu::DeviceType::Cpu => DeviceKind::Cpu,
        wgpu::DeviceType::Other => DeviceKind::DefaultDevice,
    };
    let api = match chosen.backend {
        wgpu::Backend::Metal => WgpuBackend::Metal,
        wgpu::Backend::Dx12 => WgpuBackend::Dx12,
        _ => WgpuBackend::Vulkan,
    };
    // A runtime can be initialised once per process: reuse the device of an earlier call.
    static INITIALISED: std::sync::Mutex<Vec<(String, Device)>> = std::sync::Mutex::new(Vec::new());
    let key = format!("{kind:?}/{api:?}");
    let mut initialised = INITIALISED.lock().unwrap_or_else(|e| e.into_inner());
    let device = match initialised.iter().find(|(k, _)| *k == key) {
        Some((_, device)) => device.clone(),
        None => {
            let device =
                Device::wgpu_options().device_kind(kind.clone()).graphics_api(api).init().map_err(|e| {
                    Error::DeviceUnavailable(format!("wgpu adapter {} failed to start: {e}", chosen.name))
                })?;
            initialised.push((key, device.clone()));
            device
        }
    };
    Ok(ResolvedDevice {
        device,
        backend: BackendKind::Wgpu,
        description: format!(
            "wgpu: {} ({:?}, {:?}{})",
            chosen.name,
            chosen.backend,
            chosen.device_type,
            if is_software(chosen) { ", software: slow" } else { "" }
        ),
        ordinal: usable.iter().position(|a| std::ptr::eq(*a, chosen)).unwrap_or(0),
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_index: Option<usize>, _allow_software: bool) -> Result<ResolvedDevice> {
    Err(Error::BackendNotCompiled { backend: "wgpu", hint: "the portable GPU backend" })
}

#[cfg(feature = "wgpu")]
fn describe_adapters(adapters: &[burn::tensor::wgpu::wgpu::AdapterInfo]) -> String {
    if adapters.is_empty() {
        return "none".into();
    }
    adapters.iter().map(|a| format!("{} ({:?}, {:?})", a.name, a.backend, a.device_type)).collect::<Vec<_>>().join(", ")
}

/// Runs a future to completion on this thread (wgpu's adapter enumeration is async).
#[cfg(feature = "wgpu")]
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("wgpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Wgpu(None));
        assert_eq!("wgpu:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Wgpu(Some(1)));
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        for bad in ["gpu", "cuda:x", "cpu:2", ""] {
            assert!(bad.parse::<DeviceSpec>().is_err(), "{bad}");
        }
        assert_eq!(DeviceSpec::Wgpu(Some(2)).to_string(), "wgpu:2");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_says_how_to_get_it() {
        let err = resolve(&DeviceSpec::Cuda(0)).unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}

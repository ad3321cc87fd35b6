//! Asks the CUDA driver (`libcuda.so.1`) whether it can be used, without linking to it.
//!
//! Burn's CUDA runtime panics when the driver library is missing; probing it with `dlopen`
//! first lets kdkit answer with an error that says what to install.

/// Number of CUDA devices, or a message that says why the driver cannot be used.
#[allow(unsafe_code)]
pub fn device_count() -> Result<usize, String> {
    const HINT: &str = "install the NVIDIA driver (libcuda.so.1) or use --device cpu / wgpu";
    // SAFETY: loading the NVIDIA driver library runs its initialisers, which is what every CUDA
    // program does; the two symbols are called with the signatures of the CUDA driver API.
    unsafe {
        let library = libloading::Library::new("libcuda.so.1")
            .or_else(|_| libloading::Library::new("libcuda.so"))
            .map_err(|e| format!("no CUDA driver found ({e}); {HINT}"))?;
        let init: libloading::Symbol<unsafe extern "C" fn(u32) -> i32> =
            library.get(b"cuInit\0").map_err(|e| format!("CUDA driver is unusable: {e}"))?;
        let status = init(0);
        if status != 0 {
            return Err(format!("CUDA driver failed to initialise (cuInit error {status}); {HINT}"));
        }
        let get_count: libloading::Symbol<unsafe extern "C" fn(*mut i32) -> i32> =
            library.get(b"cuDeviceGetCount\0").map_err(|e| format!("CUDA driver is unusable: {e}"))?;
        let mut count = 0i32;
        let status = get_count(&mut count);
        if status != 0 {
            return Err(format!("CUDA driver could not count devices (error {status})"));
        }
        // Keep the driver loaded for the CUDA runtime that follows.
        std::mem::forget(library);
        Ok(count.max(0) as usize)
    }
}

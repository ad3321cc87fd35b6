//! Asks the CUDA driver (`libcuda.so.1`) whether it can be used, without linking to it.
//!
//! Burn's CUDA runtime panics when the driver library is missing; probing it with `dlopen`
//! first lets kdkit answer with an error that says what to install.

/// The names of the CUDA devices (e.g. `NVIDIA H200`), in the driver's order, or a message that
/// says why the driver cannot be used.
#[allow(unsafe_code)]
pub fn device_names() -> Result<Vec<String>, String> {
    const HINT: &str = "install the NVIDIA driver (libcuda.so.1) or use --device cpu / wgpu";
    // SAFETY: loading the NVIDIA driver library runs its initialisers, which is what every CUDA
    // program does; the symbols are called with the signatures of the CUDA driver API
    // (cuInit, cuDeviceGetCount, cuDeviceGet, cuDeviceGetName), and the name buffer's length is
    // passed with it.
    unsafe {
        let library = libloading::Library::new("libcuda.so.1")
            .or_else(|_| libloading::Library::new("libcuda.so"))
            .map_err(|e| format!("no CUDA driver found ({e}); {HINT}"))?;
        let unusable = |e: libloading::Error| format!("CUDA driver is unusable: {e}");
        let init: libloading::Symbol<unsafe extern "C" fn(u32) -> i32> = library.get(b"cuInit\0").map_err(unusable)?;
        let status = init(0);
        if status != 0 {
            return Err(format!("CUDA driver failed to initialise (cuInit error {status}); {HINT}"));
        }
        let get_count: libloading::Symbol<unsafe extern "C" fn(*mut i32) -> i32> =
            library.get(b"cuDeviceGetCount\0").map_err(unusable)?;
        let mut count = 0i32;
        let status = get_count(&mut count);
        if status != 0 {
            return Err(format!("CUDA driver could not count devices (error {status})"));
        }
        let get_device: libloading::Symbol<unsafe extern "C" fn(*mut i32, i32) -> i32> =
            library.get(b"cuDeviceGet\0").map_err(unusable)?;
        let get_name: libloading::Symbol<unsafe extern "C" fn(*mut std::ffi::c_char, i32, i32) -> i32> =
            library.get(b"cuDeviceGetName\0").map_err(unusable)?;
        let names = (0..count.max(0))
            .map(|ordinal| {
                let mut device = 0i32;
                let mut buffer = [0 as std::ffi::c_char; 256];
                if get_device(&mut device, ordinal) != 0 || get_name(buffer.as_mut_ptr(), 256, device) != 0 {
                    return format!("CUDA device {ordinal}");
                }
                buffer[255] = 0;
                std::ffi::CStr::from_ptr(buffer.as_ptr()).to_string_lossy().into_owned()
            })
            .collect();
        // Keep the driver loaded for the CUDA runtime that follows.
        std::mem::forget(library);
        Ok(names)
    }
}

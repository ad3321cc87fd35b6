//! With the `cuda` feature, Debian's LLVM 22 `llvm-config` asks the linker for `-llibz3`;
//! Debian ships `libz3.so`. Give the linker a directory where `liblibz3.so` points at it.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("link-shim");
    let z3 = std::path::Path::new("/usr/lib/x86_64-linux-gnu/libz3.so");
    if z3.exists() && std::fs::create_dir_all(&out).is_ok() {
        let link = out.join("liblibz3.so");
        let _ = std::fs::remove_file(&link);
        #[cfg(unix)]
        let _ = std::os::unix::fs::symlink(z3, &link);
        println!("cargo:rustc-link-search=native={}", out.display());
    }
}

use crate::fixture::*;

/// Without a Vulkan driver wgpu would fall back to GL and panic; kdkit says what to install.
#[test]
fn wgpu_without_driver_is_a_clear_error() {
    let t = KdTest::new();
    let mut cmd = t.pretrain("run", "wgpu", &[]);
    cmd.env("VK_ICD_FILENAMES", "/nonexistent/icd.json").env("VK_DRIVER_FILES", "/nonexistent/icd.json");
    assert_input_error(&run(&mut cmd), &["no usable wgpu adapter", "mesa-vulkan-drivers"]);
}

#[test]
fn unknown_or_uncompiled_device_is_a_clear_error() {
    let t = KdTest::new();
    let output = run(&mut t.pretrain("run", "tpu", &[]));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid device `tpu`"));
    if !cfg!(feature = "cuda") {
        assert_input_error(
            &run(&mut t.pretrain("run", "cuda", &[])),
            &["cuda backend is not compiled", "--features cuda"],
        );
    }
}

//! Hostile input through the real binaries: every case exits with code 2 and a message that
//! names the file, never 101 (a panic), and arguments are checked before data is read.

use crate::fixture::*;

/// `--epochs 0` and a bad width are refused before the dataset is read (the data directory
/// does not even exist), and a missing label file is "not found" before any device starts.
#[test]
fn arguments_and_files_are_checked_first() {
    let t = KdTest::new();
    let mut cmd = t.cmd("kd-pretrain");
    cmd.args(["--data-dir", "/nonexistent", "--epochs", "0", "--device", "cpu", "--out", "r"]);
    let output = run(&mut cmd);
    assert_input_error(&output, &["epochs must be at least 1"]);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("nonexistent"));
    let mut cmd = t.cmd("kd-pretrain");
    cmd.args(["--data-dir", "/nonexistent", "--width", "0", "--device", "cpu", "--out", "r"]);
    assert_input_error(&run(&mut cmd), &["width multiplier"]);

    let mut cmd = t.cmd("kd-distill");
    cmd.args(["fkd", "--labels", "missing.h5", "--data-dir", "/nonexistent", "--device", "wgpu", "--out", "f"]);
    let output = run(&mut cmd);
    assert_input_error(&output, &["label file missing.h5: not found"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("byte offset") && !stderr.contains("wgpu"), "{stderr}");
}

/// A tool that computes on the CPU starts no Vulkan driver, and none prints the loader's
/// XDG_RUNTIME_DIR warning even when the variable is unset.
#[test]
fn no_vulkan_noise_on_the_cpu() {
    let t = KdTest::new();
    let output = run(t.pretrain("run", "cpu", &["--epochs", "1"]).env_remove("XDG_RUNTIME_DIR"));
    json_ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}

/// Corrupt files where data, checkpoints, sidecars, label files and configs are expected.
#[test]
fn corrupt_files_exit_2_naming_them() {
    let t = KdTest::new();
    // An IDX header whose dimensions overflow.
    let images = t.data().join("t10k-images-idx3-ubyte");
    let mut bytes = vec![0u8, 0, 8, 3];
    for _ in 0..3 {
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    }
    std::fs::write(&images, &bytes).unwrap();
    assert_input_error(&run(&mut t.pretrain("a", "cpu", &[])), &["t10k-images-idx3-ubyte", "more bytes"]);

    // A corrupt image in a folder dataset is a data error, not a configuration error.
    make_folder(&t.path("folder"), 12);
    std::fs::write(t.path("folder/a/0.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let output = run(&mut pretrain_folder(&t, "folder", "f"));
    assert_input_error(&output, &["0.png"]);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("invalid training configuration"));

    // A checkpoint whose sidecar is cut short, one from a newer kdkit, one with no sidecar.
    let t = KdTest::new();
    json_ok(&run(&mut t.pretrain("m", "cpu", &["--epochs", "1"])));
    let sidecar = t.path("m/model.json");
    let text = std::fs::read_to_string(&sidecar).unwrap();
    let eval = |t: &KdTest| {
        let mut cmd = t.cmd("kd-eval");
        cmd.arg(t.path("m/model.safetensors")).args(["--device", "cpu", "--data-dir"]).arg(t.data());
        run(&mut cmd)
    };
    std::fs::write(&sidecar, &text[..text.len() / 2]).unwrap();
    assert_input_error(&eval(&t), &["model.json"]);
    let mut newer: serde_json::Value = serde_json::from_str(&text).unwrap();
    newer["format_version"] = serde_json::json!(99);
    std::fs::write(&sidecar, newer.to_string()).unwrap();
    assert_input_error(&eval(&t), &["model.json", "newer kdkit", "upgrade"]);
    std::fs::remove_file(&sidecar).unwrap();
    assert_input_error(&eval(&t), &["model.json", "not found"]);

    // Garbage where a label file is expected.
    std::fs::write(t.path("labels.h5"), b"not hdf5 at all").unwrap();
    let mut cmd = t.cmd("kd-pack-labels");
    cmd.args(["stats", "labels.h5"]);
    assert_input_error(&run(&mut cmd), &["labels.h5"]);

    // A binary config file.
    std::fs::write(t.path("c.toml"), [0xffu8, 0xfe, 0x00, 0x12]).unwrap();
    assert_input_error(&run(&mut t.pretrain("c", "cpu", &["--config", "c.toml"])), &["c.toml"]);
}

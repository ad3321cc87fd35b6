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

/// An ImageNet-layout folder of 16-pixel JPEGs and PNGs with a truncated JPEG, a zero-byte file,
/// a CMYK JPEG, a 16-bit PNG and a greyscale PNG: kd-pretrain stops at the first unreadable file
/// (exit 2, naming it); with `--skip-bad-images` it trains, the two unreadable files are listed
/// in its summary and the CMYK, 16-bit and grey images are read; kd-eval leaves them out.
#[test]
fn bad_images_stop_the_run_or_are_skipped() {
    use kd_datasets::image::Image;
    let t = KdTest::new();
    for split in ["train", "val"] {
        for (class, value) in [("a", 40u8), ("b", 200u8)] {
            let dir = t.path(&format!("imgs/{split}/{class}"));
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..6u8 {
                let image = Image::new(16, 16, 3, (0..768).map(|p| value.wrapping_add((p % 7) as u8 + i)).collect());
                kd_datasets::folder::write_jpeg(&dir.join(format!("{i}.jpg")), &image, 90).unwrap();
            }
        }
        let a = t.path(&format!("imgs/{split}/a"));
        let good = std::fs::read(a.join("0.jpg")).unwrap();
        std::fs::write(a.join("truncated.jpg"), &good[..good.len() - 40]).unwrap();
        std::fs::write(a.join("empty.jpg"), b"").unwrap();
        let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(16, 16, |x, _| image::Rgb([x as u16 * 4000; 3]));
        deep.save(a.join("deep.png")).unwrap();
        image::GrayImage::from_fn(16, 16, |x, y| image::Luma([(x * y) as u8])).save(a.join("grey.png")).unwrap();
        let cmyk: Vec<u8> = (0..256).flat_map(|i| [i as u8, 30, 60, 0]).collect();
        let source = turbojpeg::Image {
            pixels: cmyk.as_slice(),
            width: 16,
            pitch: 64,
            height: 16,
            format: turbojpeg::PixelFormat::CMYK,
        };
        let bytes = turbojpeg::compress(source, 90, turbojpeg::Subsamp::None).unwrap();
        std::fs::write(a.join("cmyk.jpg"), &*bytes).unwrap();
    }
    let train = |extra: &[&str]| {
        let mut cmd = t.cmd("kd-pretrain");
        cmd.args(["--dataset", "folder", "--data-dir", "imgs", "--image-size", "8", "--device", "cpu", "--out", "r"]);
        cmd.args(["--arch", "small-cnn", "--width", "0.25", "--epochs", "1", "--batch-size", "4", "--workers", "2"]);
        cmd.args(extra);
        run(&mut cmd)
    };
    let output = train(&[]);
    assert_input_error(&output, &["imgs/", ".jpg", "cannot decode image"]);
    let summary = json_ok(&train(&["--skip-bad-images"]));
    let skipped = &summary["skipped_bad_images"];
    let files = skipped["files"].to_string();
    assert!(files.contains("truncated.jpg") && files.contains("empty.jpg"), "{skipped}");
    assert!(!files.contains("cmyk") && !files.contains("deep") && !files.contains("grey"), "{skipped}");
    assert!(skipped["count"].as_u64().unwrap() <= 4, "{skipped}");
    let mut eval = t.cmd("kd-eval");
    eval.arg(t.path("r/model.safetensors")).args(["--device", "cpu", "--data-dir", "imgs", "--skip-bad-images"]);
    let metrics = json_ok(&run(&mut eval));
    assert_eq!(metrics["skipped_bad_images"]["count"], 2, "{metrics}");
    assert_eq!(metrics["images"], 15, "17 validation files, two unreadable");
}

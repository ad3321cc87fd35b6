//! Test fixture: a temporary directory with a tiny Fashion-MNIST-shaped IDX dataset and a
//! command builder for the kdkit binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary directory holding `data/` (IDX files) and room for runs.
pub struct KdTest {
    pub dir: tempfile::TempDir,
}

/// Image side of the generated data.
pub const SIDE: usize = 8;

/// A learnable 3-class problem: class c has a bright horizontal band at rows 2c..2c+2, plus
/// deterministic noise.
pub fn make_images(count: usize, seed: usize) -> (Vec<u8>, Vec<u8>) {
    let mut pixels = Vec::with_capacity(count * SIDE * SIDE);
    let mut labels = Vec::with_capacity(count);
    for i in 0..count {
        let class = (i + seed) % 3;
        labels.push(class as u8);
        for y in 0..SIDE {
            for x in 0..SIDE {
                let band = if y / 2 == class { 200 } else { 30 };
                let noise = ((i * 31 + y * 7 + x * 13 + seed) % 40) as u8;
                pixels.push(band + noise);
            }
        }
    }
    (pixels, labels)
}

impl KdTest {
    /// Makes the directory and the dataset (48 training and 24 test images).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let (pixels, labels) = make_images(48, 0);
        kd_datasets::idx::write_split(&data, "train", SIDE, SIDE, &pixels, &labels, true).unwrap();
        let (pixels, labels) = make_images(24, 1);
        kd_datasets::idx::write_split(&data, "t10k", SIDE, SIDE, &pixels, &labels, false).unwrap();
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// A command for binary `name` with quiet progress and the environment kept (Vulkan loaders
    /// need theirs).
    pub fn cmd(&self, name: &str) -> Command {
        let mut cmd = Command::new(bin(name));
        cmd.current_dir(self.dir.path()).env("KD_NO_PROGRESS", "1").env_remove("RUST_LOG").env_remove("BURN_DEVICE");
        cmd
    }

    /// `kd-pretrain` on the tiny data with a tiny small-cnn; a flag in `extra` replaces the
    /// fixture's value for that flag.
    pub fn pretrain(&self, out: &str, device: &str, extra: &[&str]) -> Command {
        let defaults = [
            ("--dataset", "fashion-mnist"),
            ("--arch", "small-cnn"),
            ("--width", "0.25"),
            ("--epochs", "2"),
            ("--batch-size", "8"),
            ("--val-size", "8"),
            ("--lr", "0.05"),
            ("--workers", "1"),
        ];
        let mut cmd = self.cmd("kd-pretrain");
        cmd.arg("--data-dir").arg(self.data()).args(["--out", out, "--device", device]);
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        cmd.args(extra);
        cmd
    }
}

/// Path of a kdkit binary built by cargo for this test target.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "kd-pretrain" => PathBuf::from(env!("CARGO_BIN_EXE_kd-pretrain")),
        "kd-eval" => PathBuf::from(env!("CARGO_BIN_EXE_kd-eval")),
        "kd-bench" => PathBuf::from(env!("CARGO_BIN_EXE_kd-bench")),
        "kd-pack-labels" => PathBuf::from(env!("CARGO_BIN_EXE_kd-pack-labels")),
        "kd-distill" => PathBuf::from(env!("CARGO_BIN_EXE_kd-distill")),
        "kd-import" => PathBuf::from(env!("CARGO_BIN_EXE_kd-import")),
        "kd-prune" => PathBuf::from(env!("CARGO_BIN_EXE_kd-prune")),
        "kd-report" => PathBuf::from(env!("CARGO_BIN_EXE_kd-report")),
        "kd-seed" => PathBuf::from(env!("CARGO_BIN_EXE_kd-seed")),
        other => panic!("unknown binary {other}"),
    }
}

/// Runs a command, returning its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("binary should start")
}

/// Asserts success and returns stdout parsed as JSON.
pub fn json_ok(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "failed: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

/// Asserts exit code 2 and that stderr mentions every `needle`.
pub fn assert_input_error(output: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "expected exit 2, got {}; stderr:\n{stderr}", output.status);
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks `{needle}`:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "a panic instead of an error:\n{stderr}");
}

/// Files in `dir` (names only), sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Writes a 3-class image folder (`a`, `b`, `c`) of `count` 8x8 PNGs in the ImageNet layout.
pub fn make_folder(root: &Path, count: usize) {
    let (pixels, labels) = make_images(count, 0);
    for (i, label) in labels.iter().enumerate() {
        let dir = root.join(["a", "b", "c"][*label as usize]);
        std::fs::create_dir_all(&dir).unwrap();
        let image =
            kd_datasets::image::Image::new(SIDE, SIDE, 1, pixels[i * SIDE * SIDE..(i + 1) * SIDE * SIDE].to_vec());
        kd_datasets::folder::write_png(&dir.join(format!("{i}.png")), &image).unwrap();
    }
}

/// `kd-pretrain` of a tiny 3-class model on the folder at `root` into `out` (CPU).
pub fn pretrain_folder(t: &KdTest, root: &str, out: &str) -> Command {
    let mut cmd = t.cmd("kd-pretrain");
    cmd.args(["--dataset", "folder", "--data-dir", root, "--image-size", "8", "--out", out, "--device", "cpu"]);
    cmd.args(["--arch", "small-cnn", "--width", "0.25", "--epochs", "1", "--batch-size", "4", "--workers", "2"]);
    cmd
}

/// A finished run's command again is a no-op: exit 0, `"already_complete": true`, the checkpoint
/// and `config.json` byte for byte as they were. `again` repeats the command; `other` changes a
/// setting and must be refused (exit 2) before anything in `dir` changes.
pub fn assert_rerun_is_a_no_op(t: &KdTest, dir: &str, again: &mut Command, other: &mut Command) {
    let files = ["model.safetensors", "model.json", "config.json"];
    let read = |name: &str| std::fs::read(t.path(&format!("{dir}/{name}"))).unwrap();
    let before: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
    let summary = json_ok(&run(again));
    assert_eq!(summary["already_complete"], true, "{summary}");
    assert_input_error(&run(other), &["another configuration", "--out"]);
    for (file, bytes) in files.iter().zip(&before) {
        assert_eq!(&read(file), bytes, "{dir}/{file} changed");
    }
}

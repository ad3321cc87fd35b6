//! Parity with PyTorch: a fixture directory written by `tests/fixtures/zoo/make_zoo_fixtures.py`
//! holds, per case, a torchvision (or timm-, MoCo-named) state dict with random weights and
//! perturbed batch-norm statistics, and PyTorch's eval-mode outputs on a deterministic input. Each
//! case is imported as `kd-import` would and its outputs compared: max |diff| at most `1e-4`
//! times the largest |output| (at least 1).

use super::{HeadArg, Layout, import};
use anyhow::{Context, Result, ensure};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use kd_common::checkpoint::InputSpec;
use kd_common::models::{HeadSpec, ModelSpec, Stem};
use std::path::Path;

/// One case's JSON.
#[derive(serde::Deserialize)]
struct Case {
    case: String,
    pth: String,
    arch: String,
    width: f32,
    stem: String,
    classes: usize,
    head: String,
    layout: String,
    input_shape: [usize; 4],
    /// `"sin"`: element `i` (row-major NCHW) is `f32(1.5 sin(0.37 i))`, computed in f64.
    input: String,
    logits_shape: [usize; 2],
    logits: Vec<f32>,
}

/// The relative tolerance of the issue: `1e-4` of the logit scale.
pub const RELATIVE_TOLERANCE: f32 = 1e-4;

/// Imports and checks every case in `dir`; returns `(case, max |diff|, scale)` per case. With
/// `write_to`, each imported network is also written there as a kdkit checkpoint
/// `<case>.safetensors`, next to a copy of its case file, for the script's `--roundtrip`.
pub fn check_dir(dir: &Path, device: &Device, write_to: Option<&Path>) -> Result<Vec<(String, f32, f32)>> {
    let mut cases: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    ensure!(!cases.is_empty(), "{}: no fixture cases", dir.display());
    cases.iter().map(|path| check_case(path, device, write_to)).collect()
}

fn check_case(path: &Path, device: &Device, write_to: Option<&Path>) -> Result<(String, f32, f32)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let case: Case = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let [b, c, h, w] = case.input_shape;
    let mut spec = ModelSpec::new(case.arch.parse()?, c, case.classes);
    spec.width = case.width;
    spec.stem = if case.stem == "cifar" { Stem::Cifar } else { Stem::Imagenet };
    let head = <HeadArg as clap::ValueEnum>::from_str(&case.head, true).map_err(anyhow::Error::msg)?;
    spec.head = if head == HeadArg::None { HeadSpec::None } else { HeadSpec::Classifier };
    if head == HeadArg::Projection {
        let input =
            InputSpec { channels: c, height: h, width: w, mean: vec![0.0; c], std: vec![1.0; c], crop_fraction: None };
        spec = crate::shared::encoder::with_projection_head(spec, &input, case.logits_shape[1], device)?;
    }
    let layout = <Layout as clap::ValueEnum>::from_str(&case.layout, true).map_err(anyhow::Error::msg)?;
    let source = path.with_file_name(&case.pth);
    let imported = import(&source, &spec, &layout.readings(&spec), head == HeadArg::None, device)
        .with_context(|| format!("case {}", case.case))?;
    ensure!(case.input == "sin", "case {}: unknown input `{}`", case.case, case.input);
    let values: Vec<f32> = (0..b * c * h * w).map(|i| (1.5 * (0.37 * i as f64).sin()) as f32).collect();
    let x = Tensor::<4>::from_data(TensorData::new(values, [b, c, h, w]), device);
    let got: Vec<f32> =
        imported.network.valid().forward(x).into_data().try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    ensure!(got.len() == case.logits.len(), "case {}: {} outputs, PyTorch {}", case.case, got.len(), case.logits.len());
    let diff = got.iter().zip(&case.logits).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    let scale = case.logits.iter().map(|v| v.abs()).fold(1.0, f32::max);
    ensure!(
        diff <= RELATIVE_TOLERANCE * scale,
        "case {}: max |kdkit - PyTorch| = {diff:e} exceeds {RELATIVE_TOLERANCE} x {scale}",
        case.case
    );
    if let Some(out) = write_to {
        let meta = kd_common::checkpoint::CheckpointMeta {
            format_version: kd_common::checkpoint::FORMAT_VERSION,
            model: imported.spec.clone(),
            input: InputSpec {
                channels: c,
                height: h,
                width: w,
                mean: vec![0.0; c],
                std: vec![1.0; c],
                crop_fraction: None,
            },
            dataset: serde_json::json!({}),
            classes: (0..imported.spec.num_classes).map(|k| k.to_string()).collect(),
            training: serde_json::json!({}),
            metrics: serde_json::json!({}),
            weights_sha256: String::new(),
            written_by: "parity test".into(),
            pruning: None,
            imported_from: None,
            other: Default::default(),
        };
        let case_dir = out.join(&case.case);
        std::fs::create_dir_all(&case_dir)?;
        kd_common::checkpoint::save(&imported.network, &meta, &case_dir.join("model.safetensors"))?;
        std::fs::rename(case_dir.join("model.safetensors"), out.join(format!("{}.safetensors", case.case)))?;
        std::fs::copy(path, out.join(format!("{}.json", case.case)))?;
    }
    Ok((case.case, diff, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zoo() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/zoo")
    }

    /// Every committed fixture (reduced widths, 5 classes, 32-64 px) gives PyTorch's logits.
    #[test]
    fn committed_fixtures_match_pytorch() {
        let results = check_dir(&zoo(), &Device::flex(), None).unwrap();
        for (case, diff, scale) in &results {
            eprintln!("{case}: max |diff| {diff:.2e} (scale {scale:.2})");
        }
        assert!(results.len() >= 15, "{} cases", results.len());
    }

    /// `make test-pytorch`: fresh full-width models (1000 classes, 224 px) from the installed
    /// PyTorch, written by the fixture script into a temporary directory, give PyTorch's logits;
    /// the checkpoints kdkit writes of them load back into the torchvision models with
    /// `load_state_dict(strict=True)` and give the same logits there.
    #[test]
    #[ignore = "needs python3 with torch and torchvision (make test-pytorch)"]
    fn pytorch_full_width_models_match() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(python)
            .arg(zoo().join("make_zoo_fixtures.py"))
            .args(["--full", "--out"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let written = dir.path().join("kdkit");
        std::fs::create_dir_all(&written).unwrap();
        for (case, diff, scale) in check_dir(dir.path(), &Device::flex(), Some(&written)).unwrap() {
            eprintln!("{case}: max |diff| {diff:.2e} (scale {scale:.2})");
        }
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let output = std::process::Command::new(python)
            .arg(zoo().join("make_zoo_fixtures.py"))
            .args(["--full", "--roundtrip"])
            .arg(&written)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        eprintln!("{stdout}");
        assert!(stdout.contains("\"strict_load\": \"ok\""), "{stdout}");
    }
}

use crate::distill::{distill, pack};
use crate::fixture::*;
use burn::tensor::{Device, Tensor, TensorData};
use std::path::{Path, PathBuf};

/// `tests/fixtures/import/`, made by `make_fixtures.py` (PyTorch 1.13) next to the files.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/import")
}

/// `kd-import SOURCE` as a resnet8 at width 0.25 reading the fixture data's 8x8 images.
fn import(t: &KdTest, source: &str, out: &str, extra: &[&str]) -> std::process::Output {
    let mut cmd = t.cmd("kd-import");
    cmd.arg(fixtures().join(source)).args(["--out", out, "--arch", "resnet8", "--width", "0.25"]);
    cmd.args(["--dataset", "fashion-mnist", "--image-size", "8"]).args(extra);
    run(&mut cmd)
}

/// The imported network's logits on the fixture inputs against PyTorch's (eval mode).
fn assert_same_predictions(checkpoint: &Path, key: &str) {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap();
    let values: Vec<f32> = expected["inputs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let torch: Vec<f32> = expected[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let device = Device::flex();
    let (network, meta) = kd_common::checkpoint::load(checkpoint, &device).unwrap();
    assert!(meta.imported_from.is_some());
    let x = Tensor::<4>::from_data(TensorData::new(values, [4, 1, 8, 8]), &device);
    let ours: Vec<f32> = network.forward(x).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(ours.len(), torch.len());
    for (i, (a, b)) in ours.iter().zip(&torch).enumerate() {
        assert!((a - b).abs() < 1e-4, "{key}: logit {i}: kdkit {a} vs PyTorch {b}");
    }
}

/// The KD literature's layout in a `.pth` (`module.` prefix, `{"state_dict": ...}` wrapper,
/// `linear` classifier, option-A shortcuts) and a torchvision-style `.safetensors` with 1x1
/// projection shortcuts: both import and predict what PyTorch predicted, to 1e-4.
#[test]
fn pytorch_teachers_import_with_pytorchs_predictions() {
    let t = KdTest::new();
    let summary = json_ok(&import(&t, "cifar_resnet8_optA.pth", "pth", &[]));
    assert_eq!(summary["arch"], "resnet8");
    assert_same_predictions(&t.path("pth/model.safetensors"), "cifar_resnet8_optA");

    json_ok(&import(&t, "torchvision_resnet8_optB.safetensors", "st", &["--shortcut", "conv"]));
    assert_same_predictions(&t.path("st/model.safetensors"), "torchvision_resnet8_optB");
    // The same tensors as a flat PyTorch state dict whose keys all start with `model.`
    // (tests/fixtures/hostile/make_hostile_pth.py): not a wrapper, the prefix is stripped.
    let flat = json_ok(&import(&t, "flat_model_prefix.pth", "flat", &["--shortcut", "conv"]));
    assert_same_predictions(&t.path("flat/model.safetensors"), "torchvision_resnet8_optB");
    assert!(flat["key_remapping"].to_string().contains("model"), "{flat}");

    // The same command again is a no-op; other settings into the same directory need --force.
    let before = std::fs::read(t.path("pth/model.safetensors")).unwrap();
    assert_eq!(json_ok(&import(&t, "cifar_resnet8_optA.pth", "pth", &[]))["already_complete"], true);
    // An import killed between the weights and the sidecar is redone (it used to ask for
    // --force), and a retried import writes config.json too.
    std::fs::remove_file(t.path("pth/model.json")).unwrap();
    std::fs::remove_file(t.path("pth/config.json")).unwrap();
    json_ok(&import(&t, "cifar_resnet8_optA.pth", "pth", &[]));
    assert!(t.path("pth/model.json").exists() && t.path("pth/config.json").exists());
    assert_eq!(std::fs::read(t.path("pth/model.safetensors")).unwrap(), before, "the same bytes again");
    std::fs::remove_file(t.path("pth/config.json")).unwrap();
    assert_eq!(json_ok(&import(&t, "cifar_resnet8_optA.pth", "pth", &[]))["already_complete"], true);
    assert!(t.path("pth/config.json").exists());
    let other = import(&t, "cifar_resnet8_optA.pth", "pth", &["--mean", "0.5", "--std", "0.5"]);
    assert_input_error(&other, &["already exists", "other settings", "--force"]);
    assert_eq!(std::fs::read(t.path("pth/model.safetensors")).unwrap(), before);
}

/// The imported teacher serves `kd-distill` (online KD) and `kd-pack-labels`.
#[test]
fn an_imported_teacher_teaches() {
    let t = KdTest::new();
    json_ok(&import(&t, "cifar_resnet8_optA.pth", "teacher", &[]));
    let teacher = t.path("teacher/model.safetensors");
    let summary = json_ok(&run(&mut distill(&t, "kd", "kd", "cpu", &["--teacher", teacher.to_str().unwrap()])));
    assert!(summary["test_agreement_with_teacher"].as_f64().is_some());
    let labels = pack(&t, &[&teacher], "labels.h5");
    assert!(labels.exists());
}

/// Weights that do not fit the architecture, a file that is no state dict, a missing file:
/// exit 2 with the file named.
#[test]
fn foreign_files_that_do_not_fit_are_refused() {
    let t = KdTest::new();
    // Option-B weights read as option A: the 1x1 shortcut tensors are left over.
    let output = import(&t, "torchvision_resnet8_optB.safetensors", "a", &[]);
    assert_input_error(&output, &["torchvision_resnet8_optB.safetensors", "does not fit", "downsample"]);
    // Another depth: tensors missing.
    let mut cmd = t.cmd("kd-import");
    cmd.arg(fixtures().join("cifar_resnet8_optA.pth")).args(["--out", "b", "--arch", "resnet14", "--width", "0.25"]);
    assert_input_error(&run(&mut cmd), &["cifar_resnet8_optA.pth", "missing"]);
    // Another class count: shapes differ.
    let output = import(&t, "cifar_resnet8_optA.pth", "c", &["--classes", "7"]);
    assert_input_error(&output, &["cifar_resnet8_optA.pth", "classifier has 10 outputs, not 7", "--new-head"]);
    std::fs::write(t.path("junk.pth"), b"\x80\x04this is not a pickle").unwrap();
    let mut cmd = t.cmd("kd-import");
    cmd.arg(t.path("junk.pth")).args(["--out", "d", "--arch", "resnet8"]);
    assert_input_error(&run(&mut cmd), &["junk.pth"]);
    let mut cmd = t.cmd("kd-import");
    cmd.arg(t.path("absent.pth")).args(["--out", "e", "--arch", "resnet8"]);
    assert_input_error(&run(&mut cmd), &["absent.pth", "not found"]);
    // Files made to allocate without bound (tests/fixtures/hostile/make_hostile_pth.py): a 1 KB
    // tensor expanded by stride 0 to 8 GiB, a storage that inflates to 128 MiB. Refused before
    // anything is read into memory.
    let hostile = fixtures().join("../hostile");
    let mut cmd = t.cmd("kd-import");
    cmd.arg(hostile.join("stride0.pth")).args(["--out", "f", "--arch", "resnet8", "--width", "0.25"]);
    assert_input_error(&run(&mut cmd), &["stride0.pth", "conv1.weight", "hostile"]);
    let mut cmd = t.cmd("kd-import");
    cmd.arg(hostile.join("deflate_bomb.pth")).args(["--out", "g", "--arch", "resnet8", "--width", "0.25"]);
    assert_input_error(&run(&mut cmd), &["deflate_bomb.pth", "inflate to 134217"]);
    assert!(!t.path("f/model.safetensors").exists() && !t.path("g/model.safetensors").exists());
    // Sizes from flags are bounded: no 100000 x 100000 network input.
    let mut cmd = t.cmd("kd-import");
    cmd.arg(fixtures().join("cifar_resnet8_optA.pth")).args(["--out", "h", "--arch", "resnet8", "--width", "0.25"]);
    cmd.args(["--dataset", "fashion-mnist", "--image-size", "100000"]);
    assert_input_error(&run(&mut cmd), &["100000x100000", "8192"]);
    let output = import(&t, "cifar_resnet8_optA.pth", "i", &["--seed", "3"]);
    assert_input_error(&output, &["--seed and --workers do not apply"]);
}

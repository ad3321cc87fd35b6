use crate::fixture::*;

/// Checkpoints whose class count differs from the dataset's or from the checkpoint's, a missing
/// checkpoint, and a sidecar that does not describe its weights are refused with exit 2.
#[test]
fn mismatched_checkpoints_are_refused() {
    let t = KdTest::new();
    json_ok(&run(&mut t.pretrain("fm", "cpu", &["--epochs", "1"])));
    let fashion = t.path("fm/model.safetensors");

    // A 3-class image-folder model (also the folder path end to end).
    make_folder(&t.path("folder"), 30);
    let summary = json_ok(&run(&mut pretrain_folder(&t, "folder", "three")));
    assert!(summary["test_top1"].as_f64().is_some());
    let three = t.path("three/model.safetensors");

    let mut eval = t.cmd("kd-eval");
    eval.arg(&fashion).args(["--device", "cpu", "--dataset", "folder", "--data-dir", "folder"]);
    assert_input_error(&run(&mut eval), &["model.safetensors", "trained for 10 classes but folder has 3"]);

    let mut eval = t.cmd("kd-eval");
    eval.arg(&fashion).args(["--device", "cpu", "--data-dir"]).arg(t.data()).arg("--reference").arg(&three);
    assert_input_error(&run(&mut eval), &["three/model.safetensors", "has 3 classes"]);

    let mut missing = t.cmd("kd-eval");
    missing.arg(t.path("nope.safetensors")).args(["--device", "cpu"]);
    assert_input_error(&run(&mut missing), &["nope.safetensors", "not found"]);

    // The sidecar claims another architecture than the weights hold.
    let sidecar = t.path("fm/model.json");
    let text = std::fs::read_to_string(&sidecar).unwrap();
    std::fs::write(&sidecar, text.replace("\"small-cnn\"", "\"resnet8\"")).unwrap();
    let mut eval = t.cmd("kd-eval");
    eval.arg(&fashion).args(["--device", "cpu", "--data-dir"]).arg(t.data());
    assert_input_error(&run(&mut eval), &["model.safetensors", "does not match"]);
}

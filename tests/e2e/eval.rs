use crate::fixture::*;
use kd_datasets::image::Image;

/// Writes a 3-class image folder of 8x8 PNGs (the ImageNet layout).
fn make_folder(root: &std::path::Path) {
    let (pixels, labels) = make_images(30, 0);
    for class in ["a", "b", "c"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
    }
    for (i, label) in labels.iter().enumerate() {
        let image = Image::new(SIDE, SIDE, 1, pixels[i * SIDE * SIDE..(i + 1) * SIDE * SIDE].to_vec());
        let class = ["a", "b", "c"][*label as usize];
        kd_datasets::folder::write_png(&root.join(class).join(format!("{i}.png")), &image).unwrap();
    }
}

/// Checkpoints whose class count differs from the dataset's or from the checkpoint's, a missing
/// checkpoint, and a sidecar that does not describe its weights are refused with exit 2.
#[test]
fn mismatched_checkpoints_are_refused() {
    let t = KdTest::new();
    json_ok(&run(&mut t.pretrain("fm", "cpu", &["--epochs", "1"])));
    let fashion = t.path("fm/model.safetensors");

    // A 3-class image-folder model (also the folder path end to end).
    make_folder(&t.path("folder"));
    let mut folder = t.cmd("kd-pretrain");
    folder.args(["--dataset", "folder", "--data-dir", "folder", "--image-size", "8", "--out", "three", "--device", "cpu"]);
    folder.args(["--arch", "small-cnn", "--width", "0.25", "--epochs", "1", "--batch-size", "8", "--workers", "2"]);
    let summary = json_ok(&run(&mut folder));
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

//! The ImageNet families end to end on a generated ImageNet-layout folder of JPEGs (5 classes,
//! 64-128 px, resized to 40 px): teachers imported from the committed PyTorch fixtures
//! (`tests/fixtures/zoo`, random weights, reduced widths) feed every tool: FKD labels from a
//! ResNet-50, FKD and online KD into a ResNet-18, MEAL V2 from two imported teachers into a
//! MobileNetV3-Small, two pruning rounds of a ResNet-18 and the student derived from them, SEED
//! from an imported MoCo v2 ResNet-50 into a ResNet-18; kd-eval reports each. On the CPU: the
//! backends' numerics are covered by the parity and convolution tests.

use crate::fixture::*;
use std::path::{Path, PathBuf};

/// The side every network reads (the fixtures' input size).
const SIDE: &str = "40";
/// Classes of the folder and of the fixtures' heads.
const CLASSES: usize = 5;

pub fn zoo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/zoo").join(name)
}

/// `train/<class>/` and `val/<class>/` of JPEGs (quality 90) of random sizes in [64, 128]: a
/// class colour, a gradient and noise, so classes differ.
pub fn make_jpeg_folder(root: &Path, per_class: usize) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for split in ["train", "val"] {
        for class in 0..CLASSES {
            let dir = root.join(split).join(format!("class{class}"));
            std::fs::create_dir_all(&dir).unwrap();
            let count = if split == "train" { per_class } else { 2 };
            for i in 0..count {
                let (w, h) = (rng.random_range(64..=128u32), rng.random_range(64..=128u32));
                let base = [(class * 50) as f32, (255 - class * 40) as f32, ((class * 97) % 256) as f32];
                let image = image::RgbImage::from_fn(w, h, |x, y| {
                    let ramp = 60.0 * (x as f32 / w as f32 - y as f32 / h as f32);
                    image::Rgb(std::array::from_fn(|c| {
                        (base[c] + ramp + rng.random_range(-20.0..20.0)).clamp(0.0, 255.0) as u8
                    }))
                });
                let file = std::fs::File::create(dir.join(format!("{i}.jpg"))).unwrap();
                let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90);
                encoder.encode_image(&image).unwrap();
            }
        }
    }
}

/// The flags that put a tool on the folder, on the CPU (the input size is the teacher's).
fn on_folder(cmd: &mut std::process::Command, data: &str) {
    cmd.args(["--dataset", "folder", "--data-dir", data, "--device", "cpu"]);
}

fn import(t: &KdTest, fixture: &str, out: &str, extra: &[&str]) -> PathBuf {
    let mut cmd = t.cmd("kd-import");
    cmd.arg(zoo(fixture)).args(["--out", out, "--dataset", "folder", "--image-size", SIDE, "--classes", "5"]);
    cmd.args(extra);
    let summary = json_ok(&run(&mut cmd));
    PathBuf::from(summary["checkpoint"].as_str().unwrap())
}

/// Trains with the shared small schedule and returns the checkpoint.
fn train(t: &KdTest, mut cmd: std::process::Command, out: &str) -> PathBuf {
    on_folder(&mut cmd, "images");
    cmd.args(["--epochs", "1", "--batch-size", "8", "--workers", "2", "--out", out]);
    json_ok(&run(&mut cmd));
    t.path(&format!("{out}/model.safetensors"))
}

fn evaluate(t: &KdTest, checkpoint: &Path) -> serde_json::Value {
    let mut cmd = t.cmd("kd-eval");
    cmd.arg(checkpoint).args(["--device", "cpu", "--data-dir", "images"]);
    let metrics = json_ok(&run(&mut cmd));
    assert!(metrics.to_string().contains("top1"), "{metrics}");
    metrics
}

#[test]
fn imported_imagenet_families_go_through_every_tool() {
    let t = KdTest::new();
    make_jpeg_folder(&t.path("images"), 6);
    let width = |w: &'static str| ["--width", w];

    // Teachers from torchvision / timm / MoCo state dicts.
    let resnet50 = import(&t, "resnet50.pth", "t50", &[&["--arch", "resnet50"][..], &width("0.0625")].concat());
    let resnet50d = import(&t, "resnet50d.pth", "t50d", &[&["--arch", "resnet50d"][..], &width("0.0625")].concat());
    let resnet18 = import(&t, "resnet18.pth", "t18", &[&["--arch", "resnet18"][..], &width("0.0625")].concat());
    let moco = import(
        &t,
        "moco_resnet50.pth",
        "moco",
        &[&["--arch", "resnet50", "--head", "projection", "--layout", "moco"][..], &width("0.0625")].concat(),
    );
    for teacher in [&resnet50, &resnet50d, &resnet18] {
        evaluate(&t, teacher);
    }

    // FKD: labels from the ResNet-50, a ResNet-18 student from them; online KD from the same.
    let mut pack = t.cmd("kd-pack-labels");
    pack.arg("--teacher").arg(&resnet50).args(["--crops", "2", "--seed", "0", "--out", "labels.h5"]);
    on_folder(&mut pack, "images");
    json_ok(&run(&mut pack));
    let student = ["--arch", "resnet18", "--width", "0.0625"];
    let mut fkd = t.cmd("kd-distill");
    fkd.args(["fkd", "--labels", "labels.h5"]).args(student);
    let fkd = train(&t, fkd, "fkd");
    let mut kd = t.cmd("kd-distill");
    kd.arg("kd").arg("--teacher").arg(&resnet50).args(student);
    let kd = train(&t, kd, "kd");

    // MEAL V2: two imported teachers, a MobileNetV3-Small student.
    let mut meal = t.cmd("kd-distill");
    meal.arg("meal-v2").arg("--teacher").arg(&resnet50).arg("--teacher").arg(&resnet50d);
    meal.args(["--arch", "mobilenet-v3-small", "--width", "0.25"]);
    let meal = train(&t, meal, "meal");

    // Prune-then-distill: two rounds of the imported ResNet-18, then the derived student.
    let mut prune = t.cmd("kd-prune");
    prune.arg("--teacher").arg(&resnet18).args(["--target-sparsity", "0.36", "--fraction", "0.2"]);
    on_folder(&mut prune, "images");
    prune.args(["--epochs", "1", "--batch-size", "8", "--out", "prune"]);
    let pruned = json_ok(&run(&mut prune));
    let rounds = pruned["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{pruned}");
    assert!((rounds[1]["global_sparsity"].as_f64().unwrap() - 0.36).abs() < 1e-3, "{pruned}");
    let sparsest = t.path("prune").join(rounds[1]["checkpoint"].as_str().unwrap());
    evaluate(&t, &sparsest);
    let mut derive = t.cmd("kd-prune");
    derive.args(["derive-student", "--checkpoint"]).arg(&sparsest).args(["--init", "random", "--seed", "0"]);
    derive.args(["--out", "derived"]);
    let shape = json_ok(&run(&mut derive));
    assert!(shape.to_string().contains("resnet18"), "{shape}");
    let mut derived_kd = t.cmd("kd-distill");
    derived_kd.arg("kd").arg("--teacher").arg(&sparsest).arg("--init").arg(t.path("derived/model.safetensors"));
    let derived = train(&t, derived_kd, "kd-derived");

    // SEED: the MoCo v2 ResNet-50 teaches a ResNet-18 encoder.
    let mut seed = t.cmd("kd-seed");
    seed.arg("--teacher").arg(&moco).args(student).args(["--queue", "16"]);
    let seed = train(&t, seed, "seed");

    for checkpoint in [&fkd, &kd, &meal, &derived] {
        evaluate(&t, checkpoint);
    }
    evaluate(&t, &seed);
}

/// A file of another family or depth, or with another class count, is refused with exit 2, the
/// file named and the first mis-shaped, missing and unexpected tensors counted and named;
/// `--list` names every architecture and layout.
#[test]
fn files_of_other_families_are_refused_by_name() {
    let t = KdTest::new();
    let refuse = |fixture: &str, arch: &str, needles: &[&str]| {
        let mut cmd = t.cmd("kd-import");
        cmd.arg(zoo(fixture)).args(["--out", "x", "--classes", "5", "--image-size", SIDE, "--arch", arch]);
        cmd.args(["--width", "0.0625"]);
        assert_input_error(&run(&mut cmd), &[&[fixture][..], needles].concat());
    };
    // Another depth of the same family: ResNet-50's bottlenecks are not ResNet-34's blocks.
    refuse(
        "resnet50.pth",
        "resnet34",
        &[
            "32 mis-shaped",
            "layer1.0.conv1.weight (file [4, 4, 1, 1], network [4, 4, 3, 3])",
            "85 tensor(s) the architecture does not have: layer1.0.bn3",
        ],
    );
    // Another family altogether.
    refuse(
        "mobilenet_v2.pth",
        "resnet18",
        &[
            "102 tensor(s) missing from the file: bn1.bias, bn1.weight",
            "262 tensor(s) the architecture does not have: classifier.1.bias",
        ],
    );
    // The ResNet-D stem is not torchvision's.
    refuse("resnet50d.pth", "resnet50", &["conv1.weight", "conv1.0.weight"]);
    assert!(!t.path("x/model.safetensors").exists());

    let mut list = t.cmd("kd-import");
    list.arg("--list");
    let output = run(&mut list);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for name in ["resnet50d", "mobilenet-v3-large", "mobilenetv3_large_100", "efficientnet-b0", "moco", "timm"] {
        assert!(text.contains(name), "--list lacks {name}:\n{text}");
    }
}

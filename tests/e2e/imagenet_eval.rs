//! ImageNet evaluation parity with torchvision: kdkit's `Resize(256)` + `CenterCrop(224)` and
//! normalisation on JPEGs (and a PNG) of several sizes give torchvision's tensors, and a
//! torchvision ResNet-50 imported into kdkit predicts what PyTorch predicts, through kd-eval.

use crate::fixture::*;
use burn::tensor::{Device, Tensor, TensorData};
use kd_datasets::{Augment, DatasetKind, Split, Transform};
use std::path::Path;

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `val/<class>/` (and a copy as `train/`) of 3 classes: JPEGs at quality 90 (4:2:0) of
/// 500x375, 375x500, 300x300, 150x200 (smaller than the 256 resize) and 641x427 pixels, a 4:4:4
/// JPEG, a greyscale JPEG and an RGB PNG; smooth textures with noise, as photographs compress.
fn make_images(root: &Path) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let sizes = [(500u32, 375u32), (375, 500), (300, 300), (150, 200), (641, 427)];
    for split in ["train", "val"] {
        for class in 0..3usize {
            let dir = root.join(split).join(format!("c{class}"));
            std::fs::create_dir_all(&dir).unwrap();
            for (i, &(w, h)) in sizes.iter().enumerate().filter(|(i, _)| i % 3 == class || *i == 4) {
                let phase: f32 = rng.random_range(0.0..6.0);
                let image = image::RgbImage::from_fn(w, h, |x, y| {
                    let wave = 50.0 * ((x as f32 * 0.05 + phase).sin() + (y as f32 * 0.031 * (class + 1) as f32).cos());
                    image::Rgb(std::array::from_fn(|c| {
                        (90.0 + 40.0 * c as f32 + wave + rng.random_range(-12.0..12.0)).clamp(0.0, 255.0) as u8
                    }))
                });
                // 4:2:0 (kd-datasets' writer), and 4:4:4 (the image crate's): both upsamplings.
                let pixels = kd_datasets::image::Image::new(h as usize, w as usize, 3, image.clone().into_raw());
                kd_datasets::folder::write_jpeg(&dir.join(format!("{i}.jpg")), &pixels, 90).unwrap();
                if i == 4 && class == 1 {
                    let file = std::fs::File::create(dir.join("full-chroma.jpg")).unwrap();
                    image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90).encode_image(&image).unwrap();
                    let grey = image::DynamicImage::ImageRgb8(image.clone()).into_luma8();
                    let file = std::fs::File::create(dir.join("grey.jpg")).unwrap();
                    image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90).encode_image(&grey).unwrap();
                    image.save(dir.join("rgb.png")).unwrap();
                }
            }
        }
    }
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Needs PyTorch and torchvision: `make test-pytorch` (`PYTHON` names the interpreter).
#[test]
#[ignore = "needs PyTorch (Debian python3-torch, python3-torchvision); `make test-pytorch` runs it"]
fn imagenet_eval_transform_and_resnet50_match_pytorch() {
    let t = KdTest::new();
    let root = t.path("images");
    make_images(&root);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/imagenet_eval/torchvision_eval.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = std::process::Command::new(python).arg(script).arg(&root).arg(t.path("torch")).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let torch: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let count = torch["images"].as_u64().unwrap() as usize;

    // kdkit's evaluation transform on the same files, in the same (sorted) order.
    let data = DatasetKind::Folder.open(Some(&root), Split::Test, 3, 0.1).unwrap();
    assert_eq!(data.len(), count);
    let transform = Transform {
        augment: Augment::ResizeCenterCrop { crop_fraction: 0.875 },
        out_height: 224,
        out_width: 224,
        mean: MEAN.to_vec(),
        std: STD.to_vec(),
    };
    let mut ours = Vec::new();
    for i in 0..count {
        transform.apply_into(&data.image(i).unwrap(), &mut kd_datasets::rng::stream(0, 0, 0), &mut ours);
    }
    let theirs = read_f32(&t.path("torch/inputs.f32"));
    assert_eq!(ours.len(), theirs.len());
    let plane = 224 * 224;
    let worst = ours
        .iter()
        .zip(&theirs)
        .enumerate()
        .map(|(i, (a, b))| (a - b).abs() * STD[i / plane % 3] * 255.0)
        .fold(0.0f32, f32::max);
    eprintln!("largest input difference from torchvision: {worst} grey levels");
    assert!(worst <= 1.0 + 1e-3, "largest difference {worst} grey levels (at most 1/255 allowed)");

    // The imported ResNet-50 on kdkit's tensors gives PyTorch's logits and classes.
    let mut import = t.cmd("kd-import");
    import.arg(t.path("torch/resnet50.pth")).args(["--out", "r50", "--arch", "resnet50", "--dataset", "folder"]);
    import.args(["--classes", "3", "--image-size", "224"]);
    json_ok(&run(&mut import));
    let device = Device::flex();
    let (network, _) = kd_common::checkpoint::load(&t.path("r50/model.safetensors"), &device).unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(ours, [count, 3, 224, 224]), &device);
    let logits: Vec<f32> = network.forward(x).into_data().try_to_vec::<f32>().unwrap();
    let expected = read_f32(&t.path("torch/logits.f32"));
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1.0);
    for (i, (a, b)) in logits.iter().zip(&expected).enumerate() {
        assert!((a - b).abs() <= 1e-4 * scale, "logit {i}: kdkit {a} vs PyTorch {b}");
    }

    // kd-eval (the tool's own loader and transform) predicts PyTorch's classes, image by image.
    let mut eval = t.cmd("kd-eval");
    eval.arg(t.path("r50/model.safetensors")).args(["--device", "cpu", "--data-dir", "images", "--dump-predictions"]);
    eval.arg(t.path("predictions.csv"));
    json_ok(&run(&mut eval));
    let csv = std::fs::read_to_string(t.path("predictions.csv")).unwrap();
    let predicted: Vec<u64> = csv.lines().skip(1).map(|l| l.split(',').nth(2).unwrap().parse().unwrap()).collect();
    let torch_predicted: Vec<u64> =
        torch["predicted"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(predicted, torch_predicted, "files in order: {}", torch["files"]);
}

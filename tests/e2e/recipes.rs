//! The seeds' recipes (`make PROFILE=imagenet-fkd` ... `cifar100-ptd`, recipes/recipes.mk) end
//! to end on generated data with width-reduced networks and one epoch: the ImageNet ones on a
//! generated JPEG folder with teachers imported from the committed zoo fixtures, prune-then-
//! distill on generated CIFAR-100 binaries. Each chain writes its report; run again, `make`
//! redoes nothing.

use crate::fixture::*;
use crate::imagenet_families::{make_jpeg_folder, zoo};
use std::path::Path;
use std::process::Command;

/// `make PROFILE=profile` into `run` with the binaries cargo built for this test.
fn make(profile: &str, run: &Path, vars: &[String]) -> Command {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bin = bin("kd-pretrain").parent().unwrap().to_path_buf();
    let mut cmd = Command::new("make");
    cmd.arg("-C").arg(repo).arg(format!("PROFILE={profile}")).arg(format!("RUN={}", run.display()));
    cmd.arg(format!("BIN={}", bin.display())).args(["NO_BUILD=1", "DEVICE=cpu", "EPOCHS=1", "BATCH=8"]);
    cmd.args(vars);
    cmd.env("KD_NO_PROGRESS", "1").env_remove("RUST_LOG").env_remove("MAKEFLAGS").env_remove("MFLAGS");
    cmd
}

/// Runs the recipe, checks its report names every row, and that a second run changes nothing.
fn run_recipe(t: &KdTest, profile: &str, vars: &[String], rows: &[&str]) {
    let run_dir = t.path(&format!("runs/{profile}"));
    let output = make(profile, &run_dir, vars).output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{profile}: {log}");
    let report = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    for row in rows {
        assert!(report.contains(row), "{profile}: no row {row} in\n{report}");
    }
    let again = make(profile, &run_dir, vars).output().unwrap();
    let log = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success() && !log.contains("/kd-"), "{profile}: the second run did work:\n{log}");
}

fn imagenet_vars(t: &KdTest) -> Vec<String> {
    let images = t.path("images");
    vec![format!("DATA_DIR={}", images.display()), "WIDTH=0.0625".into(), "CLASSES=5".into(), "IMAGE_SIZE=40".into()]
}

#[test]
fn imagenet_recipes_run_end_to_end() {
    let t = KdTest::new();
    make_jpeg_folder(&t.path("images"), 6);
    let var = |name: &str, file: &str| format!("{name}={}", zoo(file).display());
    let mut fkd = imagenet_vars(&t);
    fkd.extend([var("TEACHER_PTH", "resnet50.pth"), "STUDENT_ARCH=resnet18".into(), "CROPS=4".into()]);
    fkd.push("NUM_CROPS=2".into());
    run_recipe(&t, "imagenet-fkd", &fkd, &["teacher", "fkd-student"]);

    let mut meal = imagenet_vars(&t);
    meal.extend([var("TEACHER_PTH", "resnet50.pth"), "TEACHER_ARCH=resnet50".into()]);
    meal.extend([var("TEACHER_B_PTH", "resnet50d.pth"), "TEACHER_B_ARCH=resnet50d".into()]);
    meal.extend([var("STUDENT_PTH", "resnet18.pth"), "STUDENT_ARCH=resnet18".into()]);
    run_recipe(&t, "imagenet-meal-v2", &meal, &["teacher-b", "student-init", "meal-v2"]);

    let mut ssld = imagenet_vars(&t);
    ssld.extend([var("TEACHER_PTH", "resnet50d.pth"), "STUDENT_ARCH=mobilenet-v3-small".into()]);
    ssld.extend([format!("UNLABELED_DIR={}", t.path("images/val").display()), "FINETUNE_EPOCHS=1".into()]);
    run_recipe(&t, "imagenet-ssld", &ssld, &["ssld-student"]);

    let mut seed = imagenet_vars(&t);
    seed.extend([var("TEACHER_PTH", "moco_resnet50.pth"), "STUDENT_ARCHS=resnet18 efficientnet-b0".into()]);
    seed.push("QUEUE=16".into());
    run_recipe(&t, "imagenet-seed", &seed, &["moco-teacher", "seed-resnet18", "seed-efficientnet-b0"]);
    // Students made by pattern rules stay (make must not take them for intermediates).
    for student in ["seed-resnet18", "seed-efficientnet-b0"] {
        assert!(t.path(&format!("runs/imagenet-seed/{student}/model.safetensors")).is_file(), "{student}");
    }
}

/// Prune-then-distill's ladder on 200 generated CIFAR-100 images (classes 0-4 only) with a
/// width-reduced VGG-19 teacher and VGG-11 student: three rounds of 20% reach 0.512 remaining.
#[test]
fn cifar100_prune_then_distill_recipe_runs_end_to_end() {
    let t = KdTest::new();
    let dir = t.path("cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    for (file, count) in [("train.bin", 200usize), ("test.bin", 50)] {
        let labels: Vec<u8> = (0..count).map(|i| (i % 5) as u8).collect();
        let pixels: Vec<u8> = (0..count * 3072).map(|i| ((i / 3072 % 5) * 50 + i % 17) as u8).collect();
        kd_datasets::cifar::write_file(&dir.join(file), kd_datasets::cifar::Cifar::Hundred, &pixels, &labels).unwrap();
    }
    let vars = vec![
        format!("DATA_DIR={}", dir.display()),
        "WIDTH=0.125".into(),
        "VAL_SIZE=20".into(),
        "PRUNE_EPOCHS=1".into(),
        "PTD_PRUNED=0.800 0.640 0.512".into(),
    ];
    run_recipe(&t, "cifar100-ptd", &vars, &["pruned-0.512", "kd-unpruned", "kd-pruned0.640", "kd-derived"]);
    for student in ["kd-pruned0.800", "kd-pruned0.640", "kd-pruned0.512"] {
        assert!(t.path(&format!("runs/cifar100-ptd/{student}/model.safetensors")).is_file(), "{student}");
    }
}

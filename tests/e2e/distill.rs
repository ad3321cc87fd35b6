use crate::fixture::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Trains a tiny teacher on the fixture data (CPU) into `name/`.
fn teacher(t: &KdTest, name: &str, seed: &str) -> PathBuf {
    json_ok(&run(&mut t.pretrain(
        name,
        "cpu",
        &["--epochs", "2", "--val-size", "0", "--width", "0.5", "--seed", seed],
    )));
    t.path(&format!("{name}/model.safetensors"))
}

/// Packs 4 crops per training image from `teacher` into `labels.h5`.
pub fn pack(t: &KdTest, teachers: &[&Path], out: &str) -> PathBuf {
    let mut cmd = t.cmd("kd-pack-labels");
    for teacher in teachers {
        cmd.arg("--teacher").arg(teacher);
    }
    cmd.arg("--data-dir").arg(t.data()).args([
        "--out",
        out,
        "--device",
        "cpu",
        "--crops",
        "4",
        "--top-k",
        "2",
        "--workers",
        "2",
    ]);
    json_ok(&run(&mut cmd));
    t.path(out)
}

/// `kd-distill <method>` on the fixture data with a tiny student; `extra` flags replace the
/// fixture's values for the same flag.
pub fn distill(t: &KdTest, method: &str, out: &str, device: &str, extra: &[&str]) -> Command {
    let defaults = [
        ("--arch", "small-cnn"),
        ("--width", "0.25"),
        ("--epochs", "2"),
        ("--batch-size", "8"),
        ("--val-size", "8"),
        ("--lr", "0.05"),
        ("--workers", "1"),
    ];
    let mut cmd = t.cmd("kd-distill");
    cmd.arg(method).arg("--data-dir").arg(t.data()).args([
        "--dataset",
        "fashion-mnist",
        "--out",
        out,
        "--device",
        device,
    ]);
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(extra);
    cmd
}

fn metrics_header(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().lines().next().unwrap().to_string()
}

/// Online KD with an ensemble of two teachers on wgpu: a checkpoint, metrics with the
/// agreement column, and test agreement in the summary.
#[test]
fn online_kd_on_wgpu_reports_agreement() {
    let t = KdTest::new();
    let (a, b) = (teacher(&t, "t1", "1"), teacher(&t, "t2", "2"));
    let mut cmd = distill(&t, "kd", "kd", "wgpu", &["--alpha", "0.9", "--temperature", "4"]);
    cmd.arg("--teacher").arg(&a).arg("--teacher").arg(&b);
    let summary = json_ok(&run(&mut cmd));
    assert_eq!(summary["method"], "kd");
    assert_eq!(summary["epochs"], 2);
    let agreement = summary["test_agreement_with_teacher"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&agreement));
    let header = metrics_header(&t.path("kd/metrics.csv"));
    assert!(header.ends_with(",val_top5,val_agreement,images_per_s,seconds"), "{header}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("kd/config.json")).unwrap()).unwrap();
    assert_eq!(config["method"]["kind"], "kd");
    assert_eq!(config["method"]["alpha"], 0.9);
    assert_eq!(config["method"]["teachers"].as_array().unwrap().len(), 2);
    assert!(t.path("kd/model.safetensors").exists() && t.path("kd/model.json").exists());
}

/// FKD from packed labels with FKD's epoch accounting: 5 epochs with 2 crops and 1 final
/// single-crop epoch = 2 passes of 2 crops (epochs 2 and 4) + 1 single-crop pass (epoch 5), with
/// as many optimizer steps per 2-crop pass as two single-crop epochs.
#[test]
fn fkd_trains_from_labels_with_multi_crop_accounting() {
    let t = KdTest::new();
    let labels = pack(&t, &[&teacher(&t, "t1", "1")], "labels.h5");
    let mut cmd =
        distill(&t, "fkd", "fkd", "cpu", &["--epochs", "5", "--num-crops", "2", "--final-single-crop-epochs", "1"]);
    cmd.arg("--labels").arg(&labels).arg("--reference").arg(t.path("t1/model.safetensors"));
    let summary = json_ok(&run(&mut cmd));
    assert_eq!(summary["method"], "fkd");
    assert_eq!(summary["epochs"], 5);
    assert!(summary["test_agreement_with_teacher"].is_number());
    let csv = std::fs::read_to_string(t.path("fkd/metrics.csv")).unwrap();
    let columns: Vec<(&str, &str)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let mut cells = l.split(',');
            (cells.next().unwrap(), cells.next().unwrap())
        })
        .collect();
    assert_eq!(columns, vec![("1", "2"), ("2", "4"), ("3", "5")], "(pass, epoch) rows:\n{csv}");
    // 40 training images: a 2-crop pass has 40 / ceil(8 / 2) = 10 steps, a single-crop pass 5.
    let progress: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("fkd/state/progress.json")).unwrap()).unwrap();
    assert_eq!(progress["steps_done"], 25);
}

/// MEAL V2 online (two teachers, discriminator on logits, MEAL's final-ReLU parity switch) and
/// from packed ensemble labels (discriminator on probabilities), initialised from a student.
#[test]
fn meal_v2_online_and_from_packed_labels() {
    let t = KdTest::new();
    let (a, b) = (teacher(&t, "t1", "1"), teacher(&t, "t2", "2"));
    json_ok(&run(&mut t.pretrain("init", "cpu", &["--epochs", "1"])));
    let mut cmd = distill(&t, "meal-v2", "meal", "cpu", &["--disc-final-relu", "false"]);
    cmd.arg("--teacher").arg(&a).arg("--teacher").arg(&b).arg("--init").arg(t.path("init/model.safetensors"));
    let summary = json_ok(&run(&mut cmd));
    assert_eq!(summary["method"], "meal-v2");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("meal/config.json")).unwrap()).unwrap();
    assert_eq!(config["method"]["discriminator"], serde_json::json!({"input": "logits", "final_relu": false}));
    assert_eq!(config["train"]["optimizer"]["weight_decay"], 0.0, "MEAL V2 trains without weight decay");

    let labels = pack(&t, &[&a, &b], "ensemble.h5");
    let mut cmd =
        distill(&t, "meal-v2", "meal-packed", "cpu", &["--num-crops", "2", "--final-single-crop-epochs", "0"]);
    cmd.arg("--labels").arg(&labels).arg("--teacher").arg(&a).arg("--teacher").arg(&b);
    let summary = json_ok(&run(&mut cmd));
    assert!(summary["test_agreement_with_teacher"].is_number());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("meal-packed/config.json")).unwrap()).unwrap();
    assert_eq!(config["method"]["discriminator"]["input"], "probs");
    assert_eq!(config["method"]["discriminator"]["final_relu"], true, "MEAL V2's code's default");

    let mut cmd = distill(&t, "meal-v2", "meal-bad", "cpu", &["--disc-input", "logits"]);
    cmd.arg("--labels").arg(&labels);
    assert_input_error(&run(&mut cmd), &["packed labels hold probabilities"]);
}

/// SSLD with unlabeled images from a hold-out of the training split and from an image folder,
/// top-k-per-class selection, the true-JS option, and the fine-tune stage.
#[test]
fn ssld_mixes_unlabeled_images_and_fine_tunes() {
    let t = KdTest::new();
    let teacher = teacher(&t, "t1", "1");
    let mut cmd = distill(
        &t,
        "ssld",
        "ssld",
        "cpu",
        &["--unlabeled", "train-holdout:16", "--select-per-class", "2", "--finetune-epochs", "1"],
    );
    cmd.arg("--teacher").arg(&teacher);
    let summary = json_ok(&run(&mut cmd));
    assert_eq!(summary["data"]["labeled"], 24, "40 training images minus 16 held out as unlabeled");
    assert_eq!(summary["data"]["unlabeled_pool"], 16);
    let used = summary["data"]["unlabeled_used"].as_u64().unwrap();
    assert!((2..=20).contains(&used), "2 per class of 10 classes, overlaps kept once: {used}");
    assert_eq!(summary["epochs"], 3, "2 distillation + 1 fine-tune epochs");
    assert!(t.path("ssld/finetune/metrics.csv").exists());
    let finetune = std::fs::read_to_string(t.path("ssld/finetune/metrics.csv")).unwrap();
    assert!(finetune.starts_with("pass,epoch,lr,"), "{finetune}");
    let lr: f64 = finetune.lines().nth(1).unwrap().split(',').nth(2).unwrap().parse().unwrap();
    assert!(lr <= 0.05 * 0.01 + 1e-9, "fine-tune at 1/100 of the learning rate: {lr}");

    make_folder(&t.path("extra"), 12);
    let mut cmd =
        distill(&t, "ssld", "ssld-folder", "cpu", &["--divergence", "jensen-shannon", "--finetune-epochs", "0"]);
    cmd.arg("--teacher").arg(&teacher).arg("--unlabeled").arg(format!("folder:{}", t.path("extra").display()));
    let summary = json_ok(&run(&mut cmd));
    assert_eq!(summary["data"]["labeled"], 40);
    assert_eq!(summary["data"]["unlabeled_used"], 12);
}

/// Kills every method right after it saved its first pass and runs the same command again: it
/// resumes, keeps the saved rows and finishes.
#[test]
fn every_method_resumes_after_kill() {
    let t = KdTest::new();
    let teacher = teacher(&t, "t1", "1");
    let labels = pack(&t, &[&teacher], "labels.h5");
    let teacher_arg = ["--teacher", teacher.to_str().unwrap()];
    let labels_arg = ["--labels", labels.to_str().unwrap()];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("kd", teacher_arg.to_vec()),
        ("fkd", [&labels_arg[..], &["--num-crops", "2", "--final-single-crop-epochs", "0"]].concat()),
        ("meal-v2", teacher_arg.to_vec()),
        ("ssld", [&teacher_arg[..], &["--unlabeled", "train-holdout:8", "--finetune-epochs", "1"]].concat()),
    ];
    for (method, extra) in cases {
        let out = format!("resume-{method}");
        let mut args = vec!["--epochs", "4", "--val-size", "0"];
        args.extend(&extra);
        // The loop aborts itself right after saving pass 1 (a deterministic kill).
        let killed = run(distill(&t, method, &out, "cpu", &args).env("KD_ABORT_AFTER_PASS", "1"));
        assert!(!killed.status.success(), "{method} should have been aborted");
        let progress = t.path(&format!("{out}/state/progress.json"));
        let before: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&progress).unwrap()).unwrap();
        let saved = before["passes_done"].as_u64().unwrap();
        assert_eq!(saved, 1, "{method}");
        assert!(!t.path(&format!("{out}/model.safetensors")).exists(), "{method}: no checkpoint before the end");

        let output = run(&mut distill(&t, method, &out, "cpu", &args));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{method}: {stderr}");
        assert!(stderr.contains("resuming after pass 1 of "), "{method}: {stderr}");
        let after: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&progress).unwrap()).unwrap();
        let rows = after["rows"].as_array().unwrap();
        for (i, row) in before["rows"].as_array().unwrap().iter().enumerate() {
            assert_eq!(&rows[i], row, "{method}: pass {} was redone", i + 1);
        }
        assert!(t.path(&format!("{out}/model.safetensors")).exists(), "{method}");
    }
}

/// Mismatched label file, missing teacher, class-count mismatch, a label file missing: exit 2
/// with the file named.
#[test]
fn bad_inputs_are_reported_with_exit_2() {
    let t = KdTest::new();
    let teacher = teacher(&t, "t1", "1");
    // Labels packed for other data (a 36-image training split) do not fit the fixture's.
    let other = t.path("other");
    std::fs::create_dir(&other).unwrap();
    let (pixels, labels) = make_images(36, 2);
    kd_datasets::idx::write_split(&other, "train", SIDE, SIDE, &pixels, &labels, true).unwrap();
    let (pixels, labels) = make_images(12, 3);
    kd_datasets::idx::write_split(&other, "t10k", SIDE, SIDE, &pixels, &labels, false).unwrap();
    let mut cmd = t.cmd("kd-pack-labels");
    cmd.arg("--teacher").arg(&teacher).arg("--data-dir").arg(&other).args([
        "--dataset",
        "fashion-mnist",
        "--out",
        "other.h5",
        "--device",
        "cpu",
        "--crops",
        "2",
    ]);
    json_ok(&run(&mut cmd));
    let mut cmd = distill(&t, "fkd", "bad-labels", "cpu", &[]);
    cmd.arg("--labels").arg(t.path("other.h5"));
    assert_input_error(&run(&mut cmd), &["other.h5", "label file does not match", "36 images"]);
    assert!(!t.path("bad-labels/model.safetensors").exists());

    let mut cmd = distill(&t, "fkd", "no-labels", "cpu", &[]);
    cmd.arg("--labels").arg(t.path("missing.h5"));
    assert_input_error(&run(&mut cmd), &["missing.h5"]);

    let mut cmd = distill(&t, "kd", "no-teacher", "cpu", &[]);
    cmd.arg("--teacher").arg(t.path("nowhere/model.safetensors"));
    assert_input_error(&run(&mut cmd), &["nowhere/model.safetensors"]);

    assert_input_error(&run(&mut distill(&t, "kd", "none", "cpu", &[])), &["at least one --teacher"]);

    // A 3-class folder teacher for the 10-class Fashion-MNIST student.
    make_folder(&t.path("folder"), 12);
    json_ok(&run(&mut pretrain_folder(&t, t.path("folder").to_str().unwrap(), "folder-teacher")));
    let mut cmd = distill(&t, "ssld", "classes", "cpu", &[]);
    cmd.arg("--teacher").arg(t.path("folder-teacher/model.safetensors"));
    assert_input_error(&run(&mut cmd), &["folder-teacher/model.safetensors", "3 classes", "has 10"]);
}

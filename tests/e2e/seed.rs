use crate::fixture::*;

/// `kd-seed` on the fixture data from `teacher`: batch 8, 3 epochs.
fn seed(t: &KdTest, teacher: &str, out: &str, extra: &[&str]) -> std::process::Command {
    let mut cmd = t.cmd("kd-seed");
    cmd.args(["--teacher", teacher, "--out", out, "--device", "cpu", "--dataset", "fashion-mnist"]);
    cmd.arg("--data-dir").arg(t.data());
    for (flag, value) in [("--epochs", "3"), ("--batch-size", "8"), ("--val-size", "8"), ("--width", "0.25")] {
        if !extra.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    if !extra.contains(&"--queue") && !extra.contains(&"--dataset-bank") {
        cmd.args(["--queue", "16"]);
    }
    cmd.args(extra);
    cmd
}

/// A MoCo teacher (projection head, 128-d), then SEED students: with the queue (killed after
/// pass 1 and resumed with the queue it had: the saved pointer counts both processes' steps),
/// and with the whole training set's teacher embeddings as negatives. A supervised teacher
/// serves through its pooled features; asked for a projection it has not, it is refused.
#[test]
fn seed_distils_resumes_with_its_queue_and_takes_any_embedding() {
    let t = KdTest::new();
    let moco = ["--method", "moco", "--epochs", "1", "--batch-size", "8", "--queue", "16", "--val-size", "8"];
    json_ok(&run(&mut t.pretrain("moco", "cpu", &moco)));

    let killed = run(seed(&t, "moco/model.safetensors", "s", &[]).env("KD_ABORT_AFTER_PASS", "1"));
    assert!(!killed.status.success());
    let output = run(&mut seed(&t, "moco/model.safetensors", "s", &[]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.contains("resuming after pass 1 of 3"), "{stderr}");
    let summary = json_ok(&output);
    assert!((0.0..=100.0).contains(&summary["test_knn_top1"].as_f64().unwrap()), "{summary}");
    let queue = std::fs::read(t.path("s/state/objective-seed_queue-pass3.bin")).unwrap();
    assert_eq!(u64::from_le_bytes(queue[16..24].try_into().unwrap()), 8, "15 steps x 8 keys mod 16");
    let metrics = std::fs::read_to_string(t.path("s/metrics.csv")).unwrap();
    assert!(metrics.lines().next().unwrap().contains("val_knn_top1"), "{metrics}");
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("s/model.json")).unwrap()).unwrap();
    assert_eq!(sidecar["model"]["head"]["out"], 128, "the student projects to the teacher's 128 dimensions");
    let (mut again, mut other) = (
        seed(&t, "moco/model.safetensors", "s", &[]),
        seed(&t, "moco/model.safetensors", "s", &["--tau-student", "0.3"]),
    );
    assert_rerun_is_a_no_op(&t, "s", &mut again, &mut other);

    json_ok(&run(&mut seed(&t, "moco/model.safetensors", "bank", &["--dataset-bank"])));

    // kd-eval on an encoder: kNN and the linear probe, no classifier metrics.
    let mut eval = t.cmd("kd-eval");
    eval.arg(t.path("s/model.safetensors")).args(["--device", "cpu"]).arg("--data-dir").arg(t.data());
    let eval = json_ok(&run(&mut eval));
    for key in ["knn_top1", "linear_probe_top1"] {
        assert!((0.0..=100.0).contains(&eval[key].as_f64().unwrap()), "{eval}");
    }
    assert!(eval.get("top1").is_none(), "{eval}");
    std::fs::write(t.path("s/eval.json"), eval.to_string()).unwrap();
    let report = run(t.cmd("kd-report").arg(format!("seed={}", t.path("s/eval.json").display())));
    let table = String::from_utf8_lossy(&report.stdout);
    let knn = format!("{:.2}", eval["knn_top1"].as_f64().unwrap());
    assert!(
        table.contains("| kNN top-1 (%) |") && table.contains(&format!("| seed | small-cnn | 1 | {knn} |")),
        "{table}"
    );

    json_ok(&run(&mut t.pretrain("sup", "cpu", &["--epochs", "1", "--val-size", "0"])));
    json_ok(&run(&mut seed(&t, "sup/model.safetensors", "from-sup", &["--epochs", "1"])));
    let refused = run(&mut seed(&t, "sup/model.safetensors", "nope", &["--teacher-output", "projection"]));
    assert_input_error(&refused, &["sup/model.safetensors", "no projection head"]);
    assert_input_error(&run(&mut seed(&t, "moco/model.safetensors", "q", &["--queue", "12"])), &["queue size (12)"]);
    assert!(!t.path("nope").exists() && !t.path("q").exists());
}

/// Self-supervised training on images without labels: MoCo v2 and SEED on a flat, nested
/// folder of PNGs (`--unlabeled`: no class folders, no kNN monitor, no test kNN); the encoder is
/// then judged by kd-eval on labelled images. Options that need labels are refused on such
/// data, before anything is written.
#[test]
fn ssl_trains_on_unlabelled_images_and_refuses_labelled_only_options() {
    let t = KdTest::new();
    // 24 unlabelled images in a flat folder with one nested level, and a labelled 3-class folder.
    make_folder(&t.path("pool"), 24);
    make_folder(&t.path("labelled"), 24);
    let pool = t.path("pool");
    let pool = pool.to_str().unwrap();
    let unlabeled = ["--dataset", "folder", "--data-dir", pool, "--unlabeled", "--batch-size", "8"];
    let moco = |out: &str, extra: &[&str]| {
        let mut cmd = t.cmd("kd-pretrain");
        cmd.args(["--method", "moco", "--queue", "16", "--epochs", "1", "--image-size", "8", "--out", out]);
        cmd.args(["--device", "cpu", "--arch", "small-cnn", "--width", "0.25"]).args(unlabeled).args(extra);
        cmd
    };
    let summary = json_ok(&run(&mut moco("moco", &[])));
    assert!(summary["test_knn_top1"].is_null() && summary["knn_bank"].is_null(), "{summary}");
    let metrics = std::fs::read_to_string(t.path("moco/metrics.csv")).unwrap();
    assert!(!metrics.contains("val_knn_top1"), "no labels, no kNN monitor: {metrics}");

    let mut seed = t.cmd("kd-seed");
    seed.args(["--teacher", "moco/model.safetensors", "--out", "seed", "--device", "cpu", "--queue", "16"]);
    seed.args(["--epochs", "1", "--width", "0.25"]).args(unlabeled);
    let summary = json_ok(&run(&mut seed));
    assert!(summary["test_knn_top1"].is_null(), "{summary}");

    // kd-eval needs labelled images: refused without them, measured with them.
    let mut eval = t.cmd("kd-eval");
    eval.args(["seed/model.safetensors", "--device", "cpu", "--probe-epochs", "2"]);
    assert_input_error(&run(&mut eval), &["seed/model.safetensors", "unlabelled images", "--data-dir"]);
    let labelled = t.path("labelled");
    let eval = json_ok(&run(eval.args(["--dataset", "folder", "--data-dir", labelled.to_str().unwrap()])));
    assert!((0.0..=100.0).contains(&eval["knn_top1"].as_f64().unwrap()), "{eval}");

    // Labelled-only options on unlabelled images: exit 2, nothing written.
    let refused = run(&mut moco("val", &["--val-size", "8"]));
    assert_input_error(&refused, &["--val-size 8", "kNN monitor", "labels"]);
    let mut supervised = t.cmd("kd-pretrain");
    supervised.args(["--out", "sup", "--device", "cpu", "--image-size", "8"]).args(unlabeled);
    let supervised = run(&mut supervised);
    assert_input_error(&supervised, &["--unlabeled", "supervised pretraining", "--method moco"]);
    let mut labelled_dataset = t.cmd("kd-seed");
    labelled_dataset.args(["--teacher", "moco/model.safetensors", "--out", "fm", "--unlabeled", "--device", "cpu"]);
    assert_input_error(&run(&mut labelled_dataset), &["--unlabeled", "fashion-mnist"]);
    assert!(!t.path("val").exists() && !t.path("sup").exists() && !t.path("fm").exists());
}

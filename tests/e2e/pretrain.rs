use crate::fixture::*;

/// The main path on wgpu: train, write every artefact, then evaluate the checkpoint with
/// `kd-eval` and check its numbers against the predictions it dumped.
#[test]
fn pretrain_then_eval_on_wgpu() {
    let t = KdTest::new();
    let summary = json_ok(&run(&mut t.pretrain("run", "wgpu", &[])));
    let out = t.path("run");
    for file in ["config.json", "metrics.csv", "model.safetensors", "model.json", "state"] {
        assert!(out.join(file).exists(), "{file} missing in {:?}", list(&out));
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(
        csv.starts_with("epoch,lr,train_loss,train_top1,val_loss,val_top1,val_top5,images_per_s,seconds\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 3, "header + 2 epochs:\n{csv}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model"]["arch"], "small-cnn");
    assert_eq!(config["train"]["epochs"], 2);
    let test_top1 = summary["test_top1"].as_f64().unwrap();

    let predictions = t.path("pred.csv");
    let confusion = t.path("confusion.csv");
    let mut eval = t.cmd("kd-eval");
    eval.arg(out.join("model.safetensors")).args(["--device", "wgpu", "--data-dir"]).arg(t.data());
    eval.arg("--reference").arg(out.join("model.safetensors"));
    eval.arg("--dump-predictions").arg(&predictions).arg("--confusion-matrix").arg(&confusion);
    let report = json_ok(&run(&mut eval));
    assert_eq!(report["images"], 24);
    let top1 = report["top1"].as_f64().unwrap();
    assert!((top1 - test_top1).abs() < 1e-9, "kd-eval {top1} vs kd-pretrain {test_top1}");
    assert!((report["agreement"].as_f64().unwrap() - 100.0).abs() < 1e-9);
    assert!(report["kl_to_reference"].as_f64().unwrap().abs() < 1e-6);

    // Independent check from the dumped rows: accuracy and NLL recomputed here.
    let text = std::fs::read_to_string(&predictions).unwrap();
    let mut lines = text.lines();
    // Fashion-MNIST always has 10 classes; the generated images use the first 3.
    let header: Vec<String> = (0..10).map(|c| format!("p_{c}")).collect();
    assert_eq!(lines.next().unwrap(), format!("index,label,predicted,{}", header.join(",")));
    let (mut correct, mut nll, mut rows) = (0usize, 0f64, 0usize);
    for line in lines {
        let cells: Vec<f64> = line.split(',').map(|c| c.parse().unwrap()).collect();
        let (label, predicted) = (cells[1] as usize, cells[2] as usize);
        let probabilities = &cells[3..];
        assert!((probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        correct += (label == predicted) as usize;
        nll -= probabilities[label].ln();
        rows += 1;
    }
    assert_eq!(rows, 24);
    assert!((100.0 * correct as f64 / 24.0 - top1).abs() < 1e-9);
    assert!((nll / 24.0 - report["nll"].as_f64().unwrap()).abs() < 1e-3);
    let matrix = std::fs::read_to_string(&confusion).unwrap();
    assert_eq!(matrix.lines().count(), 11, "{matrix}");
}

/// Kill `kd-pretrain` after it saved an epoch, run the same command again: it resumes after the
/// saved epoch, keeps the earlier metrics rows and finishes the run.
#[test]
fn resumes_after_kill() {
    let t = KdTest::new();
    let args = ["--epochs", "400", "--val-size", "0"];
    let mut child = t
        .pretrain("run", "cpu", &args)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let progress = t.path("run/state/progress.json");
    let started = std::time::Instant::now();
    let saved_epochs = loop {
        if let Ok(text) = std::fs::read_to_string(&progress) {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            let done = value["epochs_done"].as_u64().unwrap();
            if done >= 2 {
                child.kill().unwrap();
                child.wait().unwrap();
                break done;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "finished before it could be killed");
        assert!(started.elapsed().as_secs() < 600, "no progress after 10 minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let before: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&progress).unwrap()).unwrap();
    let saved = before["epochs_done"].as_u64().unwrap();
    assert!(saved >= saved_epochs && saved < 400);
    assert!(!t.path("run/model.safetensors").exists(), "no final checkpoint before the run ends");

    let output = run(&mut t.pretrain("run", "cpu", &args));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("resuming after epoch {saved} of 400")), "{stderr}");
    let after: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&progress).unwrap()).unwrap();
    assert_eq!(after["epochs_done"], 400);
    let rows = after["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 400);
    for (i, row) in before["rows"].as_array().unwrap().iter().enumerate() {
        assert_eq!(&rows[i], row, "epoch {} was redone", i + 1);
    }
    // Only the last epoch's state is kept.
    let state = list(&t.path("run/state"));
    assert_eq!(state, vec!["model-epoch400.bpk", "optim-epoch400.bpk", "progress.json"]);
    assert!(t.path("run/model.safetensors").exists());
}

#[test]
fn bad_dataset_files_are_reported_with_exit_2() {
    // Truncated image file.
    let t = KdTest::new();
    let images = t.data().join("t10k-images-idx3-ubyte");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 10]).unwrap();
    assert_input_error(&run(&mut t.pretrain("run", "cpu", &[])), &["t10k-images-idx3-ubyte", "truncated"]);
    assert!(!t.path("run/model.safetensors").exists());

    // Wrong magic number.
    let t = KdTest::new();
    let labels = t.data().join("t10k-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&labels).unwrap();
    bytes[2] = 0x09;
    std::fs::write(&labels, &bytes).unwrap();
    assert_input_error(&run(&mut t.pretrain("run", "cpu", &[])), &["t10k-labels-idx1-ubyte", "wrong magic number"]);

    // Label out of range.
    let mut bytes = bytes;
    bytes[2] = 0x08;
    bytes[8 + 5] = 12;
    std::fs::write(&labels, &bytes).unwrap();
    assert_input_error(
        &run(&mut t.pretrain("run", "cpu", &[])),
        &["t10k-labels-idx1-ubyte", "label 12 of image 5 is out of range 0..10"],
    );

    // Missing file.
    std::fs::remove_file(&labels).unwrap();
    assert_input_error(&run(&mut t.pretrain("run", "cpu", &[])), &["t10k-labels-idx1-ubyte", "not found"]);
}

#[test]
fn unwritable_output_and_bad_config_are_reported_with_exit_2() {
    let t = KdTest::new();
    std::fs::write(t.path("a-file"), "x").unwrap();
    assert_input_error(&run(&mut t.pretrain("a-file/run", "cpu", &[])), &["output directory a-file/run"]);

    std::fs::write(t.path("c.toml"), "[train]\nepochz = 3\n").unwrap();
    assert_input_error(
        &run(&mut t.pretrain("run", "cpu", &["--config", "c.toml"])),
        &["c.toml", "unknown key `train.epochz`"],
    );

    // A config file that sets values is honoured, flags still win.
    std::fs::write(t.path("ok.toml"), "label_smoothing = 0.1\n[train]\nepochs = 1\n").unwrap();
    let output = run(&mut t.pretrain("run2", "cpu", &["--config", "ok.toml", "--epochs", "1"]));
    json_ok(&output);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("run2/config.json")).unwrap()).unwrap();
    assert!((config["label_smoothing"].as_f64().unwrap() - 0.1).abs() < 1e-6);
    assert_eq!(config["train"]["epochs"], 1);
}

/// A learning rate that explodes in epoch 2 makes the loss non-finite: the run stops with exit
/// code 2 and a message, epoch 1's state stays as the last good checkpoint, and no final
/// checkpoint that looks whole is written.
#[test]
fn divergence_stops_and_keeps_the_last_good_state() {
    let t = KdTest::new();
    std::fs::write(
        t.path("explode.toml"),
        "[train.schedule]\nwarmup_epochs = 0.0\n[train.schedule.decay]\nkind = \"step\"\nmilestones = [1]\ngamma = 1e30\n",
    )
    .unwrap();
    let output = run(&mut t.pretrain("run", "cpu", &["--config", "explode.toml", "--val-size", "0"]));
    assert_input_error(&output, &["training diverged", "epoch 2"]);
    let progress: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("run/state/progress.json")).unwrap()).unwrap();
    assert_eq!(progress["epochs_done"], 1);
    assert!(t.path("run/state/model-epoch1.bpk").exists());
    assert!(!t.path("run/model.safetensors").exists());
}

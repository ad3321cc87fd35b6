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
        csv.starts_with("pass,epoch,lr,train_loss,train_top1,val_loss,val_top1,val_top5,images_per_s,seconds\n"),
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

    // Independent of kd-eval's accumulator: the network is run here, on the CPU, on the test
    // images normalised here with the sidecar's mean and std; its probabilities must match the
    // dumped rows, and accuracy and NLL are recomputed from them.
    let device = burn::tensor::Device::flex();
    let (network, meta) = kd_common::checkpoint::load(&out.join("model.safetensors"), &device).unwrap();
    let (pixels, labels) = make_images(24, 1);
    let values: Vec<f32> =
        pixels.iter().map(|&p| (p as f32 / 255.0 - meta.input.mean[0]) / meta.input.std[0]).collect();
    let x = burn::tensor::Tensor::<4>::from_data(burn::tensor::TensorData::new(values, [24, 1, SIDE, SIDE]), &device);
    let mine: Vec<f32> =
        burn::tensor::activation::softmax(network.forward(x), 1).into_data().try_to_vec::<f32>().unwrap();
    let text = std::fs::read_to_string(&predictions).unwrap();
    let mut lines = text.lines();
    // Fashion-MNIST always has 10 classes; the generated images use the first 3.
    let header: Vec<String> = (0..10).map(|c| format!("p_{c}")).collect();
    assert_eq!(lines.next().unwrap(), format!("index,label,predicted,{}", header.join(",")));
    let (mut correct, mut nll, mut rows) = (0usize, 0f64, 0usize);
    for line in lines {
        let cells: Vec<f64> = line.split(',').map(|c| c.parse().unwrap()).collect();
        let (index, label) = (cells[0] as usize, cells[1] as usize);
        assert_eq!(label, labels[index] as usize, "row {index}: label");
        let dumped = &cells[3..];
        let here = &mine[index * 10..(index + 1) * 10];
        for (a, b) in dumped.iter().zip(here) {
            assert!((a - *b as f64).abs() < 1e-3, "row {index}: kd-eval {dumped:?} vs recomputed {here:?}");
        }
        let argmax = (0..10).fold(0, |best, c| if here[c] > here[best] { c } else { best });
        correct += (argmax == label) as usize;
        nll -= (here[label] as f64).ln();
        rows += 1;
    }
    assert_eq!(rows, 24);
    assert!((100.0 * correct as f64 / 24.0 - top1).abs() < 1e-9, "recomputed top-1 differs from kd-eval's {top1}");
    assert!((nll / 24.0 - report["nll"].as_f64().unwrap()).abs() < 1e-3);
    let matrix = std::fs::read_to_string(&confusion).unwrap();
    assert_eq!(matrix.lines().count(), 11, "{matrix}");
}

/// Kill `kd-pretrain` right after it saved pass 2 (the loop's test hook aborts the process, as a
/// kill would), run the same command again: it resumes after pass 2, keeps the earlier metrics
/// rows and finishes the run. Running it once more after completion is a no-op.
#[test]
fn resumes_after_kill() {
    let t = KdTest::new();
    let args = ["--epochs", "4", "--val-size", "0"];
    let killed = run(t.pretrain("run", "cpu", &args).env("KD_ABORT_AFTER_PASS", "2"));
    assert!(!killed.status.success(), "the run should have been aborted");
    let progress = t.path("run/state/progress.json");
    let before: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&progress).unwrap()).unwrap();
    assert_eq!(before["passes_done"], 2);
    assert!(!t.path("run/model.safetensors").exists(), "no final checkpoint before the run ends");

    let output = run(&mut t.pretrain("run", "cpu", &args));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("resuming after pass 2 of 4 (epoch 2 of 4)"), "{stderr}");
    let after: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&progress).unwrap()).unwrap();
    assert_eq!(after["passes_done"], 4);
    let rows = after["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for (i, row) in before["rows"].as_array().unwrap().iter().enumerate() {
        assert_eq!(&rows[i], row, "pass {} was redone", i + 1);
    }
    // Only the last pass's state is kept.
    let state = list(&t.path("run/state"));
    assert_eq!(state, vec!["model-pass4.bpk", "optim-pass4.bpk", "progress.json"]);
    assert!(t.path("run/model.safetensors").exists());
    // Finished: the same command again does nothing; another one is refused untouched.
    let other = ["--epochs", "5", "--val-size", "0"];
    assert_rerun_is_a_no_op(&t, "run", &mut t.pretrain("run", "cpu", &args), &mut t.pretrain("run", "cpu", &other));
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

    // Continuing from a checkpoint: a missing one is named; MoCo does not take one; a run from
    // one records it and trains the given epochs.
    assert_input_error(
        &run(&mut t.pretrain("run3", "cpu", &["--init", "absent.safetensors"])),
        &["absent.safetensors", "not found"],
    );
    let moco = ["--init", "run2/model.safetensors", "--method", "moco"];
    assert_input_error(&run(&mut t.pretrain("run4", "cpu", &moco)), &["--init", "MoCo"]);
    let continued =
        json_ok(&run(&mut t.pretrain("run5", "cpu", &["--init", "run2/model.safetensors", "--epochs", "1"])));
    assert_eq!(continued["epochs"], 1, "{continued}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("run5/config.json")).unwrap()).unwrap();
    assert!(config["init"].as_str().unwrap().ends_with("run2/model.safetensors"), "{config}");
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
    assert_input_error(&output, &["training diverged", "pass 2"]);
    let progress: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("run/state/progress.json")).unwrap()).unwrap();
    assert_eq!(progress["passes_done"], 1);
    assert!(t.path("run/state/model-pass1.bpk").exists());
    assert!(!t.path("run/model.safetensors").exists());
}

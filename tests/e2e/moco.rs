use crate::fixture::*;

/// MoCo v2 on the fixture data (8 x 8 images, no labels read): batch 8, queue 16.
fn moco(t: &KdTest, out: &str, extra: &[&str]) -> std::process::Command {
    let mut args = vec!["--method", "moco", "--epochs", "3", "--batch-size", "8", "--val-size", "8"];
    if !extra.contains(&"--queue") {
        args.extend(["--queue", "16"]);
    }
    args.extend(extra);
    t.pretrain(out, "cpu", &args)
}

/// A MoCo run reports kNN top-1 per pass and on the test split, and writes a checkpoint with a
/// projection head. Killed after pass 1 and rerun, it resumes with the queue it had (the
/// saved queue's pointer counts every step of both processes).
#[test]
fn moco_trains_monitors_knn_and_resumes_with_its_queue() {
    let t = KdTest::new();
    let summary = json_ok(&run(&mut moco(&t, "whole", &[])));
    let knn = summary["test_knn_top1"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&knn), "{summary}");
    let metrics = std::fs::read_to_string(t.path("whole/metrics.csv")).unwrap();
    assert!(metrics.lines().next().unwrap().contains("val_knn_top1"), "{metrics}");
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("whole/model.json")).unwrap()).unwrap();
    assert_eq!(sidecar["model"]["head"]["kind"], "projection", "{sidecar}");
    assert_rerun_is_a_no_op(&t, "whole", &mut moco(&t, "whole", &[]), &mut moco(&t, "whole", &["--seed", "9"]));

    let killed = run(moco(&t, "killed", &[]).env("KD_ABORT_AFTER_PASS", "1"));
    assert!(!killed.status.success());
    let state: Vec<String> = list(&t.path("killed/state"));
    assert!(state.iter().any(|f| f.starts_with("objective-")), "the queue is saved: {state:?}");
    let resumed = run(&mut moco(&t, "killed", &[]));
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success() && stderr.contains("resuming after pass 1 of 3"), "{stderr}");
    // The queue's pointer after 3 passes of 5 steps of 8 keys: 120 mod 16 = 8. A queue
    // restarted at the resume would stand at 10 x 8 mod 16 = 0.
    let queue = std::fs::read(t.path("killed/state/objective-moco_queue-pass3.bin")).unwrap();
    let pointer = u64::from_le_bytes(queue[16..24].try_into().unwrap());
    assert_eq!(pointer, 8);
}

/// A queue that is not a multiple of the batch, and MoCo flags without `--method moco`: exit 2.
#[test]
fn moco_bad_input_exits_2() {
    let t = KdTest::new();
    assert_input_error(&run(&mut moco(&t, "bad", &["--queue", "12"])), &["queue size (12)", "batch size (8)"]);
    let output = run(&mut t.pretrain("bad2", "cpu", &["--queue", "16"]));
    assert_input_error(&output, &["--method moco"]);
    assert!(!t.path("bad").exists() && !t.path("bad2").exists());
}

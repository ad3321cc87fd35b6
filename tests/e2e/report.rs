use crate::fixture::*;

/// Writes `<dir>/<name>/eval.json` and `metrics.csv` with the given test and per-epoch
/// validation top-1.
fn fake_run(dir: &std::path::Path, name: &str, top1: f64, val: [f64; 2]) {
    let run = dir.join(name);
    std::fs::create_dir_all(&run).unwrap();
    let eval = serde_json::json!({"arch": "small-cnn", "top1": top1, "top5": 99.0, "nll": 0.3, "ece": 0.01});
    std::fs::write(run.join("eval.json"), eval.to_string()).unwrap();
    let csv = format!("pass,epoch,val_top1\n1,1,{}\n2,2,{}\n", val[0], val[1]);
    std::fs::write(run.join("metrics.csv"), csv).unwrap();
}

/// A run directory with three seeds of a baseline and of KD (KD 1 point better, sd 0.1) and a
/// one-seed MEAL V2 with its control: the report has every method, KD "reproduced" with its
/// interval, effect size and power, MEAL V2 "inconclusive" (one seed), the rest "not run", and a
/// PNG per plot it embeds.
#[test]
fn run_directory_report_has_table_verdicts_and_plots() {
    let t = KdTest::new();
    let dir = t.path("run");
    for (seed, delta) in [(0, -0.1), (1, 0.0), (2, 0.1)] {
        fake_run(&dir, &format!("baseline-s{seed}"), 88.0 + delta, [80.0, 85.0]);
        fake_run(&dir, &format!("kd-s{seed}"), 89.0 + delta, [82.0, 87.0]);
    }
    fake_run(&dir, "meal-v2-s0", 89.5, [83.0, 88.0]);
    fake_run(&dir, "kd-continued-s0", 89.25, [83.0, 88.0]);
    let output = run(t.cmd("kd-report").arg("--run-dir").arg(&dir));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), report, "the report is also printed");
    for row in ["| baseline | small-cnn | - | 3 | 88.00 ± 0.10 |", "| kd | small-cnn | - | 3 | 89.00 ± 0.10 |"] {
        assert!(report.contains(row), "{row}\n{report}");
    }
    // Difference 1, standard error sqrt(2 * 0.01 / 3) = 0.08165 at 4 degrees of freedom: the
    // interval 1 +- 2.776445 * 0.08165 (t_0.975,4 from scipy.stats.t.ppf), p = P(T_4 > 12.25)
    // = 0.00013, Hedges' g (1 - 3 / 15) * 1 / 0.1 = 8, minimum detectable difference
    // (2.776445 + 0.940965) * 0.08165 = 0.30.
    let kd_row = "| KD | kd - baseline | +1.00 | [+0.77, +1.23] | < 0.001 | 8.00 | 0.30 | **reproduced** |";
    assert!(report.contains(kd_row), "{report}");
    assert!(
        report.contains("**KD** (") && report.contains("**reproduced**: the 95% CI [+0.77, +1.23] lies above"),
        "{report}"
    );
    assert!(report.contains("budgets: kd not recorded; baseline not recorded"), "{report}");
    let meal_v2 = "**inconclusive**: too few seeds: 1 against 1";
    assert!(report.contains("**MEAL V2** (") && report.contains(meal_v2), "{report}");
    assert!(report.contains("| MEAL V2 (secondary) | meal-v2 - kd | +0.50 | - |"), "{report}");
    assert!(report.contains("**SEED** (") && report.contains("**not run**: no runs of seed"), "{report}");
    assert!(report.contains("(plots/differences.png)"), "{report}");
    for plot in ["val-top1.png", "top1-vs-time.png"] {
        let embedded = format!("(plots/{plot})");
        assert!(report.contains(&embedded) == (plot == "val-top1.png"), "{plot}: {report}");
    }
    let image = kd_datasets::folder::decode(&dir.join("plots/val-top1.png"), 3).unwrap();
    assert_eq!((image.width, image.height), (800, 500));

    let empty = t.path("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_input_error(&run(t.cmd("kd-report").arg("--run-dir").arg(&empty)), &["empty", "no evaluated run"]);
}

/// Waits for `child` at most `seconds`, killing it and failing the test if it is still running.
fn wait_at_most(mut child: std::process::Child, seconds: u64) -> std::process::Output {
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() > seconds {
            child.kill().unwrap();
            panic!("still running after {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Metrics of `inf` or of +-1e308 (a diverged run) used to hang the plots' axis computation:
/// the report now finishes, leaving those points out.
#[test]
fn non_finite_metrics_do_not_hang_the_report() {
    let t = KdTest::new();
    let dir = t.path("run");
    fake_run(&dir, "baseline-s0", 88.0, [80.0, 85.0]);
    fake_run(&dir, "kd-s0", 89.0, [82.0, 87.0]);
    std::fs::write(dir.join("kd-s0/metrics.csv"), "pass,epoch,val_top1\n1,1,inf\n2,2,1e308\n3,3,-1e308\n").unwrap();
    let child = t.cmd("kd-report").arg("--run-dir").arg(&dir).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let output = wait_at_most(child, 120);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.join("plots/val-top1.png").exists());
}

/// A reader that stops early (`kd-report ... | head -n1`) closes the pipe: the tool exits 0
/// without a panic (`println!` used to panic, exit 101).
#[test]
fn a_closed_stdout_is_not_an_error() {
    let t = KdTest::new();
    let dir = t.path("run");
    fake_run(&dir, "baseline-s0", 88.0, [80.0, 85.0]);
    let mut child = t
        .cmd("kd-report")
        .arg("--run-dir")
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = wait_at_most(child, 120);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

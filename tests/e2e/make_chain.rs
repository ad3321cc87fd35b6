use crate::fixture::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// `make` in the repository on the image folder `data` into `run`, with the binaries cargo built
/// for this test (no build) and a schedule for seconds, not minutes.
fn make(data: &Path, run: &Path) -> Command {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bin = bin("kd-pretrain").parent().unwrap().to_path_buf();
    let mut cmd = Command::new("make");
    cmd.arg("-C").arg(repo).arg(format!("RUN={}", run.display())).arg(format!("BIN={}", bin.display()));
    cmd.args(["NO_BUILD=1", "DEVICE=cpu", "DATASET=folder", "IMAGE_SIZE=8", "EPOCHS=1", "BATCH=8", "QUEUE=16"]);
    cmd.args([
        "UNLABELED=20",
        "SELECT_PER_CLASS=3",
        "CROPS=2",
        "PRUNE_TARGET=0.36",
        "PRUNE_FRACTION=0.2",
        "PRUNED=0.640",
    ]);
    cmd.arg("PRUNE_EPOCHS=0");
    // Both conversions (the default converts to hard labels only).
    cmd.arg("LABEL_TYPES=hard smoothing");
    cmd.arg(format!("DATA_DIR={}", data.display()));
    cmd.env("KD_NO_PROGRESS", "1").env_remove("RUST_LOG").env_remove("MAKEFLAGS").env_remove("MFLAGS");
    cmd
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every checkpoint under `run` with its modification time.
fn checkpoints(run: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut found: Vec<(PathBuf, SystemTime)> = std::fs::read_dir(run)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("model.safetensors"))
        .filter(|p| p.is_file())
        .map(|p| {
            let time = modified(&p);
            (p, time)
        })
        .collect();
    found.sort();
    found
}

/// The whole `make` chain on a user's image folder (`DATASET=folder DATA_DIR=... IMAGE_SIZE=...`):
/// stopped (SIGTERM to make's process group; SIGINT is ignored by jobs a non-interactive shell
/// starts in the background, as CI scripts may) once the teacher stage is done, then rerun, it finishes
/// without retraining the teacher; the report has every method and its plots; a third run
/// redoes nothing; a seed added to SEEDS runs only that seed's stages.
#[test]
fn make_chain_on_a_folder_survives_interrupt_and_redoes_nothing() {
    let t = KdTest::new();
    make_folder(&t.path("images"), 60);
    let (data, run) = (t.path("images"), t.path("run"));

    let mut first = make(&data, &run);
    first.stdout(Stdio::null()).stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut first, 0);
    let mut child = first.spawn().expect("make should start");
    // The teacher stage is complete once its recipe moved the summary into place.
    let (teacher, done) = (run.join("teacher/model.safetensors"), run.join("teacher/summary.json"));
    let started = Instant::now();
    while !done.exists() && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(done.exists(), "the teacher stage finished");
    // The recipe's shell exits just after its `mv`; a signal in that window makes make delete the
    // target it considers interrupted (GNU make does so for a running recipe's changed target),
    // and the rerun would train the teacher again. Let the shell exit first.
    std::thread::sleep(Duration::from_millis(500));
    let teacher_time = modified(&teacher);
    let group = format!("-{}", child.id());
    Command::new("kill").args(["-TERM", "--", &group]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "make was interrupted");

    let output = make(&data, &run).output().unwrap();
    let log = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert_eq!(modified(&teacher), teacher_time, "the teacher was not retrained");
    assert!(!log.contains(&format!("--out {}/teacher ", run.display())), "{log}");

    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    let methods = [
        "| baseline |",
        "| kd |",
        "| dkd |",
        "| dist |",
        "| fkd |",
        "| fkd-hard |",
        "| fkd-smoothing |",
        "| meal-v2 |",
        "| kd-continued |",
        "| baseline-continued |",
        "| derived-baseline-random |",
        "| kd-retrained |",
        "| teacher-retrained |",
        "| ssld |",
        "| ssld-baseline |",
        "| seed |",
    ];
    for method in methods.into_iter().chain(["| kd-pruned0.640 |", "| moco-student |"]) {
        assert!(report.contains(method), "{method} missing:\n{report}");
    }
    let claims = ["**KD**", "**FKD**", "**prune-then-distill**", "**prune-then-distill, derived student**"];
    for claim in claims.into_iter().chain(["**MEAL V2**", "**SSLD**", "**SEED**"]) {
        assert!(report.contains(claim), "{claim} missing:\n{report}");
    }
    assert!(!report.contains("**not run**"), "every claim has its runs:\n{report}");
    assert!(run.join("plots/top1-vs-time.png").is_file() && report.contains("(plots/top1-vs-time.png)"));
    // 60 images: 6 held out as the test split, 54 for training, of which SSLD's baseline
    // keeps the 34 that are not in the unlabelled hold-out of 20.
    let sidecar = std::fs::read_to_string(run.join("ssld-baseline-s0/model.json")).unwrap();
    let sidecar: serde_json::Value = serde_json::from_str(&sidecar).unwrap();
    assert_eq!(sidecar["dataset"]["count"], 34, "{sidecar}");

    let before = checkpoints(&run);
    // Every run directory with a checkpoint: the two teachers, the derived student, the MoCo
    // teacher and seed 0's students (baseline, kd, dkd, dist, fkd, fkd-hard, fkd-smoothing,
    // fkd-online, meal-v2, kd-continued, baseline-continued, ssld, ssld-baseline, kd-pruned0.640,
    // kd-retrained, kd-derived-random, derived-baseline-random, moco-student, seed).
    for dir in ["dkd-s0", "dist-s0"] {
        assert!(run.join(dir).join("eval.json").is_file(), "{dir}/eval.json missing");
    }
    assert!(before.len() >= 23, "{before:?}");
    let again = make(&data, &run).output().unwrap();
    let log = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success() && !log.contains("--out "), "nothing is retrained:\n{log}");
    assert_eq!(checkpoints(&run), before);

    // A seed added to SEEDS trains that seed's students only, and the report gains it.
    let more = make(&data, &run).arg("SEEDS=0 1").output().unwrap();
    let log = String::from_utf8_lossy(&more.stdout);
    assert!(more.status.success(), "{log}\n{}", String::from_utf8_lossy(&more.stderr));
    for method in ["kd", "dkd", "dist", "kd-derived-random", "derived-baseline-random"] {
        assert!(log.contains(&format!("--out {}/{method}-s1 ", run.display())), "{log}");
        assert!(!log.contains(&format!("--out {}/{method}-s0 ", run.display())), "{log}");
    }
    // The new seed's derived network has its own random initialisation; seed 0's is kept.
    assert!(log.contains(&format!("--out {}/derived-random-s1 ", run.display())), "{log}");
    assert!(!log.contains(&format!("--out {}/derived-random ", run.display())), "{log}");
    let after = checkpoints(&run);
    assert!(before.iter().all(|b| after.contains(b)), "nothing of seed 0 was redone");
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("| kd | small-cnn (") && report.contains("| 2 |"), "two seeds:\n{report}");
}

/// The commands `make -n PROFILE=<profile>` would run (nothing is run, nothing built).
fn dry_run(profile: &str) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let run = tempfile::tempdir().unwrap();
    let output = Command::new("make")
        .arg("-n")
        .arg("-C")
        .arg(repo)
        .args([format!("PROFILE={profile}"), format!("RUN={}", run.path().display())])
        .args(["NO_BUILD=1", "BIN=bin", "DEVICE=cpu", "JOBS=1"])
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .output()
        .unwrap();
    assert!(output.status.success(), "make -n failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The line of `commands` that runs `tool` with every one of `needles`.
fn command_with<'a>(commands: &'a str, tool: &str, needles: &[&str]) -> Option<&'a str> {
    commands.lines().find(|line| line.contains(tool) && needles.iter().all(|n| line.contains(n)))
}

/// `make PROFILE=converged` chains the quick profile's stages with the converged preset for every
/// student: the student tools get `--profile converged` (which sets 40 epochs, no --epochs from the
/// Makefile), while the teachers (supervised, second, MoCo v2) and the pruning ladder with its dense
/// control keep quick's preset, so that the two profiles' verdicts differ in the students'
/// schedules alone; the label file stores one crop per epoch's visit (40), and the CPU-sized
/// settings (crop scale, pruning ladder, SSLD's split) are quick's.
#[test]
fn converged_profile_chains_the_quick_stages_with_its_preset() {
    let quick = dry_run("quick");
    let converged = dry_run("converged");
    for (commands, profile, crops) in [(&quick, "quick", "--crops 4 "), (&converged, "converged", "--crops 40 ")] {
        // Every command that takes a preset: the teacher-side ones (the two supervised teachers,
        // the MoCo v2 teacher, the pruning ladder and its dense control) quick's, the rest the run's.
        let (mut teachers, mut students) = (Vec::new(), Vec::new());
        for line in commands.lines().filter(|line| line.contains("--profile ")) {
            let teacher_side = line.contains("--role teacher") || line.contains("kd-prune --profile");
            let expected = if teacher_side { "quick" } else { profile };
            assert!(
                line.contains(&format!("--profile {expected} ")),
                "{profile}: expected --profile {expected}: {line}"
            );
            assert!(!line.contains("--epochs"), "the preset sets the epochs: {line}");
            if teacher_side { teachers.push(line) } else { students.push(line) }
        }
        for needle in ["/teacher > ", "/teacher-b > ", "/moco-teacher > ", "/prune > ", "/prune-dense > "] {
            assert!(
                teachers.iter().any(|line| line.contains(needle)),
                "{profile}: no teacher-side {needle} in {teachers:#?}"
            );
        }
        for needle in [
            "kd-distill dkd",
            "/baseline-s0 > ",
            "/moco-student-s0 > ",
            "kd-seed",
            "/kd-derived-random-s0 > ",
            "/kd-retrained-s0 > ",
        ] {
            assert!(
                students.iter().any(|line| line.contains(needle)),
                "{profile}: no student {needle} in {students:#?}"
            );
        }
        assert!(command_with(commands, "kd-pack-labels", &[crops, "--scale 0.8 1"]).is_some(), "{profile}: {commands}");
        assert!(command_with(commands, "kd-prune", &["--fraction 0.4", "--target-sparsity 0.79"]).is_some());
        assert!(
            command_with(commands, "kd-distill ssld", &["train-holdout:25000", "--select-per-class 2000"]).is_some()
        );
    }
}

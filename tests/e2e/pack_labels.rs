use crate::fixture::*;
use kd_datasets::soft_labels::RegionLabels;
use kd_datasets::soft_labels::geometry::crops_from_seed;
use std::path::Path;

/// Trains the tiny teacher used by these tests (CPU: fast and deterministic).
fn teacher(t: &KdTest) -> std::path::PathBuf {
    json_ok(&run(&mut t.pretrain("teacher", "cpu", &["--epochs", "1", "--val-size", "0"])));
    t.path("teacher/model.safetensors")
}

fn pack(t: &KdTest, teacher: &Path, out: &str, device: &str, extra: &[&str]) -> std::process::Command {
    let mut cmd = t.cmd("kd-pack-labels");
    cmd.arg("--teacher").arg(teacher).arg("--data-dir").arg(t.data());
    cmd.args(["--out", out, "--device", device]);
    for (flag, value) in [("--crops", "6"), ("--top-k", "2"), ("--workers", "2")] {
        if !extra.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(extra);
    cmd
}

/// Everything in a label file except its creation time.
fn content(path: &Path) -> (kd_datasets::soft_labels::LabelMeta, kd_datasets::soft_labels::LabelBlock) {
    let labels = RegionLabels::open(path).unwrap();
    let mut meta = labels.meta.clone();
    meta.created_unix = 0;
    (meta, labels.as_block())
}

/// Packs on wgpu, then checks the file: attributes, verify, stats, h5dump, and that the crops a
/// reader rebuilds from the stored boxes and flips give the teacher's stored labels back.
#[test]
fn packs_on_wgpu_and_crops_rebuild_exactly() {
    let t = KdTest::new();
    let teacher = teacher(&t);
    let summary = json_ok(&run(&mut pack(&t, &teacher, "labels.h5", "wgpu", &[])));
    assert_eq!(summary["images"], 48);
    assert_eq!(summary["raw_bytes_per_crop"], 9 + 2 + 2, "boxes + flip + 2 u8 indices + 2 u8 probabilities");
    let labels = RegionLabels::open(&t.path("labels.h5")).unwrap();
    assert_eq!(labels.meta.crops_per_image, 6);
    assert_eq!(labels.meta.num_classes, 10);

    // Rebuild every crop from the stored geometry and run the teacher on it (CPU): the top-2
    // classes and their probabilities (u8: within 1/510) must be the stored ones.
    let device = burn::tensor::Device::flex();
    let (network, meta) = kd_common::checkpoint::load(&teacher, &device).unwrap();
    let network = burn::module::Module::valid(&network);
    let data = kd_datasets::DatasetKind::FashionMnist.open(Some(&t.data()), kd_datasets::Split::Train, 1, 0.1).unwrap();
    let transform = kd_datasets::Transform {
        augment: kd_datasets::Augment::None,
        out_height: SIDE,
        out_width: SIDE,
        mean: meta.input.mean.clone(),
        std: meta.input.std.clone(),
    };
    let mut checked = 0;
    for image_index in [0usize, 17, 47] {
        let image = data.image(image_index).unwrap();
        let crops = labels.crops(image_index, image.height, image.width);
        // The stored geometry is the geometry of the image's seed stream.
        let seed = kd_datasets::soft_labels::geometry::image_seed(labels.meta.seed, image_index as u64);
        let regenerated = crops_from_seed(seed, 6, image.height, image.width, &labels.meta.crop);
        for (crop, (raw, flip)) in crops.iter().zip(&regenerated) {
            let pixel_box = kd_datasets::soft_labels::geometry::decode_box(*raw).to_pixels(image.height, image.width);
            assert_eq!((crop.pixel_box, crop.flip), (pixel_box, *flip));
        }
        for (c, crop) in crops.iter().enumerate() {
            let pixels = kd_datasets::transforms::crop_resize(&image, crop.pixel_box, crop.flip, SIDE, SIDE);
            let mut input = Vec::new();
            transform.normalise_into(&pixels, &mut input);
            let x =
                burn::tensor::Tensor::<4>::from_data(burn::tensor::TensorData::new(input, [1, 1, SIDE, SIDE]), &device);
            let p: Vec<f32> =
                burn::tensor::activation::softmax(network.forward(x), 1).into_data().try_to_vec().unwrap();
            let (indices, probs) = labels.raw(image_index, c);
            let top = kd_datasets::soft_labels::compress::top_k(&p, 2);
            assert_eq!(indices, &top[..], "image {image_index} crop {c}");
            for (&i, &raw) in indices.iter().zip(probs) {
                assert!(
                    (p[i as usize] - raw as f32 / 255.0).abs() <= 0.5 / 255.0 + 1e-4,
                    "image {image_index} crop {c}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 18);

    let mut verify = t.cmd("kd-pack-labels");
    verify.args(["verify", "labels.h5"]);
    let output = run(&mut verify);
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("ok"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut stats = t.cmd("kd-pack-labels");
    stats.args(["stats", "labels.h5", "--data-dir"]).arg(t.data());
    let stats = json_ok(&run(&mut stats));
    assert!(stats["mean_entropy_nats"].as_f64().unwrap() >= 0.0);
    assert!(stats["teacher_label_agreement"].as_f64().is_some());
    if let Ok(output) = std::process::Command::new("h5dump").args(["-H", "-A"]).arg(t.path("labels.h5")).output() {
        let text = String::from_utf8_lossy(&output.stdout);
        for needle in ["crops_per_image", "label_type", "dataset_list_sha256", "\"boxes\"", "\"probs\""] {
            assert!(text.contains(needle), "h5dump lacks {needle}:\n{text}");
        }
    }
}

/// Seed-regenerated geometry equals stored geometry at 9 bytes less per crop.
#[test]
fn seed_geometry_matches_stored_geometry() {
    let t = KdTest::new();
    let teacher = teacher(&t);
    json_ok(&run(&mut pack(&t, &teacher, "stored.h5", "cpu", &["--prob-encoding", "f16"])));
    let summary =
        json_ok(&run(&mut pack(&t, &teacher, "seed.h5", "cpu", &["--prob-encoding", "f16", "--geometry", "seed"])));
    assert_eq!(summary["raw_bytes_per_crop"], 2 + 4, "2 u8 indices + 2 f16 probabilities");
    let stored = RegionLabels::open(&t.path("stored.h5")).unwrap();
    let seeded = RegionLabels::open(&t.path("seed.h5")).unwrap();
    for image in 0..48 {
        assert_eq!(stored.crops(image, SIDE, SIDE), seeded.crops(image, SIDE, SIDE), "image {image}");
        for crop in 0..6 {
            assert_eq!(stored.raw(image, crop), seeded.raw(image, crop));
        }
    }
    // The chunk-cached reader (5 images a chunk, 2 chunks kept; a zero memory budget selects it)
    // returns the same labels in any access order.
    let chunked = kd_datasets::soft_labels::LabelReader::open(&t.path("stored.h5"), 0).unwrap();
    assert!(matches!(chunked, kd_datasets::soft_labels::LabelReader::Chunked(_)));
    let small = kd_datasets::soft_labels::ChunkedLabels::open(&t.path("seed.h5"), 5, 2).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for image in [47usize, 0, 23, 5, 4, 46, 12, 12, 30] {
        assert_eq!(chunked.crops(image, SIDE, SIDE).unwrap(), stored.crops(image, SIDE, SIDE));
        assert_eq!(small.crops(image, SIDE, SIDE).unwrap(), stored.crops(image, SIDE, SIDE));
        for crop in 0..6 {
            stored.distribution_into(image, crop, &mut a);
            small.distribution_into(image, crop, &mut b).unwrap();
            assert_eq!(a, b, "image {image} crop {crop}");
            chunked.distribution_into(image, crop, &mut b).unwrap();
            assert_eq!(a, b);
        }
    }
    assert!(small.crops(48, SIDE, SIDE).is_err());
}

/// A pack stopped after its first block and run again continues, and the finished file holds
/// the same labels as an uninterrupted run.
#[test]
fn resume_after_interruption_gives_the_same_file() {
    let t = KdTest::new();
    let teacher = teacher(&t);
    let args = ["--crops", "64"];
    json_ok(&run(&mut pack(&t, &teacher, "whole.h5", "cpu", &args)));

    let mut stopped = pack(&t, &teacher, "resumed.h5", "cpu", &args);
    stopped.env("KD_PACK_ABORT_AFTER_BLOCKS", "1");
    let output = run(&mut stopped);
    assert!(!output.status.success());
    assert!(!t.path("resumed.h5").exists(), "an interrupted run must not leave a file that looks whole");
    assert!(t.path("resumed.h5.partial").exists());
    let err = RegionLabels::open(&t.path("resumed.h5.partial")).unwrap_err().to_string();
    assert!(
        err.contains("resumed.h5.partial") && err.contains("incomplete label file (16 of 48 images written)"),
        "{err}"
    );
    let output = run(&mut pack(&t, &teacher, "resumed.h5", "cpu", &args));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("resuming after 16 of 48 images"), "{stderr}");
    assert_eq!(content(&t.path("whole.h5")), content(&t.path("resumed.h5")));
}

/// Shards packed by separate processes as the tasks of a job array (`--shard auto`: two as
/// Slurm array tasks 1 and 3 of `--array=1-3`, one as index 1 of a Kubernetes Indexed Job),
/// each writing `s-{shard}.h5`, merged: the label file's datasets and attributes equal one
/// unsharded process's (all but the creation time).
#[test]
fn shards_merge_into_the_whole() {
    let t = KdTest::new();
    let teacher = teacher(&t);
    json_ok(&run(&mut pack(&t, &teacher, "whole.h5", "cpu", &[])));
    for task in ["3", "1"] {
        let mut slurm = pack(&t, &teacher, "s-{shard}.h5", "cpu", &["--shard", "auto"]);
        slurm.envs([("SLURM_ARRAY_TASK_ID", task), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        json_ok(&run(&mut slurm));
    }
    let mut kubernetes = pack(&t, &teacher, "s-{shard}.h5", "cpu", &["--shard", "auto/3"]);
    json_ok(&run(kubernetes.env("JOB_COMPLETION_INDEX", "1")));
    // Run again (a retried task) it is a no-op.
    let mut retried = pack(&t, &teacher, "s-{shard}.h5", "cpu", &["--shard", "auto/3"]);
    assert_eq!(json_ok(&run(retried.env("JOB_COMPLETION_INDEX", "1")))["already_complete"], true);
    // Outside an array `auto` says what it needs.
    let mut outside = pack(&t, &teacher, "s-{shard}.h5", "cpu", &["--shard", "auto"]);
    assert_input_error(&run(&mut outside), &["SLURM_ARRAY_TASK_ID", "auto/N"]);
    let mut merge = t.cmd("kd-pack-labels");
    merge.args(["merge", "--out", "merged.h5", "s-2.h5", "s-0.h5", "s-1.h5"]);
    let output = run(&mut merge);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(content(&t.path("whole.h5")), content(&t.path("merged.h5")));
    // The same merge again is a no-op that succeeds; the file stays as it was.
    let before = std::fs::read(t.path("merged.h5")).unwrap();
    let mut again = t.cmd("kd-pack-labels");
    again.args(["merge", "--out", "merged.h5", "s-0.h5", "s-1.h5", "s-2.h5"]);
    let output = run(&mut again);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read(t.path("merged.h5")).unwrap(), before);
    // Another label file in its place (a shard) is refused without --force, and kept.
    let mut other = t.cmd("kd-pack-labels");
    other.args(["merge", "--out", "s-0.h5", "s-0.h5", "s-1.h5", "s-2.h5"]);
    let before = std::fs::read(t.path("s-0.h5")).unwrap();
    assert_input_error(&run(&mut other), &["s-0.h5 already exists", "--force"]);
    assert_eq!(std::fs::read(t.path("s-0.h5")).unwrap(), before);
}

/// `convert` gives the same file as packing that type with the teacher (same crops, same bytes;
/// only the tool string and the time differ), and refuses a type the input cannot give.
#[test]
fn convert_equals_packing_the_type() {
    let t = KdTest::new();
    let teacher = teacher(&t);
    json_ok(&run(&mut pack(&t, &teacher, "top2.h5", "cpu", &[])));
    let convert = |out: &str, label_type: &str, extra: &[&str]| {
        let mut cmd = t.cmd("kd-pack-labels");
        cmd.args(["convert", "top2.h5", "--out", out, "--label-type", label_type]).args(extra);
        run(&mut cmd)
    };
    let without_tool = |path: &str| {
        let (mut meta, block) = content(&t.path(path));
        meta.tool.clear();
        (meta, block)
    };
    for (label_type, top_k) in
        [("hard", "2"), ("smoothing", "2"), ("marginal-renorm", "2"), ("marginal-smoothing", "1")]
    {
        let direct = format!("direct-{label_type}.h5");
        json_ok(&run(&mut pack(&t, &teacher, &direct, "cpu", &["--label-type", label_type, "--top-k", top_k])));
        let converted = format!("converted-{label_type}.h5");
        let summary = json_ok(&convert(&converted, label_type, &["--top-k", top_k]));
        assert_eq!(summary["label_type"], label_type);
        assert_eq!(without_tool(&direct), without_tool(&converted), "{label_type}");
    }
    assert!(content(&t.path("converted-hard.h5")).0.tool.ends_with("convert"));

    // Information the file does not hold: exit 2, the input named, nothing written.
    let output = convert("full.h5", "full", &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("top2.h5") && stderr.contains("all class probabilities"), "{stderr}");
    let output = convert("top3.h5", "marginal-smoothing", &["--top-k", "3"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("top 3 classes (it keeps 2)"));
    assert!(!t.path("full.h5").exists() && !t.path("top3.h5").exists() && !t.path("top3.h5.partial").exists());
    // The same conversion again is a no-op that succeeds and leaves the file as it was; other
    // settings into an existing output need --force.
    let before = std::fs::read(t.path("converted-hard.h5")).unwrap();
    let again = json_ok(&convert("converted-hard.h5", "hard", &["--top-k", "2"]));
    assert_eq!(again["already_complete"], true);
    assert_eq!(std::fs::read(t.path("converted-hard.h5")).unwrap(), before);
    let output = convert("converted-hard.h5", "smoothing", &["--top-k", "2"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));
    assert_eq!(std::fs::read(t.path("converted-hard.h5")).unwrap(), before);
    json_ok(&convert("converted-hard.h5", "smoothing", &["--top-k", "2", "--force"]));
}

#[test]
fn bad_inputs_are_refused_and_good_files_untouched() {
    let t = KdTest::new();
    let teacher = teacher(&t);
    json_ok(&run(&mut pack(&t, &teacher, "labels.h5", "cpu", &[])));
    let before = std::fs::read(t.path("labels.h5")).unwrap();

    // The same command again (a retried job) is a no-op that succeeds; other settings into the
    // same file are refused. Neither touches the file.
    let again = json_ok(&run(&mut pack(&t, &teacher, "labels.h5", "cpu", &[])));
    assert_eq!(again["already_complete"], true);
    assert_eq!(std::fs::read(t.path("labels.h5")).unwrap(), before);
    assert_input_error(
        &run(&mut pack(&t, &teacher, "labels.h5", "cpu", &["--crops", "3"])),
        &["labels.h5 already exists", "other settings", "--force"],
    );
    assert_eq!(std::fs::read(t.path("labels.h5")).unwrap(), before);

    // `stats` against a dataset other than the one packed (fewer images): refused, no panic.
    let small = t.path("small-data");
    std::fs::create_dir(&small).unwrap();
    let (pixels, labels) = make_images(10, 0);
    kd_datasets::idx::write_split(&small, "train", SIDE, SIDE, &pixels, &labels, false).unwrap();
    let mut stats = t.cmd("kd-pack-labels");
    stats.args(["stats", "labels.h5", "--data-dir"]).arg(&small);
    assert_input_error(&run(&mut stats), &["labels.h5", "10 images", "--data-dir"]);

    std::fs::write(t.path("garbage.safetensors"), b"not a checkpoint").unwrap();
    std::fs::write(t.path("garbage.json"), b"{}").unwrap();
    assert_input_error(&run(&mut pack(&t, &t.path("garbage.safetensors"), "x.h5", "cpu", &[])), &["garbage"]);

    std::fs::write(t.path("a-file"), "x").unwrap();
    assert_input_error(&run(&mut pack(&t, &teacher, "a-file/labels.h5", "cpu", &[])), &["a-file"]);

    // A teacher of 3 classes (image folder) against the 10-class dataset.
    make_folder(&t.path("folder"), 12);
    json_ok(&run(&mut pretrain_folder(&t, "folder", "three")));
    let mut mismatch = pack(&t, &t.path("three/model.safetensors"), "y.h5", "cpu", &["--dataset", "fashion-mnist"]);
    assert_input_error(&run(&mut mismatch), &["has 3 classes but fashion-mnist has 10"]);
}

/// Unmounts a test file system when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A full disk while packing: exit 2 with "no space left", the existing complete file untouched,
/// only a `.partial` file beside it. Needs permission to mount a 64 KiB tmpfs (root), so it is
/// ignored by a plain `cargo test`; `make test` runs it as root with `--ignored`, where a failed
/// mount fails the test.
#[test]
#[ignore = "needs root to mount a tmpfs; `make test` runs it with --ignored"]
fn disk_full_is_reported_and_existing_file_kept() {
    let t = KdTest::new();
    let teacher = teacher(&t);
    let small = t.path("small");
    std::fs::create_dir(&small).unwrap();
    let mounted =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"]).arg(&small).status();
    assert!(mounted.is_ok_and(|s| s.success()), "cannot mount a tmpfs here (not root?)");
    let _guard = Mount(small.clone());
    json_ok(&run(&mut pack(&t, &teacher, "small/labels.h5", "cpu", &["--crops", "2"])));
    let before = std::fs::read(small.join("labels.h5")).unwrap();
    let output = run(&mut pack(
        &t,
        &teacher,
        "small/labels.h5",
        "cpu",
        // 48 images x 4096 crops of stored geometry and full f16 distributions: megabytes,
        // whatever the compression makes of them (flips or not).
        &["--crops", "4096", "--force", "--prob-encoding", "f16", "--label-type", "full", "--geometry", "stored"],
    ));
    assert_input_error(&output, &["small/labels.h5.partial", "no space left on device"]);
    assert_eq!(std::fs::read(small.join("labels.h5")).unwrap(), before, "the complete file was touched");
}

//! `kd-prune derive-student`: the dense, narrower network of the same depth whose layers have as
//! many weights as a pruned checkpoint kept (`kd_common::pruning::derive_student` states the
//! rules), written as an untrained checkpoint for `kd-distill --init` or `kd-pretrain`-style
//! training; optionally initialised from the pruned network's strongest filters.

use anyhow::{Context, Result};
use kd_common::checkpoint::{self, CheckpointMeta};
use kd_common::pruning::{derive_student, init_from_strongest_filters};
use kd_common::sparsity::prunable_weights;
use serde_json::json;
use std::path::PathBuf;

/// Flags of `derive-student`.
#[derive(clap::Args, Debug)]
pub struct DeriveArgs {
    /// The pruned checkpoint (any checkpoint: its zero weights count as pruned).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Where the student's checkpoint goes (`model.safetensors` + sidecar).
    #[arg(long)]
    pub out: PathBuf,
    /// How the student's weights start.
    #[arg(long, value_enum, default_value_t = StudentInit::Random)]
    pub init: StudentInit,
    /// Seed of the random initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `--init`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StudentInit {
    /// Fresh initialisation (prune-then-distill's students).
    Random,
    /// The pruned network's strongest filters per layer (L1 norm), the rest fresh.
    StrongestFilters,
}

/// Runs `derive-student`.
pub fn run(args: DeriveArgs) -> Result<()> {
    kd_common::logging::init(0);
    // Shapes and a copy of weights: the default device of this build suffices.
    let device = kd_common::device::resolve(&kd_common::device::DeviceSpec::Auto)?.device;
    let (teacher, meta) = checkpoint::load(&args.checkpoint, &device)
        .with_context(|| format!("loading the pruned checkpoint {}", args.checkpoint.display()))?;
    let weights = prunable_weights(&teacher)?;
    let spec = derive_student(&meta.model, &weights).with_context(|| format!("{}", args.checkpoint.display()))?;
    device.seed(args.seed);
    let mut student = spec.init(&device)?;
    if args.init == StudentInit::StrongestFilters {
        student = init_from_strongest_filters(&teacher, &meta.model, student)?;
    }
    let teacher_nonzero: usize = weights.values().map(|(_, v)| v.iter().filter(|&&x| x != 0.0).count()).sum();
    let teacher_weights: usize = weights.values().map(|(_, v)| v.len()).sum();
    let student_weights: usize = prunable_weights(&student)?.values().map(|(_, v)| v.len()).sum();
    let shape = json!({
        "arch": spec.arch.to_string(),
        "plan": spec.plan,
        "channels": spec.channels,
        "teacher_weights": teacher_weights,
        "teacher_nonzero": teacher_nonzero,
        "student_weights": student_weights,
        "student_to_nonzero": student_weights as f64 / teacher_nonzero.max(1) as f64,
        "init": args.init,
        "from": args.checkpoint,
        "from_sha256": meta.weights_sha256,
    });
    kd_common::atomic::ensure_writable_dir(&args.out)
        .with_context(|| format!("output directory {}", args.out.display()))?;
    let student_meta = CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        model: spec,
        input: meta.input.clone(),
        dataset: meta.dataset.clone(),
        classes: meta.classes.clone(),
        training: json!({ "derived_student": shape }),
        metrics: json!({}),
        weights_sha256: String::new(),
        written_by: format!("kd-prune derive-student {}", env!("CARGO_PKG_VERSION")),
        pruning: None,
        imported_from: None,
        other: Default::default(),
    };
    let path = args.out.join("model.safetensors");
    checkpoint::save(&student, &student_meta, &path)?;
    tracing::info!(
        "student: {student_weights} weights for the teacher's {teacher_nonzero} non-zeros; wrote {}",
        path.display()
    );
    let mut summary = shape;
    summary["checkpoint"] = json!(path);
    outln!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

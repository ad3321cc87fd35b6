//! `kd-pack-labels`: FKD region-level soft labels (Shen & Xing, ECCV 2022, §3). For every
//! training image, draw M random-resized crops with random flips, run the teacher (or the
//! average softmax of an ensemble, as MEAL V2 does) on every crop at temperature T, compress each
//! crop's distribution, and write everything into one HDF5 file that students train from without
//! ever running the teacher. Subcommands: `stats`, `verify`, `merge`, `convert`.

use crate::shared::cli::CommonArgs;
use anyhow::Result;
use clap::{Parser, Subcommand};
use kd_datasets::soft_labels::{LabelType, ProbEncoding};
use std::path::PathBuf;

mod convert;
mod inspect;
mod merge;
mod pack;
mod shard;

use convert::{Target, convert};
use inspect::{stats, verify};
use merge::merge;
pub use pack::{CropBlock, encode_block, make_crop_block, pack, pure_inference_rate};

/// Pack FKD region-level soft labels into one HDF5 file.
#[derive(Parser, Debug)]
#[command(name = "kd-pack-labels", version, long_about = None, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub pack: PackArgs,
}

/// Subcommands besides packing.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Entropy, mass outside top-K, teacher-vs-label agreement per class, bytes per crop (JSON).
    Stats {
        /// The label file.
        file: PathBuf,
        /// Dataset directory (default: the standard location of the file's dataset).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Read every chunk (fletcher32 checksums) and check the schema; exit 2 on any problem.
    Verify {
        /// The label file.
        file: PathBuf,
    },
    /// Join shard files (`--shard i/n`) into one file.
    Merge {
        /// The merged file.
        #[arg(long)]
        out: PathBuf,
        /// Shard files, in any order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Re-compress a label file as another type without the teacher (same crops): `full` gives
    /// every type, top-K files give `hard`, `smoothing` and top-K' with K' <= K.
    Convert {
        /// The label file to read.
        input: PathBuf,
        /// The converted file.
        #[arg(long)]
        out: PathBuf,
        /// Compression of the new file.
        #[arg(long, value_enum)]
        label_type: LabelType,
        /// K of the top-K types (default: the input's K, else FKD's 5 capped at classes - 1).
        #[arg(long)]
        top_k: Option<usize>,
        /// Probability encoding (default: the input's).
        #[arg(long, value_enum)]
        prob_encoding: Option<ProbEncoding>,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
}

/// Packing options.
#[derive(clap::Args, Debug)]
pub struct PackArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Teacher checkpoint; repeat for an ensemble (average of softmax probabilities).
    #[arg(long = "teacher", required = true)]
    pub teachers: Vec<PathBuf>,
    /// Output file.
    #[arg(long, default_value = "labels.h5")]
    pub out: PathBuf,
    /// Crops per image (FKD: 500).
    #[arg(long, default_value_t = 500)]
    pub crops: usize,
    /// Compression: hard, smoothing, marginal-smoothing, marginal-renorm, full.
    #[arg(long, value_enum, default_value_t = LabelType::MarginalSmoothing)]
    pub label_type: LabelType,
    /// K of the top-K types (default FKD's 5, at most classes - 1 for fewer than 6 classes).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Probability encoding: u8 (round(255 p)) or f16.
    #[arg(long, value_enum, default_value_t = ProbEncoding::U8)]
    pub prob_encoding: ProbEncoding,
    /// Crop geometry: stored (9 bytes per crop) or seed (regenerated from a per-image seed).
    #[arg(long, value_enum, default_value_t = GeometryArg::Stored)]
    pub geometry: GeometryArg,
    /// Teacher softmax temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Crop area range (fractions of the image).
    #[arg(long, num_args = 2, default_values_t = [0.08f32, 1.0])]
    pub scale: Vec<f32>,
    /// Crop aspect-ratio range (width / height).
    #[arg(long, num_args = 2, default_values_t = [0.75f32, 4.0 / 3.0])]
    pub ratio: Vec<f32>,
    /// Probability of a horizontal flip (default: FKD's 0.5 if the first teacher was trained with
    /// flips or its augmentation is unknown, 0 if it never saw a mirrored image).
    #[arg(long)]
    pub flip_prob: Option<f32>,
    /// Crops per teacher forward pass.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Pack only slice i of n of the images (0-based): `2/8`; `auto` in a Slurm job array
    /// (`SLURM_ARRAY_TASK_ID`, `_MIN`, `_COUNT`); `auto/N` in a Kubernetes Indexed Job
    /// (`JOB_COMPLETION_INDEX`) or a Slurm array. `{shard}` in `--out` becomes the index.
    #[arg(long)]
    pub shard: Option<String>,
    /// Replace an existing complete output file.
    #[arg(long)]
    pub force: bool,
}

/// `--geometry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GeometryArg {
    /// Boxes and flips stored per crop.
    Stored,
    /// Regenerated from a per-image seed.
    Seed,
}

/// Runs `kd-pack-labels`.
pub fn run(args: Args) -> Result<()> {
    match args.command {
        Some(Command::Stats { file, data_dir }) => stats(&file, data_dir.as_deref()),
        Some(Command::Verify { file }) => verify(&file),
        Some(Command::Merge { out, shards, force }) => merge(&out, &shards, force),
        Some(Command::Convert { input, out, label_type, top_k, prob_encoding, force }) => {
            let target = Target { label_type, top_k, encoding: prob_encoding };
            let summary = convert(&input, &out, &target, force)?;
            outln!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        None => {
            let summary = pack(args.pack)?;
            outln!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
    }
}

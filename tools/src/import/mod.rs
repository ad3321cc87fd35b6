//! `kd-import`: bring your own teacher. Reads a PyTorch state dict (`.pt`/`.pth`, pickle read
//! by burn-store's PyTorch reader, no Python needed) or a `.safetensors` file for one of the
//! zoo's architectures, renames the keys of the common layouts, checks every tensor's name and
//! shape against the architecture, and writes a kdkit checkpoint (`model.safetensors` +
//! `model.json`) that every tool takes as a teacher.
//!
//! Layouts: torchvision-style names (kdkit's own, and timm's ResNets'); timm's EfficientNet;
//! MoCo v2 / SEED training checkpoints (`encoder_q.*`, the projection head kept, dropped or
//! replaced); the CIFAR ResNets of the KD literature (classifier `linear.*`, projection
//! shortcuts `shortcut.0/1`, option-A shortcuts without parameters); DataParallel's `module.`
//! prefix; checkpoints that wrap the state dict in a dictionary (`state_dict`, `model`, `net`,
//! `model_state_dict`). BatchNorm's `num_batches_tracked` counters, MoCo's key encoder and
//! queue are left out (kdkit does not use them). `--list` prints every architecture and layout.

mod bounds;
mod layout;
#[cfg(test)]
mod parity;

use crate::shared::cli::CommonArgs;
use anyhow::{Context, Result, ensure};
use burn::store::{
    KeyRemapper, ModuleAdapter, ModuleContext, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore,
};
use burn::tensor::Device;
use clap::Parser;
use kd_common::checkpoint::{self, CheckpointMeta, ImportRecord, InputSpec};
use kd_common::device::{self, DeviceSpec};
use kd_common::models::{Arch, HeadSpec, ModelSpec, Network, Shortcut, Stem};
use kd_common::tensor_fit::TensorFit;
use kd_datasets::DatasetKind;
pub use layout::{Layout, Reading, Renames};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Import a PyTorch or safetensors state dict as a kdkit checkpoint.
#[derive(Parser, Debug)]
#[command(name = "kd-import", version, long_about = None)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The foreign weights: `.pt`/`.pth` (PyTorch pickle) or `.safetensors`.
    #[arg(required_unless_present = "list")]
    pub source: Option<PathBuf>,
    /// Output directory: model.safetensors + model.json.
    #[arg(long, required_unless_present = "list")]
    pub out: Option<PathBuf>,
    /// Architecture of the weights (`--list` prints them all): resnet18/34/50/101/152,
    /// resnet50d, mobilenet-v2, mobilenet-v3-large/-small, efficientnet-b0 (torchvision's and
    /// timm's model names are accepted too); the CIFAR resnet20/32/44/56/110, vgg11/13/16/19,
    /// mobilenetv2, small-cnn.
    #[arg(long, value_parser = parse_arch, required_unless_present = "list")]
    pub arch: Option<Arch>,
    /// Print every architecture and key layout kd-import knows, and exit.
    #[arg(long)]
    pub list: bool,
    /// Channel width multiplier the network was built with.
    #[arg(long, default_value_t = 1.0)]
    pub width: f32,
    /// CIFAR ResNet shortcut where the shape changes: pad (option A, no parameters) or conv.
    #[arg(long, value_enum, default_value_t = ShortcutArg::Pad)]
    pub shortcut: ShortcutArg,
    /// Stem of a torchvision ResNet: imagenet (7x7/2 + max pool) or cifar (3x3/1, no pool).
    #[arg(long, value_enum, default_value_t = StemArg::Imagenet)]
    pub stem: StemArg,
    /// What follows the pooled embedding in the file: a classifier of `--classes`, MoCo v2's
    /// projection MLP (`--projection-dim` outputs), or none (the file's head is left out).
    #[arg(long, value_enum, default_value_t = HeadArg::Classifier)]
    pub head: HeadArg,
    /// Output width of a projection head (MoCo v2, SEED: 128).
    #[arg(long, default_value_t = 128)]
    pub projection_dim: usize,
    /// Number of classes (default: the dataset's; 1000 for the ImageNet families without
    /// `--dataset`). A file whose classifier has another count is refused unless `--new-head`.
    #[arg(long)]
    pub classes: Option<usize>,
    /// Leave the file's classifier out and start a fresh one of `--classes` (fine-tuning a
    /// pretrained backbone, as MEAL V2 initialises its students).
    #[arg(long)]
    pub new_head: bool,
    /// Input normalisation mean per channel (default: the dataset's), e.g. `0.5,0.5,0.5`.
    #[arg(long, value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Input normalisation standard deviation per channel (default: the dataset's).
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// Evaluation centre crop of images of any size: resized shorter side = input side /
    /// fraction (default for folders 0.875: `Resize(256)` + `CenterCrop(224)`; timm's
    /// `crop_pct`).
    #[arg(long)]
    pub crop_fraction: Option<f32>,
    /// Image side the network reads (default: the dataset's; required for folders).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Input channels for folders (1 or 3).
    #[arg(long)]
    pub in_channels: Option<usize>,
    /// Key layout of the file.
    #[arg(long, value_enum, default_value_t = Layout::Auto)]
    pub layout: Layout,
    /// Extra key renames `REGEX=REPLACEMENT` (applied after the layout's), e.g.
    /// `^encoder_q\.=`.
    #[arg(long = "remap")]
    pub remaps: Vec<String>,
    /// Replace an existing checkpoint in `--out`.
    #[arg(long)]
    pub force: bool,
}

/// `--stem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StemArg {
    /// 7x7/2 convolution and 3x3/2 max pool.
    Imagenet,
    /// 3x3/1 convolution, no pool.
    Cifar,
}

/// `--head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HeadArg {
    /// A linear classifier.
    Classifier,
    /// MoCo v2's MLP: embedding -> embedding -> ReLU -> projection-dim.
    Projection,
    /// No head: the checkpoint outputs the pooled embedding.
    None,
}

/// `--shortcut`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ShortcutArg {
    /// Option A: subsample and zero-pad channels.
    Pad,
    /// Option B: 1x1 convolution + batch norm.
    Conv,
}

fn parse_arch(text: &str) -> Result<Arch, String> {
    text.parse().map_err(|e: kd_common::Error| e.to_string())
}

/// The file formats `kd-import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Pytorch,
    Safetensors,
}

fn sniff_format(path: &Path) -> Result<Format> {
    let mut head = [0u8; 9];
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("{}: not found or unreadable", path.display()))?;
    let n = file.take(9).read(&mut head).with_context(|| format!("reading {}", path.display()))?;
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    detect_format(&head[..n], size)
        .ok_or_else(|| anyhow::anyhow!("{}: neither a PyTorch file (.pt/.pth) nor a safetensors file", path.display()))
}

/// The format of a file from its first bytes and its size: safetensors (an 8-byte little-endian
/// header length that fits the file, then the JSON header's `{`) is checked first, since its
/// length bytes may spell anything, including a pickle's 0x80 or a zip's `PK`; then PyTorch >= 1.6's
/// zip archive (`PK`) or an older bare pickle (0x80).
fn detect_format(head: &[u8], size: u64) -> Option<Format> {
    if head.len() == 9 && head[8] == b'{' {
        let header = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if header > 0 && header.checked_add(8).is_some_and(|end| end <= size) {
            return Some(Format::Safetensors);
        }
    }
    if head.len() >= 2 && (&head[..2] == b"PK" || head[0] == 0x80) {
        return Some(Format::Pytorch);
    }
    None
}

/// The imported network, its spec and the renames that fitted the file.
pub struct Imported {
    /// The network with the file's weights.
    pub network: Network,
    /// Its architecture.
    pub spec: ModelSpec,
    /// Renames applied.
    pub remapping: Vec<(String, String)>,
    /// The file's format.
    format: Format,
}

/// Loads `path` into a fresh `spec` network on `device`, trying the `readings` in turn; with
/// `discard_head` the file's head is left out and the network's (if any) stays fresh.
pub fn import(
    path: &Path,
    spec: &ModelSpec,
    readings: &[Reading],
    discard_head: bool,
    device: &Device,
) -> Result<Imported> {
    let format = sniff_format(path)?;
    let network = spec.init(device)?;
    if format == Format::Pytorch {
        bounds::check_pytorch(path, bounds::budget(kd_common::models::trainable_params(&network)))?;
    }
    // A PyTorch state dict is at the top level, or under a wrapper key of a training
    // checkpoint (the reader flattens nested dictionaries into `key.name` paths), or flat with
    // every key prefixed (`model.conv1.weight`). Each (wrapper, reading) pair is tried in
    // turn; the first that fits the architecture is taken, else the problems of the first
    // reading the file could give (or, if none could, the first error) are reported.
    let mut attempts: Vec<(Option<&str>, Reading)> = Vec::new();
    let wrapper = if format == Format::Pytorch { wrapper_key(path)? } else { None };
    for reading in readings {
        if let Some(w) = wrapper {
            attempts.push((Some(w), reading.clone()));
        }
        attempts.push((None, reading.clone()));
        if let Some(w) = wrapper {
            let strip = (format!("^{}\\.", regex_escape(w)), String::new());
            let renames = std::iter::once(strip).chain(reading.renames.iter().cloned()).collect();
            attempts.push((None, Reading { renames, ..reading.clone() }));
        }
    }
    let head = spec.arch.head_name();
    let (mut first_read, mut first_error): (Option<Vec<String>>, Option<Vec<String>>) = (None, None);
    for (top_level, mut reading) in attempts {
        let spec = reading.spec(spec);
        let mut candidate = spec.init(device)?;
        if discard_head {
            // The file's head goes out of the way; the network's keeps its initialisation.
            reading.renames.push((format!("^{}\\.", regex_escape(head)), "discarded_head.".into()));
        }
        let result = read_tensors(path, format, top_level, &reading.renames).map(|tensors| {
            // Every tensor the file has, whatever the architecture's; the adapter brings
            // PyTorch's layouts to Burn's.
            candidate.apply(tensors, None, Some(Box::new(TorchLayout)), true)
        });
        // A reading the file cannot give (a wrapper key that is not there) is a problem too.
        let problems = match &result {
            Ok(result) => problems(result, head, discard_head),
            Err(e) => vec![e.to_string()],
        };
        if problems.is_empty() {
            // f16, bf16 and f64 state dicts are stored as f32: every tool computes in f32.
            let network = kd_common::models::float32::to_f32(candidate);
            return Ok(Imported { network, spec, remapping: reading.renames, format });
        }
        if result.is_ok() {
            first_read.get_or_insert(problems)
        } else {
            first_error.get_or_insert(problems)
        };
    }
    let problems = first_read.or(first_error).expect("at least one reading");
    anyhow::bail!(
        "{} does not fit the architecture {}: {} (check --arch, --width, --stem, --head, --classes, --layout)",
        path.display(),
        spec.arch,
        problems.join("; ")
    )
}

/// The file's tensors (read lazily: the data is loaded when applied) under their renamed names.
fn read_tensors(
    path: &Path,
    format: Format,
    top_level: Option<&str>,
    renames: &Renames,
) -> Result<Vec<burn::store::burn_pack::Tensor>> {
    let remapper = KeyRemapper::from_patterns(renames.clone())
        .map_err(|e| anyhow::anyhow!("a --remap pattern is not a valid regex: {e}"))?;
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: {e}", path.display());
    Ok(match format {
        Format::Pytorch => {
            let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
            if let Some(key) = top_level {
                store = store.with_top_level_key(key);
            }
            let mut store = store.remap(remapper);
            store.get_all_tensors().map_err(|e| fail(&e))?.values().cloned().collect()
        }
        Format::Safetensors => {
            let mut store = SafetensorsStore::from_file(path).remap(remapper);
            store.get_all_tensors().map_err(|e| fail(&e))?.values().cloned().collect()
        }
    })
}

/// PyTorch's tensor layouts as Burn reads them ([`PyTorchToBurnAdapter`]: linear weights
/// transposed, batch-norm names), and a 1x1 convolution's weight `[out, in, 1, 1]` read as a
/// linear layer's `[out, in]`: the same map on a pooled vector (timm's MobileNetV3
/// `conv_head` is torchvision's `classifier.0`).
#[derive(Clone, Debug, Default)]
struct TorchLayout;

impl ModuleAdapter for TorchLayout {
    fn adapt(
        &self,
        mut tensor: burn::store::burn_pack::Tensor,
        ctx: ModuleContext<'_>,
    ) -> burn::store::burn_pack::Tensor {
        let shape = tensor.shape.clone();
        let linear_weight = ctx.module_type() == Some("Struct:Linear") && tensor.name.ends_with(".weight");
        if linear_weight && shape.len() == 4 && shape[2] == 1 && shape[3] == 1 {
            tensor.shape = [shape[0], shape[1]].into();
        }
        PyTorchToBurnAdapter.adapt(tensor, ctx)
    }

    fn get_alternative_param_name(&self, param_name: &str, container_type: &str) -> Option<String> {
        PyTorchToBurnAdapter.get_alternative_param_name(param_name, container_type)
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// The wrapper key of a training checkpoint (`state_dict`, `model_state_dict`, `model`, `net`).
fn wrapper_key(path: &Path) -> Result<Option<&'static str>> {
    let mut probe = PytorchStore::from_file(path).map_indices_contiguous(false);
    let keys = burn::store::ModuleStore::keys(&mut probe)
        .map_err(|e| anyhow::anyhow!("{}: not a readable PyTorch file: {e}", path.display()))?;
    Ok(["state_dict", "model_state_dict", "model", "net"]
        .into_iter()
        .find(|w| keys.iter().any(|k| k.starts_with(&format!("{w}.")))))
}

/// What keeps a reading from fitting (see [`TensorFit`]). The key encoder and queue of a MoCo
/// checkpoint, batch counters and a discarded head are not problems; a classifier of another
/// class count, when it is the only problem, is said so with the way out.
fn problems(result: &burn::store::ApplyResult, head: &str, discard_head: bool) -> Vec<String> {
    let ignored: Vec<regex::Regex> = layout::IGNORED
        .iter()
        .chain(["^discarded_head\\."].iter())
        .map(|p| regex::Regex::new(p).expect("valid"))
        .collect();
    let mut fit = TensorFit::of(result, |name| ignored.iter().any(|r| r.is_match(name)));
    let head_prefix = format!("{head}.");
    if discard_head {
        fit.missing.retain(|name| !name.starts_with(&head_prefix));
    }
    let mut problems = fit.messages();
    let only_head = fit.misshaped.iter().all(|(name, _, _)| name.starts_with(&head_prefix));
    let head_classes = fit.misshaped.last().and_then(|(_, file, network)| file.first().zip(network.first()));
    if let Some((classes, wanted)) = head_classes.filter(|(a, b)| only_head && a != b && problems.len() == 1) {
        problems[0] = format!(
            "the file's classifier has {classes} outputs, not {wanted}: pass --classes {classes}, or --new-head \
             to start a fresh classifier ({})",
            problems[0]
        );
    }
    problems
}

/// `text` with the regex metacharacters escaped.
fn regex_escape(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '_' { vec![c] } else { vec!['\\', c] }).collect()
}

fn parse_remap(text: &str) -> Result<(String, String)> {
    let (from, to) = text.split_once('=').with_context(|| format!("--remap `{text}` is not REGEX=REPLACEMENT"))?;
    Ok((from.to_string(), to.to_string()))
}

/// `--list`: every architecture and key layout.
fn print_list() -> Result<()> {
    outln!("Architectures (--arch):");
    for info in Arch::INFO {
        let aliases =
            if info.aliases.is_empty() { String::new() } else { format!(" (also: {})", info.aliases.join(", ")) };
        outln!("  {:<58} {}{aliases}", info.name, info.description);
    }
    outln!("Key layouts (--layout; auto tries each that applies to the architecture):");
    for layout in <Layout as clap::ValueEnum>::value_variants() {
        let help = clap::ValueEnum::to_possible_value(layout).and_then(|v| v.get_help().map(|h| h.to_string()));
        outln!("  {:<12} {}", format!("{layout:?}").to_lowercase(), help.unwrap_or_default());
    }
    Ok(())
}

/// Runs `kd-import`.
pub fn run(args: Args) -> Result<()> {
    args.common.init_output();
    if args.list {
        return print_list();
    }
    let (Some(source), Some(out), Some(arch)) = (args.source.clone(), args.out.clone(), args.arch) else {
        anyhow::bail!("SOURCE, --out and --arch are required (or --list)");
    };
    // Arguments and files first, before any device is touched.
    ensure!(source.exists(), "{}: not found", source.display());
    ensure!(
        args.common.seed.is_none() && args.common.workers.is_none(),
        "kd-import draws no random numbers and loads no data: --seed and --workers do not apply"
    );
    ensure!(
        !(args.new_head && args.head != HeadArg::Classifier),
        "--new-head starts a fresh classifier: it goes with --head classifier"
    );
    let extra = args.remaps.iter().map(|r| parse_remap(r)).collect::<Result<Vec<_>>>()?;
    // The ImageNet families read 3 x 224 x 224 ImageNet-normalised images and have 1000
    // classes unless a dataset says otherwise.
    let imagenet = arch.is_imagenet_family();
    let kind = args.common.dataset.unwrap_or(if imagenet { DatasetKind::Folder } else { DatasetKind::FashionMnist });
    let known = kind.known_shape();
    let folder_default = |value: usize| (imagenet && kind == DatasetKind::Folder).then_some(value);
    let channels = args
        .in_channels
        .or(known.map(|k| k.0))
        .or(folder_default(3))
        .context("--in-channels is required for folders")?;
    let side = args
        .image_size
        .or(known.map(|k| k.1))
        .or(folder_default(224))
        .context("--image-size is required for folders")?;
    let classes =
        args.classes.or(known.map(|k| k.2)).or(folder_default(1000)).context("--classes is required for folders")?;
    let (mean, std) = kind.normalisation();
    let pick =
        |v: Vec<f32>| if v.len() == channels { v } else { vec![v.iter().sum::<f32>() / v.len() as f32; channels] };
    let input = InputSpec {
        channels,
        height: side,
        width: side,
        mean: args.mean.clone().unwrap_or_else(|| pick(mean)),
        std: args.std.clone().unwrap_or_else(|| pick(std)),
        crop_fraction: args.crop_fraction.or(kind.eval_crop_fraction()),
    };
    ensure!(input.mean.len() == channels && input.std.len() == channels, "--mean and --std need {channels} value(s)");
    ensure!(input.std.iter().all(|s| s.is_finite() && *s > 0.0), "--std values must be positive");
    input.check().map_err(anyhow::Error::msg)?;
    let mut spec = ModelSpec::new(arch, channels, classes);
    spec.width = args.width;
    spec.shortcut = if args.shortcut == ShortcutArg::Conv { Shortcut::Conv } else { Shortcut::Pad };
    spec.stem = if args.stem == StemArg::Cifar { Stem::Cifar } else { Stem::Imagenet };
    spec.head = if args.head == HeadArg::None { HeadSpec::None } else { HeadSpec::Classifier };
    spec.validate()?;
    let weights = out.join("model.safetensors");
    let source_sha256 = checkpoint::sha256_file(&source)?;
    let readings: Vec<Reading> = args
        .layout
        .readings(&spec)
        .into_iter()
        .map(|mut reading| {
            reading.renames.extend(extra.iter().cloned());
            reading
        })
        .collect();
    let config = json!({
        "source": source, "arch": arch.to_string(), "width": args.width,
        "shortcut": format!("{:?}", args.shortcut).to_lowercase(), "stem": format!("{:?}", args.stem).to_lowercase(),
        "head": format!("{:?}", args.head).to_lowercase(), "projection_dim": args.projection_dim,
        "new_head": args.new_head, "classes": classes, "dataset": kind.to_string(),
        "layout": format!("{:?}", args.layout).to_lowercase(), "remap": args.remaps, "input": input,
    });
    // A finished import (weights and sidecar) of the same file with the same settings is a
    // no-op; anything else there is refused. Weights without a sidecar are an import killed
    // before its end: it is redone.
    if weights.exists() && checkpoint::sidecar_path(&weights).exists() && !args.force {
        let same = checkpoint::read_meta(&weights).is_ok_and(|existing| {
            existing.training.get("import") == Some(&config)
                && existing.imported_from.as_ref().is_some_and(|from| from.source_sha256 == source_sha256)
        });
        ensure!(
            same,
            "{} already exists (another checkpoint or other settings); use --force to replace it",
            weights.display()
        );
        kd_common::atomic::write_json(&out.join("config.json"), &config)?;
        tracing::info!("{} already holds this import; nothing to do", weights.display());
        outln!("{}", serde_json::to_string_pretty(&json!({"checkpoint": weights, "already_complete": true}))?);
        return Ok(());
    }
    kd_common::atomic::ensure_writable_dir(&out).with_context(|| format!("output directory {}", out.display()))?;
    kd_common::atomic::write_json(&out.join("config.json"), &config)?;
    // The CPU by default when it is compiled in: weights are only checked and converted, and
    // the CPU reads every dtype a state dict may hold (wgpu has no f64).
    let default = if cfg!(feature = "flex-unfused") { DeviceSpec::Cpu } else { DeviceSpec::Auto };
    let device = device::resolve(args.common.device.as_ref().unwrap_or(&default))?;
    tracing::info!("device: {}", device.description);
    if args.head == HeadArg::Projection {
        spec = crate::shared::encoder::with_projection_head(spec, &input, args.projection_dim, &device.device)?;
    }
    let discard_head = args.new_head || args.head == HeadArg::None;
    let imported = import(&source, &spec, &readings, discard_head, &device.device)?;
    let class_names = kind
        .class_names()
        .filter(|n| n.len() == classes)
        .unwrap_or_else(|| (0..classes).map(|c| c.to_string()).collect());
    let format = if imported.format == Format::Pytorch { "pytorch" } else { "safetensors" };
    let training =
        json!({"dataset": kind.to_string(), "data_dir": args.common.data_dir, "imported": true, "import": config});
    let meta = CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        model: imported.spec.clone(),
        input,
        dataset: json!({"name": kind.to_string()}),
        classes: class_names,
        training,
        metrics: json!({}),
        weights_sha256: String::new(),
        written_by: format!("kd-import {}", env!("CARGO_PKG_VERSION")),
        pruning: None,
        imported_from: Some(ImportRecord {
            source: source.clone(),
            source_sha256,
            format: format.into(),
            key_remapping: imported.remapping.clone(),
        }),
        other: Default::default(),
    };
    checkpoint::save(&imported.network, &meta, &weights)?;
    let summary = json!({
        "checkpoint": weights,
        "arch": arch.to_string(),
        "parameters": kd_common::models::trainable_params(&imported.network),
        "source": source,
        "key_remapping": imported.remapping,
        "new_head": args.new_head,
    });
    tracing::info!("imported {} as {}", source.display(), weights.display());
    outln!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight 0xff bytes claim a header of 2^64 - 1 bytes: no overflow, not a safetensors file.
    /// A safetensors file whose header length is 128 (0x80 first) or spells `PK` is one all the
    /// same, and zip archives and pickles are still PyTorch files.
    #[test]
    fn formats_are_told_apart_without_overflow() {
        assert_eq!(detect_format(&[0xff; 9], 1 << 20), None);
        let mut safetensors = 128u64.to_le_bytes().to_vec();
        safetensors.push(b'{');
        assert_eq!(detect_format(&safetensors, 200), Some(Format::Safetensors));
        assert_eq!(detect_format(&safetensors, 100), Some(Format::Pytorch), "longer than the file: 0x80, a pickle");
        let mut pk = u64::from_le_bytes(*b"PK\x03\x04\0\0\0\0").to_le_bytes().to_vec();
        pk.push(b'{');
        assert_eq!(detect_format(&pk, 1 << 40), Some(Format::Safetensors));
        assert_eq!(detect_format(b"PK\x03\x04\x14\0\0\0\x08", 1 << 20), Some(Format::Pytorch));
        assert_eq!(detect_format(&[0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0], 1 << 20), Some(Format::Pytorch));
        assert_eq!(detect_format(b"PK", 2), Some(Format::Pytorch));
        assert_eq!(detect_format(b"hello wor", 9), None);
    }

    /// A safetensors state dict of f16 tensors imports as f32 (before, it imported and every
    /// tool then panicked on the dtype): the outputs match the f32 network's to f16 precision.
    #[test]
    fn f16_weights_import_as_f32() {
        use burn::module::Module;
        use burn::tensor::{Device, Distribution, Tensor, Tolerance};
        use kd_common::checkpoint::{CheckpointMeta, InputSpec};
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        let spec = ModelSpec::new(Arch::ResNet(8), 1, 3);
        let network = spec.init(&device).unwrap();
        let f32_path = dir.path().join("f32.safetensors");
        let meta = CheckpointMeta {
            format_version: checkpoint::FORMAT_VERSION,
            model: spec.clone(),
            input: InputSpec { channels: 1, height: 8, width: 8, mean: vec![0.0], std: vec![1.0], crop_fraction: None },
            dataset: json!({}),
            classes: vec!["a".into(), "b".into(), "c".into()],
            training: json!({}),
            metrics: json!({}),
            weights_sha256: String::new(),
            written_by: "test".into(),
            pruning: None,
            imported_from: None,
            other: Default::default(),
        };
        checkpoint::save(&network, &meta, &f32_path).unwrap();
        // The same tensors as f16, written with the safetensors crate.
        let bytes = std::fs::read(&f32_path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let halves: Vec<(String, Vec<usize>, Vec<u8>)> = file
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let data = view
                    .data()
                    .chunks_exact(4)
                    .flat_map(|b| half::f16::from_f32(f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes())
                    .collect();
                (name, view.shape().to_vec(), data)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = halves
            .iter()
            .map(|(n, shape, data)| {
                (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F16, shape.clone(), data).unwrap())
            })
            .collect();
        let f16_path = dir.path().join("f16.safetensors");
        safetensors::serialize_to_file(views, None, &f16_path).unwrap();

        let imported = import(&f16_path, &spec, &[Reading::default()], false, &device).unwrap();
        let x = Tensor::<4>::random([2, 1, 8, 8], Distribution::Default, &device);
        let got = imported.network.valid().forward(x.clone());
        assert_eq!(got.dtype(), burn::tensor::DType::F32);
        let want = network.valid().forward(x);
        got.into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(2e-2));
    }
}

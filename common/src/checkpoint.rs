//! Checkpoints: weights as safetensors with PyTorch-style names (`conv1.weight`,
//! `layer1.0.bn1.running_mean`, `fc.weight` as `[out, in]`), plus a JSON sidecar that makes the
//! file self-describing (architecture, input, normalisation, dataset, classes, training config,
//! final metrics, a hash of the weights). Both files are written atomically; the sidecar is
//! written last and names the weights' SHA-256, so a torn pair is detected on load.
//!
//! `model.safetensors` loads in PyTorch with `safetensors.torch.load_file` and, for the zoo's
//! architectures, `load_state_dict(strict=True)` into the unpruned PyTorch model: pruning masks
//! live in a file of their own (`model.masks.safetensors`), never among the weights.
//!
//! The sidecar evolves: readers accept every older `format_version` (migrating on read) and
//! keep fields they do not know, and refuse only a newer version, saying to upgrade.

use crate::atomic;
use crate::error::{Error, Result};
use crate::models::{ModelSpec, Network};
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::Device;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Version of the sidecar schema. 1: kdkit 0.1. 2: channel plans and heads in `model`,
/// `pruning`, `imported_from`; unknown fields kept.
pub const FORMAT_VERSION: u32 = 2;

/// Shape and normalisation of the images a model expects.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Channels, height, width.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Per-channel mean subtracted after scaling pixels to [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by.
    pub std: Vec<f32>,
    /// Evaluation of images of any size: the shorter side resized to `min(height, width) /
    /// crop_fraction`, then the centre window (ImageNet's `Resize(256)` + `CenterCrop(224)` is
    /// 0.875). `None`: images are resized to the input size (fixed-size datasets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_fraction: Option<f32>,
}

/// The largest image side a checkpoint or flag may ask for: eight times ImageNet's 512-pixel
/// fine-tuning resolutions, and one image of it at 3 channels is 800 MB of f32.
pub const MAX_IMAGE_SIDE: usize = 8192;
/// The most channels an input may have.
pub const MAX_CHANNELS: usize = 4;

impl InputSpec {
    /// Checks sizes that would make a tool allocate without bound, and the normalisation.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !(1..=MAX_CHANNELS).contains(&self.channels) {
            return Err(format!("input has {} channels; 1 to {MAX_CHANNELS} are supported", self.channels));
        }
        if !(1..=MAX_IMAGE_SIDE).contains(&self.height) || !(1..=MAX_IMAGE_SIDE).contains(&self.width) {
            return Err(format!(
                "input of {}x{} pixels; each side must be 1 to {MAX_IMAGE_SIDE}",
                self.height, self.width
            ));
        }
        if self.mean.len() != self.channels || self.std.len() != self.channels {
            return Err(format!("input normalisation needs {} mean and std value(s)", self.channels));
        }
        if !self.std.iter().all(|s| s.is_finite() && *s > 0.0) || !self.mean.iter().all(|m| m.is_finite()) {
            return Err("input normalisation: means must be finite and standard deviations positive".into());
        }
        if let Some(fraction) = self.crop_fraction
            && !(fraction > 0.05 && fraction <= 1.0)
        {
            return Err(format!("input crop fraction {fraction} must be in (0.05, 1]"));
        }
        Ok(())
    }
}

/// Sparsity of one pruned layer.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerSparsity {
    /// Tensor name (`layer1.0.conv1.weight`).
    pub name: String,
    /// Weights in the layer.
    pub weights: usize,
    /// Weights that are not zero.
    pub nonzero: usize,
}

/// What pruning left of a checkpoint: the masks file and the sparsity it gives.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PruningRecord {
    /// The masks file, relative to the weights (`model.masks.safetensors`).
    pub masks_file: String,
    /// SHA-256 of the masks file.
    pub masks_sha256: String,
    /// Fraction of prunable weights that are zero, over all pruned layers.
    pub global_sparsity: f64,
    /// Per pruned layer.
    pub layers: Vec<LayerSparsity>,
    /// Pruning rounds that produced the masks.
    #[serde(default)]
    pub rounds: usize,
}

/// Where an imported checkpoint came from (`kd-import`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImportRecord {
    /// The foreign file.
    pub source: PathBuf,
    /// Its SHA-256.
    pub source_sha256: String,
    /// Its format (`pytorch` or `safetensors`).
    pub format: String,
    /// Key renames applied, as `(from regex, to)`.
    pub key_remapping: Vec<(String, String)>,
}

/// The JSON sidecar next to `*.safetensors`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CheckpointMeta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The network.
    pub model: ModelSpec,
    /// What the network reads.
    pub input: InputSpec,
    /// Dataset identity (name and split sizes), as written by the trainer.
    pub dataset: serde_json::Value,
    /// Class names, index = class id.
    pub classes: Vec<String>,
    /// The resolved training configuration that produced the weights.
    pub training: serde_json::Value,
    /// Final metrics (for example validation and test top-1).
    pub metrics: serde_json::Value,
    /// SHA-256 of the safetensors file, hex.
    pub weights_sha256: String,
    /// Tool and version that wrote the checkpoint.
    pub written_by: String,
    /// Pruning masks and sparsity (pruned checkpoints only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruning: Option<PruningRecord>,
    /// The foreign file an imported checkpoint came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<ImportRecord>,
    /// Fields this version does not know (written by a newer minor version or another tool);
    /// kept and written back unchanged.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Parses a sidecar of any supported version: versions up to [`FORMAT_VERSION`] are migrated,
/// newer ones refused with a message that says to upgrade.
pub fn parse_meta(text: &str, sidecar: &Path) -> Result<CheckpointMeta> {
    let parse = |message: String| Error::Parse { path: sidecar.into(), message };
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| parse(e.to_string()))?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| parse("no `format_version`: not a kdkit checkpoint sidecar".into()))?;
    if version > FORMAT_VERSION as u64 {
        return Err(Error::CheckpointMismatch {
            path: sidecar.into(),
            message: format!(
                "written by a newer kdkit (format version {version}; this kdkit {} reads up to {FORMAT_VERSION}); upgrade kdkit to read it",
                env!("CARGO_PKG_VERSION")
            ),
        });
    }
    if version == 0 {
        return Err(parse("format version 0 does not exist".into()));
    }
    // 1 -> 2: no field was renamed; the new fields default to "absent".
    if version < 2
        && let Some(object) = value.as_object_mut()
    {
        object.insert("format_version".into(), serde_json::Value::from(2));
    }
    serde_json::from_value(value).map_err(|e| parse(e.to_string()))
}

impl CheckpointMeta {
    /// The dataset the model was trained on, as recorded in its training configuration.
    pub fn trained_on(&self) -> Option<kd_datasets::DatasetKind> {
        self.training.get("dataset").and_then(|d| d.as_str()).and_then(|d| d.parse().ok())
    }

    /// The data directory of that training run, if one was given.
    pub fn trained_data_dir(&self) -> Option<PathBuf> {
        self.training.get("data_dir").and_then(|d| d.as_str()).map(PathBuf::from)
    }
}

/// The sidecar path of a weights file: `model.safetensors` -> `model.json`.
pub fn sidecar_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `network` to `weights` (safetensors) and `meta` to its sidecar, both atomically.
/// `meta.weights_sha256` and `meta.format_version` are filled in here.
pub fn save(network: &Network, meta: &CheckpointMeta, weights: &Path) -> Result<()> {
    atomic::write_with(weights, |tmp| {
        let mut store = SafetensorsStore::from_file(tmp)
            .with_to_adapter(BurnToPyTorchAdapter)
            .skip_enum_variants(true)
            .metadata("format", "pt")
            .metadata("kdkit.arch", meta.model.arch.to_string());
        network
            .save_into(&mut store)
            .map_err(|e| Error::Checkpoint { path: weights.into(), message: e.to_string() })?;
        sort_safetensors_header(tmp)
    })?;
    let mut meta = meta.clone();
    meta.format_version = FORMAT_VERSION;
    meta.weights_sha256 = sha256_file(weights)?;
    atomic::write_json(&sidecar_path(weights), &meta)
}

/// Rewrites a safetensors file's JSON header with its keys sorted (the writer emits them in
/// hash-map order), so that the same tensors always give the same bytes and the same SHA-256.
/// The layout is `u64 LE header length, header, data`; the data's offsets are relative to the
/// end of the header, so only the header changes. Padded with spaces to 8 bytes, as the format
/// allows.
fn sort_safetensors_header(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |message: &str| Error::Checkpoint { path: path.into(), message: message.into() };
    let length =
        bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).ok_or_else(|| bad("no header"))?;
    let end = usize::try_from(length).ok().and_then(|l| l.checked_add(8)).filter(|&e| e <= bytes.len());
    let end = end.ok_or_else(|| bad("header longer than the file"))?;
    // serde_json's map is a BTreeMap: parsing and printing sorts every object's keys.
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..end]).map_err(|e| bad(&e.to_string()))?;
    let mut text = serde_json::to_vec(&header).map_err(|e| bad(&e.to_string()))?;
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - end);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[end..]);
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// The largest sidecar read (they hold the configuration, metrics and per-layer sparsity).
const MAX_SIDECAR_BYTES: u64 = 64 << 20;

/// Reads and checks a sidecar.
pub fn read_meta(weights: &Path) -> Result<CheckpointMeta> {
    let sidecar = sidecar_path(weights);
    if !weights.exists() {
        return Err(Error::io(weights, std::io::Error::new(std::io::ErrorKind::NotFound, "not found")));
    }
    if !sidecar.exists() {
        return Err(Error::io(
            &sidecar,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not found (every kdkit checkpoint has this sidecar; import foreign weights with kd-import)",
            ),
        ));
    }
    // A sidecar is a few kilobytes; do not read a huge (or endless) file to the end.
    let size = std::fs::metadata(&sidecar).map_err(|e| Error::io(&sidecar, e))?.len();
    if size > MAX_SIDECAR_BYTES || !std::fs::metadata(&sidecar).is_ok_and(|m| m.is_file()) {
        return Err(Error::Parse {
            path: sidecar,
            message: format!("not a checkpoint sidecar (a regular file of at most {MAX_SIDECAR_BYTES} bytes)"),
        });
    }
    let text = std::fs::read_to_string(&sidecar).map_err(|e| Error::io(&sidecar, e))?;
    let meta = parse_meta(&text, &sidecar)?;
    meta.model.validate().map_err(|e| Error::Parse { path: sidecar.clone(), message: e.to_string() })?;
    meta.input.check().map_err(|message| Error::Parse { path: sidecar.clone(), message })?;
    Ok(meta)
}

/// Loads a checkpoint: sidecar, hash check, network rebuilt from its spec, weights applied with
/// every tensor's name and shape checked.
pub fn load(weights: &Path, device: &Device) -> Result<(Network, CheckpointMeta)> {
    let meta = read_meta(weights)?;
    let hash = sha256_file(weights)?;
    if hash != meta.weights_sha256 {
        return Err(Error::CheckpointMismatch {
            path: weights.into(),
            message: format!(
                "weights hash {hash} differs from the sidecar's {}; the pair is torn or was edited",
                meta.weights_sha256
            ),
        });
    }
    let mut network = meta.model.init(device)?;
    apply_weights(&mut network, weights)?;
    Ok((network, meta))
}

/// Loads a checkpoint that must have the given architecture and class count, and says what
/// differs when it does not.
pub fn load_expecting(weights: &Path, expected: &ModelSpec, device: &Device) -> Result<(Network, CheckpointMeta)> {
    let meta = read_meta(weights)?;
    let mut differences = Vec::new();
    let (got, want) = (&meta.model, expected);
    if got.arch != want.arch {
        differences.push(format!("architecture is {} but {} is expected", got.arch, want.arch));
    }
    if got.num_classes != want.num_classes {
        differences.push(format!("{} classes but {} are expected", got.num_classes, want.num_classes));
    }
    if got.in_channels != want.in_channels {
        differences.push(format!("{} input channels but {} are expected", got.in_channels, want.in_channels));
    }
    if got.width != want.width {
        differences.push(format!("width {} but {} is expected", got.width, want.width));
    }
    if got.plan != want.plan && want.plan.is_some() {
        differences.push("its VGG plan differs".into());
    }
    if !differences.is_empty() {
        return Err(Error::CheckpointMismatch { path: weights.into(), message: differences.join("; ") });
    }
    load(weights, device)
}

/// Applies the tensors of a safetensors file to `network`; every parameter must be present with
/// its shape, and no tensor may be left over.
pub fn apply_weights(network: &mut Network, weights: &Path) -> Result<()> {
    apply_store(network, SafetensorsStore::from_file(weights), weights)
}

/// Applies safetensors bytes (PyTorch names and layout) to `network`, as [`apply_weights`];
/// `origin` names them in errors.
pub fn apply_safetensors_bytes(network: &mut Network, bytes: Vec<u8>, origin: &Path) -> Result<()> {
    apply_store(network, SafetensorsStore::from_bytes(Some(bytes)), origin)
}

fn apply_store(network: &mut Network, store: SafetensorsStore, weights: &Path) -> Result<()> {
    let mut store = store.with_from_adapter(PyTorchToBurnAdapter).skip_enum_variants(true).allow_partial(true);
    let mismatch = |message: String| Error::CheckpointMismatch { path: weights.into(), message };
    let result = network.load_from(&mut store).map_err(|e| mismatch(e.to_string()))?;
    let fit = crate::tensor_fit::TensorFit::of(&result, |name| name.ends_with("num_batches_tracked"));
    if !fit.is_empty() {
        return Err(mismatch(fit.messages().join("; ")));
    }
    // Tensors stored as f16, bf16 or f64 load as such: one float type for the kernels.
    *network = crate::models::float32::to_f32(network.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Arch;
    use burn::module::Module;
    use burn::tensor::Tensor;
    use proptest::prelude::Strategy;

    fn meta(spec: ModelSpec) -> CheckpointMeta {
        CheckpointMeta {
            format_version: 0,
            model: spec,
            input: InputSpec {
                channels: 1,
                height: 8,
                width: 8,
                mean: vec![0.5],
                std: vec![0.25],
                crop_fraction: None,
            },
            dataset: serde_json::json!({"name": "synthetic"}),
            classes: vec!["a".into(), "b".into(), "c".into()],
            training: serde_json::json!({}),
            metrics: serde_json::json!({}),
            weights_sha256: String::new(),
            written_by: "test".into(),
            pruning: None,
            imported_from: None,
            other: Default::default(),
        }
    }

    /// A checkpoint written by kdkit 0.1 (format version 1) before this format existed:
    /// `tests/fixtures/v1/model.{safetensors,json}`, made by kd-pretrain at commit e4f57dd
    /// (small-cnn, width 0.25, 1 epoch of Fashion-MNIST). It must load and predict.
    #[test]
    fn a_version_1_checkpoint_still_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v1/model.safetensors");
        let device = Device::flex();
        let (network, meta) = load(&path, &device).unwrap();
        assert_eq!(meta.format_version, 2);
        assert_eq!(meta.model.arch, Arch::SmallCnn);
        assert_eq!(meta.classes.len(), 10);
        let logits = network.forward(Tensor::<4>::zeros([1, 1, 28, 28], &device));
        assert_eq!(logits.dims(), [1, 10]);
    }

    /// Unknown fields survive a read-write cycle; a newer version is refused with advice.
    #[test]
    fn newer_versions_are_refused_and_unknown_fields_kept() {
        let mut value = serde_json::to_value(meta(ModelSpec::new(Arch::SmallCnn, 1, 3))).unwrap();
        value["format_version"] = serde_json::json!(2);
        value["future_field"] = serde_json::json!({"x": 1});
        let parsed = parse_meta(&value.to_string(), Path::new("m.json")).unwrap();
        assert_eq!(parsed.other["future_field"], serde_json::json!({"x": 1}));
        assert_eq!(serde_json::to_value(&parsed).unwrap()["future_field"], serde_json::json!({"x": 1}));
        value["format_version"] = serde_json::json!(FORMAT_VERSION + 1);
        let err = parse_meta(&value.to_string(), Path::new("m.json")).unwrap_err().to_string();
        assert!(err.contains("newer kdkit") && err.contains("upgrade"), "{err}");
    }

    /// A sidecar whose input is 100000 x 100000 pixels is refused when read, before any tool
    /// allocates an image of it.
    #[test]
    fn oversized_inputs_in_a_sidecar_are_refused() {
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let spec = ModelSpec::new(Arch::ResNet(8), 1, 3);
        save(&spec.init(&device).unwrap(), &meta(spec.clone()), &path).unwrap();
        let sidecar = sidecar_path(&path);
        let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&sidecar).unwrap()).unwrap();
        value["input"]["height"] = 100_000.into();
        value["input"]["width"] = 100_000.into();
        std::fs::write(&sidecar, value.to_string()).unwrap();
        let err = read_meta(&path).unwrap_err().to_string();
        assert!(err.contains("100000x100000") && err.contains("m.json"), "{err}");
    }

    /// The same network saved twice gives the same bytes: the header's keys are written sorted,
    /// not in hash-map order (two maps of one process iterate in different orders).
    #[test]
    fn identical_tensors_give_identical_files() {
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        let spec = ModelSpec::new(Arch::ResNet(8), 1, 3);
        let network = spec.init(&device).unwrap();
        let hashes: Vec<String> = (0..4)
            .map(|i| {
                let path = dir.path().join(format!("m{i}.safetensors"));
                save(&network, &meta(spec.clone()), &path).unwrap();
                sha256_file(&path).unwrap()
            })
            .collect();
        assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
        let (loaded, _) = load(&dir.path().join("m0.safetensors"), &device).unwrap();
        let x = Tensor::<4>::random([1, 1, 8, 8], burn::tensor::Distribution::Default, &device);
        let a = network.valid().forward(x.clone()).into_data();
        a.assert_approx_eq::<f32>(&loaded.valid().forward(x).into_data(), burn::tensor::Tolerance::absolute(1e-6));
    }

    #[test]
    fn round_trip_reproduces_outputs_and_uses_pytorch_names() {
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let mut spec = ModelSpec::new(Arch::ResNet(8), 1, 3);
        spec.shortcut = crate::models::Shortcut::Conv;
        let network = spec.init(&device).unwrap();
        save(&network, &meta(spec.clone()), &path).unwrap();

        let (loaded, meta) = load(&path, &device).unwrap();
        assert_eq!(meta.model, spec);
        let x = Tensor::<4>::random([2, 1, 8, 8], burn::tensor::Distribution::Default, &device);
        let a = network.valid().forward(x.clone()).into_data();
        let b = loaded.valid().forward(x).into_data();
        a.assert_approx_eq::<f32>(&b, burn::tensor::Tolerance::absolute(1e-6));

        let bytes = std::fs::read(&path).unwrap();
        let names: Vec<String> =
            safetensors::SafeTensors::deserialize(&bytes).unwrap().names().into_iter().map(String::from).collect();
        for expected in [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "bn1.running_mean",
            "layer1.0.conv2.weight",
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.running_var",
            "fc.weight",
            "fc.bias",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
        }
        // PyTorch's Linear layout: [out, in].
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(tensors.tensor("fc.weight").unwrap().shape(), &[3, 64]);
    }

    #[test]
    fn other_architecture_or_class_count_is_refused_with_the_difference() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let spec = ModelSpec::new(Arch::SmallCnn, 1, 3);
        save(&spec.init(&device).unwrap(), &meta(spec.clone()), &path).unwrap();

        let other = ModelSpec::new(Arch::ResNet(20), 1, 3);
        let err = load_expecting(&path, &other, &device).unwrap_err().to_string();
        assert!(err.contains("architecture is small-cnn but resnet20"), "{err}");
        let other = ModelSpec::new(Arch::SmallCnn, 1, 5);
        let err = load_expecting(&path, &other, &device).unwrap_err().to_string();
        assert!(err.contains("3 classes but 5"), "{err}");
    }

    #[test]
    fn weights_of_another_shape_are_refused() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.safetensors");
        let spec = ModelSpec::new(Arch::SmallCnn, 1, 3);
        save(&spec.init(&device).unwrap(), &meta(spec.clone()), &a).unwrap();
        let mut wide = spec.clone();
        wide.width = 2.0;
        let mut network = wide.init(&device).unwrap();
        let err = apply_weights(&mut network, &a).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn torn_pair_is_detected() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let spec = ModelSpec::new(Arch::SmallCnn, 1, 3);
        save(&spec.init(&device).unwrap(), &meta(spec.clone()), &path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let err = load(&path, &device).unwrap_err().to_string();
        assert!(err.contains("hash"), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// A sidecar with any field replaced by a hostile value (wrong types, huge sizes,
        /// unknown architectures, zero widths): an error naming the file or a checkpoint that
        /// builds, never a panic.
        #[test]
        fn hostile_sidecars_never_panic(
            field in proptest::sample::select(vec!["arch", "width", "in_channels", "num_classes", "channels", "plan", "head", "format_version", "input", "classes"]),
            value in proptest::prop_oneof![
                proptest::prelude::Just(serde_json::json!(null)),
                proptest::prelude::Just(serde_json::json!(0)),
                proptest::prelude::Just(serde_json::json!(-1)),
                proptest::prelude::Just(serde_json::json!(1e300)),
                proptest::prelude::Just(serde_json::json!(u64::MAX)),
                proptest::prelude::Just(serde_json::json!("resnet99999998")),
                proptest::prelude::Just(serde_json::json!([0, 4096, 1])),
                proptest::prelude::Just(serde_json::json!([3, "M", 0])),
                proptest::prelude::Just(serde_json::json!({"kind": "projection", "hidden": 0, "out": 7})),
                proptest::prelude::Just(serde_json::json!({"channels": 0, "height": 8, "width": 8, "mean": [], "std": []})),
                (0u32..5000).prop_map(|v| serde_json::json!(v)),
            ],
        ) {
            let mut meta_value = serde_json::to_value(meta(ModelSpec::new(Arch::SmallCnn, 1, 3))).unwrap();
            meta_value["format_version"] = serde_json::json!(1);
            match field {
                "format_version" | "input" | "classes" => meta_value[field] = value.clone(),
                model_field => meta_value["model"][model_field] = value.clone(),
            }
            let sidecar = Path::new("m.json");
            if let Ok(parsed) = parse_meta(&meta_value.to_string(), sidecar)
                && parsed.model.validate().is_ok()
            {
                proptest::prop_assert!(parsed.model.init(&Device::flex()).is_ok());
            }
        }

        /// Weights files with bytes overwritten or cut: an error naming the file, never a panic.
        #[test]
        fn mutated_weights_never_panic(
            edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..6),
            keep in 0usize..4096,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.safetensors");
            let mut spec = ModelSpec::new(Arch::SmallCnn, 1, 3);
            spec.channels = Some(vec![2, 3, 4]);
            save(&spec.init(&Device::flex()).unwrap(), &meta(spec.clone()), &path).unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            for (at, value) in edits {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            bytes.truncate(keep.min(bytes.len()));
            std::fs::write(&path, &bytes).unwrap();
            let mut network = spec.init(&Device::flex()).unwrap();
            if let Err(e) = apply_weights(&mut network, &path) {
                proptest::prop_assert!(e.to_string().contains("m.safetensors"), "{}", e);
            }
        }
    }
}

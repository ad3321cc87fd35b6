//! Command-line conventions shared by every kdkit tool: common flags, config files merged under
//! flags, logging set-up, and the exit-code contract (0 success, 2 usage or input error).

use anyhow::{Context, Result, bail};
use clap::Args;
use kd_common::device::DeviceSpec;
use kd_datasets::DatasetKind;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Flags every tool takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Dataset: fashion-mnist, mnist, cifar10, cifar100 or folder.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Dataset directory (default: the dataset's standard location, e.g.
    /// /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Compute device: auto, cpu, wgpu[:N] or cuda[:N]. auto = CUDA, else a hardware wgpu
    /// adapter, else the CPU.
    #[arg(long, value_parser = parse_device)]
    pub device: Option<DeviceSpec>,
    /// Random seed (initialisation, shuffling, augmentation).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Data-loading worker threads (default: available cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output: warnings only, no progress bars.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
}

fn parse_device(text: &str) -> Result<DeviceSpec, String> {
    text.parse().map_err(|e: kd_common::Error| e.to_string())
}

impl CommonArgs {
    /// Sets up logging and progress bars from `-v`/`-q`.
    pub fn init_output(&self) {
        let verbosity = self.verbose as i8 - self.quiet as i8;
        kd_common::logging::init(verbosity);
        kd_common::progress::set_enabled(self.quiet == 0);
    }
}

/// The one config resolution of the training tools: `defaults` serialised, the config file
/// (if any) merged over them (unknown keys refused), the result read back into the schema. The
/// tools then apply their flags over it.
pub fn overlay_config<T: serde::Serialize + serde::de::DeserializeOwned>(
    defaults: &T,
    file: Option<&(PathBuf, Value)>,
) -> Result<T> {
    let mut value = serde_json::to_value(defaults)?;
    if let Some((path, overlay)) = file {
        merge(&mut value, overlay, "", path)?;
        return serde_json::from_value(value)
            .with_context(|| format!("{}: the configuration does not fit its schema", path.display()));
    }
    serde_json::from_value(value).context("the configuration does not fit its schema")
}

/// Default number of loader workers: `RAYON_NUM_THREADS` when set (the compute thread count that
/// `make` gives each of its side-by-side jobs), else the available cores.
pub fn default_workers() -> usize {
    kd_common::device::cpu_threads()
}

/// Reads a TOML or JSON configuration file into a JSON value.
pub fn read_config_file(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    let is_json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    if is_json {
        serde_json::from_str(&text).with_context(|| format!("parsing JSON config file {}", path.display()))
    } else {
        let value: toml::Value =
            toml::from_str(&text).with_context(|| format!("parsing TOML config file {}", path.display()))?;
        serde_json::to_value(value).context("converting TOML to JSON")
    }
}

/// Merges `overlay` into `base`: objects key by key; any key `base` lacks is an error naming its
/// path. An object whose `kind` differs from the base's (a tagged variant) replaces it whole.
pub fn merge(base: &mut Value, overlay: &Value, path: &str, file: &Path) -> Result<()> {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            let switches_kind = overlay.get("kind").is_some_and(|k| base.get("kind") != Some(k));
            if switches_kind {
                *base = overlay.clone();
                return Ok(());
            }
            for (key, value) in overlay {
                let key_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match base.get_mut(key) {
                    Some(slot) => merge(slot, value, &key_path, file)?,
                    None => bail!("{}: unknown key `{key_path}`", file.display()),
                }
            }
            Ok(())
        }
        (slot, value) => {
            *slot = value.clone();
            Ok(())
        }
    }
}

/// Runs a tool's `run` function with the exit-code contract: errors print their whole chain to
/// stderr and exit with 2. `run` runs on a thread of the compute pool ([on_compute_pool]).
pub fn main_with(run: impl FnOnce() -> Result<()> + Send) -> ExitCode {
    main_with_threads(None, run)
}

/// [main_with] on a compute pool of `threads` threads (default [kd_common::device::cpu_threads]).
pub fn main_with_threads(threads: Option<usize>, run: impl FnOnce() -> Result<()> + Send) -> ExitCode {
    kd_common::allocator::keep_tensor_buffers();
    ensure_runtime_dir();
    match on_compute_pool(threads, run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A closed stdout (e.g. `| head`) is not a failure.
            if error
                .chain()
                .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Stack of each compute thread: the 8 MiB a Linux main thread gets, since the tool's own work
/// runs on one of them.
const COMPUTE_STACK_BYTES: usize = 8 << 20;

/// How long an idle compute thread spins for work before it yields and sleeps (the pool option
/// of patches/rayon-core). A training step is hundreds of short parallel kernels separated by
/// sequential gaps of tens of microseconds (autodiff bookkeeping, allocation); Rayon's own
/// policy puts the workers to sleep in those gaps, and waking them costs every kernel a futex
/// wake and the sleeper's start-up delay. 200 µs keeps them awake across the gaps; spinning 50,
/// 200 and 1000 µs measured alike, all faster than no spin (docs/performance.md).
const COMPUTE_SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// Runs `work` on a thread of the global Rayon pool (built first with `threads` threads, default
/// [kd_common::device::cpu_threads], idle threads spinning [COMPUTE_SPIN] before they sleep),
/// the pool the CPU backend's kernels split their loops over. From a thread outside the pool
/// every parallel kernel is a job handed to the pool while the caller sleeps until a worker
/// wakes it (a futex wait and wake per operation, hundreds per training step); from a worker,
/// the kernel's first half runs in place and only the other halves go to the spinning workers.
pub fn on_compute_pool<R: Send>(threads: Option<usize>, work: impl FnOnce() -> R + Send) -> R {
    let threads = threads.unwrap_or_else(kd_common::device::cpu_threads);
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(COMPUTE_STACK_BYTES)
        .spin_time(COMPUTE_SPIN)
        .build_global();
    if built.is_err() && rayon::current_num_threads() != threads {
        // Only a second call in one process gets here (tests); its work still runs correctly.
        tracing::warn!("the compute pool already has {} threads, not {threads}", rayon::current_num_threads());
    }
    let mut result = None;
    rayon::scope(|_| result = Some(work()));
    result.expect("rayon::scope runs its closure before returning")
}

/// Mesa's Vulkan drivers (the software driver wgpu runs on without a GPU) print "error:
/// XDG_RUNTIME_DIR is invalid or not set in the environment" on every start when the variable
/// is missing, which reads like kdkit's own errors. When it is unset or not a directory, point
/// it at a private directory under the temporary directory.
fn ensure_runtime_dir() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| Path::new(&d).is_dir()) {
            return;
        }
        let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("kdkit-runtime-{uid}"));
        if std::fs::create_dir_all(&dir).is_err()
            || std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).is_err()
        {
            return;
        }
        // SAFETY: called first thing in `main`, before the tool starts any thread, so no other
        // thread can read the environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }
}

/// SHA-256 (hex) of a JSON value's canonical text.
pub fn hash_json(value: &Value) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(value.to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The work runs on a worker of the global pool (which has a thread index; the test's own
    /// thread has none), and returns its value.
    #[test]
    fn work_runs_on_a_thread_of_the_compute_pool() {
        assert_eq!(rayon::current_thread_index(), None);
        let (index, value) = on_compute_pool(None, || (rayon::current_thread_index(), 42));
        assert!(index.is_some());
        assert_eq!(value, 42);
    }

    #[test]
    fn merge_overrides_and_rejects_unknown_keys() {
        let mut base = json!({"a": 1, "opt": {"kind": "sgd", "momentum": 0.9}});
        merge(&mut base, &json!({"a": 2, "opt": {"momentum": 0.8}}), "", Path::new("f.toml")).unwrap();
        assert_eq!(base, json!({"a": 2, "opt": {"kind": "sgd", "momentum": 0.8}}));
        let err = merge(&mut base, &json!({"opt": {"momentun": 0.8}}), "", Path::new("f.toml")).unwrap_err();
        assert_eq!(err.to_string(), "f.toml: unknown key `opt.momentun`");
        merge(&mut base, &json!({"opt": {"kind": "adamw", "eps": 1e-8}}), "", Path::new("f.toml")).unwrap();
        assert_eq!(base["opt"], json!({"kind": "adamw", "eps": 1e-8}));
    }

    /// JSON values of any shape, a few levels deep.
    fn any_json() -> impl proptest::prelude::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-z_]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Any text as a config file: parsed or refused with the file named, never a panic.
        #[test]
        fn arbitrary_config_text_never_panics(text in "\\PC{0,80}", json in proptest::prelude::any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(if json { "c.json" } else { "c.toml" });
            std::fs::write(&path, &text).unwrap();
            if let Err(e) = read_config_file(&path) {
                proptest::prop_assert!(format!("{e:#}").contains("c."), "{e:#}");
            }
        }

        /// Any overlay merged into kd-pretrain's and kd-distill's defaults: a configuration
        /// that fits the schema (and then validates or not), or an error, never a panic.
        #[test]
        fn arbitrary_overlays_never_panic(overlay in any_json(), key in proptest::sample::select(vec!["", "train", "model", "train.schedule", "train.optimizer", "method"])) {
            let overlay = if key.is_empty() {
                overlay
            } else {
                key.split('.').rev().fold(overlay, |v, k| serde_json::json!({ k: v }))
            };
            let file = Path::new("c.toml");
            let pretrain = crate::pretrain::PretrainConfig::defaults_for_tests();
            let mut base = serde_json::to_value(&pretrain).unwrap();
            if merge(&mut base, &overlay, "", file).is_ok()
                && let Ok(config) = serde_json::from_value::<crate::pretrain::PretrainConfig>(base)
            {
                let _ = config.train.validate();
                let _ = config.model.validate();
            }
        }
    }
}

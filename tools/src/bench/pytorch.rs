//! PyTorch eager reference figures for `kd-bench`'s tables, measured in the same run: the embedded
//! `pytorch_train.py` trains the same model at the same batch size and thread count, and the
//! callers interleave it with kdkit's own measurement. Without a Python that imports `torch`, the
//! figures fall back to constants (a 2-core machine's, from the CPU speed issue) and say so.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::process::Command;

/// The benchmark script, embedded so that an installed `kd-bench` needs no source tree.
const SCRIPT: &str = include_str!("pytorch_train.py");

/// PyTorch eager images/s on a 2-core CPU, 2 threads, batch 64: ResNet-20, ResNet-56, and online
/// KD ResNet-56 -> ResNet-20 (the constants kd-bench printed before it measured PyTorch itself).
fn fallback(arch: &str, batch: usize, teacher: Option<&str>) -> Option<f64> {
    match (arch, batch, teacher) {
        ("resnet20", 64, None) => Some(218.0),
        ("resnet56", 64, None) => Some(83.0),
        ("resnet20", 64, Some("resnet56")) => Some(134.0),
        _ => None,
    }
}

/// A PyTorch figure: measured now, a constant, or none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Figure {
    /// Images/s measured in this run.
    Measured(f64),
    /// The fallback constant (no PyTorch here).
    Constant(f64),
    /// Neither.
    Unknown,
}

impl Figure {
    /// The table cell: the figure, marked when it is a constant.
    pub fn cell(&self) -> String {
        match self {
            Figure::Measured(rate) => format!("{rate:.1}"),
            Figure::Constant(rate) => format!("{rate:.0} (constant)"),
            Figure::Unknown => "-".into(),
        }
    }

    /// `kdkit / PyTorch` as a table cell.
    pub fn ratio(&self, kdkit: f64) -> String {
        match self {
            Figure::Measured(rate) | Figure::Constant(rate) => format!("{:.2}", kdkit / rate),
            Figure::Unknown => "-".into(),
        }
    }

    /// The images/s, measured or constant.
    pub fn rate(&self) -> Option<f64> {
        match self {
            Figure::Measured(rate) | Figure::Constant(rate) => Some(*rate),
            Figure::Unknown => None,
        }
    }
}

/// Where PyTorch figures come from in this run.
pub struct PyTorch {
    /// The Python that imports torch, with the script written out; `None`: constants only.
    runner: Option<(String, tempfile::NamedTempFile)>,
    /// torch's version, for the table's header.
    pub version: Option<String>,
    /// torch's device for the models: `cpu`, or `cuda:N` when kdkit is timed on CUDA.
    pub device: String,
    threads: usize,
    steps: usize,
    warmup: usize,
}

/// The torch device that matches kdkit's: the same CUDA device when kdkit runs on CUDA, else the
/// CPU (PyTorch has no wgpu backend; on wgpu the PyTorch column is PyTorch's CPU).
pub fn torch_device(device: &kd_common::device::ResolvedDevice) -> String {
    match device.backend {
        kd_common::device::BackendKind::Cuda => format!("cuda:{}", device.ordinal),
        _ => "cpu".into(),
    }
}

impl PyTorch {
    /// `requested`: a Python to use (an error if it cannot import torch), `none` for constants
    /// only, or nothing to try `python3` and fall back to constants when it has no torch.
    pub fn detect(requested: Option<&str>, device: &str, threads: usize, steps: usize, warmup: usize) -> Result<Self> {
        let mut pytorch = Self { runner: None, version: None, device: device.to_string(), threads, steps, warmup };
        let python = match requested {
            Some("none") => return Ok(pytorch),
            Some(python) => python,
            None => "python3",
        };
        let probe = Command::new(python)
            .args(["-c", "import torch; print(torch.__version__, torch.cuda.is_available())"])
            .output();
        let answer = match probe {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
            Ok(out) if requested.is_some() => {
                bail!("{python} cannot import torch: {}", String::from_utf8_lossy(&out.stderr).trim())
            }
            Err(error) if requested.is_some() => bail!("cannot run {python}: {error}"),
            _ => {
                tracing::warn!(
                    "no PyTorch ({python} cannot import torch): the PyTorch column shows constants; \
                     scripts/setup-torch.sh installs it"
                );
                return Ok(pytorch);
            }
        };
        let (version, has_cuda) = answer.rsplit_once(' ').unwrap_or((answer.as_str(), "False"));
        if pytorch.device.starts_with("cuda") && has_cuda != "True" {
            tracing::warn!("{python}'s torch {version} has no CUDA device: the PyTorch column is PyTorch on the CPU");
            pytorch.device = "cpu".into();
        }
        let version = version.to_string();
        let mut script = tempfile::Builder::new().suffix(".py").tempfile().context("writing the PyTorch script")?;
        script.write_all(SCRIPT.as_bytes()).context("writing the PyTorch script")?;
        pytorch.runner = Some((python.to_string(), script));
        pytorch.version = Some(version);
        Ok(pytorch)
    }

    /// Whether figures are measured (else constants).
    pub fn is_measured(&self) -> bool {
        self.runner.is_some()
    }

    /// Images/s of PyTorch training `arch` at `batch` (distilling from `teacher` online when
    /// given), measured when PyTorch is here, else the constant.
    pub fn figure(&self, arch: &str, batch: usize, teacher: Option<&str>) -> Result<Figure> {
        if self.runner.is_none() {
            return Ok(fallback(arch, batch, teacher).map_or(Figure::Unknown, Figure::Constant));
        }
        let extra: Vec<&str> = teacher.map(|t| vec!["--teacher", t]).unwrap_or_default();
        self.measure(arch, batch, &extra, self.steps, self.warmup)
    }

    /// Images/s of torchvision's `arch` at 224 px, training (`infer` false) or in eval mode
    /// without gradients, over `steps` timed steps; unknown without PyTorch (no constants).
    pub fn figure_224(&self, arch: &str, batch: usize, infer: bool, steps: usize, warmup: usize) -> Result<Figure> {
        if self.runner.is_none() {
            return Ok(Figure::Unknown);
        }
        self.measure(arch, batch, &["--size", "224", "--mode", if infer { "infer" } else { "train" }], steps, warmup)
    }

    /// The `"rate"` printed by `script` (a file next to this one, embedded) run with `args` by
    /// this Python; unknown without PyTorch.
    pub fn run_script(&self, script: &str, args: &[&str]) -> Result<Figure> {
        let Some((python, _)) = &self.runner else {
            return Ok(Figure::Unknown);
        };
        let source = match script {
            "torchvision_loader.py" => include_str!("torchvision_loader.py"),
            other => bail!("no embedded script {other}"),
        };
        let mut file = tempfile::Builder::new().suffix(".py").tempfile().context("writing the PyTorch script")?;
        file.write_all(source.as_bytes()).context("writing the PyTorch script")?;
        let out =
            Command::new(python).arg(file.path()).args(args).output().with_context(|| format!("running {python}"))?;
        if !out.status.success() {
            bail!("{script} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let value: serde_json::Value =
            serde_json::from_str(text.trim()).with_context(|| format!("{script} printed {text:?}"))?;
        Ok(Figure::Measured(value["rate"].as_f64().with_context(|| format!("{script} printed no rate: {text}"))?))
    }

    fn measure(&self, arch: &str, batch: usize, extra: &[&str], steps: usize, warmup: usize) -> Result<Figure> {
        let Some((python, script)) = &self.runner else {
            return Ok(Figure::Unknown);
        };
        let mut command = Command::new(python);
        command.arg(script.path()).args(["--arch", arch]).args([
            "--batch".to_string(),
            batch.to_string(),
            "--threads".to_string(),
            self.threads.to_string(),
            "--steps".to_string(),
            steps.to_string(),
            "--warmup".to_string(),
            warmup.to_string(),
            "--device".to_string(),
            self.device.clone(),
        ]);
        command.args(extra);
        let out = command.output().with_context(|| format!("running {python}"))?;
        if !out.status.success() {
            bail!("PyTorch benchmark of {arch} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let parsed: serde_json::Value =
            serde_json::from_str(line.trim()).with_context(|| format!("PyTorch benchmark printed {line:?}"))?;
        let rate = parsed["images_per_s"].as_f64().context("PyTorch benchmark: no images_per_s")?;
        Ok(Figure::Measured(rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_pytorch_the_figures_are_labelled_constants() {
        let pytorch = PyTorch::detect(Some("none"), "cpu", 2, 1, 0).unwrap();
        assert!(!pytorch.is_measured());
        let figure = pytorch.figure("resnet20", 64, None).unwrap();
        assert_eq!(figure, Figure::Constant(218.0));
        assert_eq!(figure.cell(), "218 (constant)");
        // 109 / 218 = 0.5
        assert_eq!(figure.ratio(109.0), "0.50");
        assert_eq!(pytorch.figure("resnet20", 128, None).unwrap(), Figure::Unknown);
    }

    #[test]
    fn a_python_without_torch_is_an_error_when_asked_for() {
        assert!(PyTorch::detect(Some("/nonexistent/python"), "cpu", 2, 1, 0).is_err());
    }
}

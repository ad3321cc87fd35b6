//! `kd-report`: with `--run-dir`, the report of a `make` run directory (`report.md`: results
//! table, frozen encoders, one verdict per seed claim, PNG plots); otherwise one Markdown table
//! from the JSON that `kd-eval` printed for the named runs. A row may name several runs (seeds)
//! and then shows mean +- sample standard deviation.

pub mod budget;
pub mod difference_chart;
pub mod document;
pub mod plots;
pub mod run_dir;
pub mod stats;
pub mod verdicts;

use anyhow::{Context, Result, bail};
use clap::Parser;
use stats::format_mean_sd as mean_sd_text;
use std::path::{Path, PathBuf};

/// Summarise `kd-eval` results: a run directory's report, or a Markdown table on stdout.
#[derive(Parser, Debug)]
#[command(name = "kd-report", version, long_about = None)]
pub struct Args {
    /// `NAME=FILE[,FILE...]` entries: a row name and the `kd-eval` JSON of its run(s), for
    /// example one per seed.
    pub runs: Vec<String>,
    /// A run directory (`runs/quick`): writes `report.md` and `plots/` into it and prints the
    /// report.
    #[arg(long, conflicts_with = "runs")]
    pub run_dir: Option<PathBuf>,
    /// With --run-dir: also rewrite this README's section between `<!-- kd-report:begin -->` and
    /// `<!-- kd-report:end -->` with the report's tables and verdicts.
    #[arg(long, requires = "run_dir")]
    pub readme: Option<PathBuf>,
}

/// One run's numbers.
struct RunNumbers {
    arch: String,
    top1: f64,
    top5: f64,
    nll: f64,
    ece: f64,
    agreement: Option<f64>,
    train_seconds: Option<f64>,
    /// Non-zero prunable (conv and linear) weights of the evaluated network.
    nonzero_weights: Option<f64>,
    /// Global sparsity of the (first) teacher it was distilled from, 0 for a dense teacher.
    teacher_sparsity: Option<f64>,
}

fn read_run(path: &Path) -> Result<RunNumbers> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not kd-eval JSON", path.display()))?;
    let number = |key: &str| {
        value.get(key).and_then(|v| v.as_f64()).with_context(|| format!("{}: no number `{key}`", path.display()))
    };
    // Training time and the teacher come from the evaluated checkpoint's sidecar.
    let meta = value
        .get("checkpoint")
        .and_then(|c| c.as_str())
        .and_then(|c| kd_common::checkpoint::read_meta(Path::new(c)).ok());
    let train_seconds = meta.as_ref().and_then(|meta| meta.metrics.get("train_seconds").and_then(|s| s.as_f64()));
    let teacher_sparsity = meta
        .as_ref()
        .and_then(|meta| meta.training.pointer("/method/teachers/0").and_then(|t| t.as_str()).map(PathBuf::from))
        .and_then(|teacher| kd_common::checkpoint::read_meta(&teacher).ok())
        .map(|teacher| teacher.pruning.map_or(0.0, |p| p.global_sparsity));
    Ok(RunNumbers {
        arch: value.get("arch").and_then(|v| v.as_str()).unwrap_or("?").to_string(),
        top1: number("top1")?,
        top5: number("top5")?,
        nll: number("nll")?,
        ece: number("ece")?,
        agreement: value.get("agreement").and_then(|v| v.as_f64()),
        train_seconds,
        nonzero_weights: value.pointer("/sparsity/nonzero_weights").and_then(|v| v.as_f64()),
        teacher_sparsity,
    })
}

/// The table of frozen encoders (every run's kd-eval JSON has `knn_top1` and no classifier
/// `top1`): kNN and linear-probe top-1, mean +- sd over the runs of a row.
fn encoder_table(entries: &[(String, Vec<serde_json::Value>)]) -> Result<()> {
    outln!("| run | model | runs | kNN top-1 (%) | linear-probe top-1 (%) | train s |");
    outln!("|---|---|---|---|---|---|");
    for (name, runs) in entries {
        let column = |key: &str, decimals: usize| -> String {
            let values: Vec<f64> = runs.iter().filter_map(|r| r.get(key).and_then(|v| v.as_f64())).collect();
            if values.len() == runs.len() { mean_sd_text(&values, decimals) } else { "-".into() }
        };
        let seconds: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.get("checkpoint").and_then(|c| c.as_str()))
            .filter_map(|c| kd_common::checkpoint::read_meta(Path::new(c)).ok())
            .filter_map(|m| m.metrics.get("train_seconds").and_then(|s| s.as_f64()))
            .collect();
        let seconds = if seconds.len() == runs.len() { mean_sd_text(&seconds, 0) } else { "-".into() };
        let arch = runs[0].get("arch").and_then(|a| a.as_str()).unwrap_or("?");
        outln!(
            "| {name} | {arch} | {} | {} | {} | {seconds} |",
            runs.len(),
            column("knn_top1", 2),
            column("linear_probe_top1", 2)
        );
    }
    Ok(())
}

/// Runs `kd-report`.
pub fn run(args: Args) -> Result<()> {
    if let Some(dir) = &args.run_dir {
        let methods = run_dir::collect(dir)?;
        if methods.is_empty() {
            bail!("{}: no evaluated run (no <run>/eval.json)", dir.display());
        }
        let report = document::write_report(dir, &methods)?;
        if let Some(readme) = &args.readme {
            document::update_readme(readme, dir, &report)?;
        }
        out!("{}", report.full(dir));
        return Ok(());
    }
    if args.runs.is_empty() {
        bail!("name the runs (NAME=FILE[,FILE...]) or a --run-dir");
    }
    let mut entries = Vec::new();
    for entry in &args.runs {
        let (name, files) = entry.split_once('=').with_context(|| format!("`{entry}` is not NAME=FILE[,FILE...]"))?;
        let runs = files
            .split(',')
            .map(|f| {
                let text = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
                serde_json::from_str(&text).with_context(|| format!("{f} is not kd-eval JSON"))
            })
            .collect::<Result<Vec<serde_json::Value>>>()?;
        entries.push((name.to_string(), runs));
    }
    let encoder = |v: &serde_json::Value| v.get("top1").is_none() && v.get("knn_top1").is_some();
    if entries.iter().all(|(_, runs)| runs.iter().all(encoder)) {
        return encoder_table(&entries);
    }
    outln!(
        "| run | model | non-zero weights | teacher sparsity (%) | runs | top-1 (%) | top-5 (%) | NLL | ECE | \
         agreement with teacher (%) | train s |"
    );
    outln!("|---|---|---|---|---|---|---|---|---|---|---|");
    for entry in &args.runs {
        let (name, files) = entry.split_once('=').with_context(|| format!("`{entry}` is not NAME=FILE[,FILE...]"))?;
        let runs: Vec<RunNumbers> = files.split(',').map(|f| read_run(&PathBuf::from(f))).collect::<Result<_>>()?;
        let column = |f: &dyn Fn(&RunNumbers) -> Option<f64>, decimals: usize| -> String {
            let values: Vec<f64> = runs.iter().filter_map(f).collect();
            if values.len() == runs.len() { mean_sd_text(&values, decimals) } else { "-".into() }
        };
        outln!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            runs[0].arch,
            column(&|r| r.nonzero_weights, 0),
            column(&|r| r.teacher_sparsity.map(|s| 100.0 * s), 1),
            runs.len(),
            column(&|r| Some(r.top1), 2),
            column(&|r| Some(r.top5), 2),
            column(&|r| Some(r.nll), 4),
            column(&|r| Some(r.ece), 4),
            column(&|r| r.agreement, 2),
            column(&|r| r.train_seconds, 0),
        );
    }
    Ok(())
}

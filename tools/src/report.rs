//! `kd-report`: one Markdown table from the JSON that `kd-eval` printed for several runs.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;

/// Summarise `kd-eval` results as a Markdown table on stdout.
#[derive(Parser, Debug)]
#[command(name = "kd-report", version, about, long_about = None)]
pub struct Args {
    /// `NAME=FILE` pairs: a row name and the `kd-eval` JSON of that run.
    #[arg(required = true)]
    pub runs: Vec<String>,
}

/// Runs `kd-report`.
pub fn run(args: Args) -> Result<()> {
    println!("| run | model | top-1 (%) | top-5 (%) | NLL | ECE | eval images/s |");
    println!("|---|---|---|---|---|---|---|");
    for entry in &args.runs {
        let (name, file) = entry.split_once('=').with_context(|| format!("`{entry}` is not NAME=FILE"))?;
        let path = PathBuf::from(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not kd-eval JSON", path.display()))?;
        let number = |key: &str| value.get(key).and_then(|v| v.as_f64()).with_context(|| format!("{}: no number `{key}`", path.display()));
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.4} | {:.4} | {:.0} |",
            value.get("arch").and_then(|v| v.as_str()).unwrap_or("?"),
            number("top1")?,
            number("top5")?,
            number("nll")?,
            number("ece")?,
            number("images_per_s")?
        );
    }
    Ok(())
}

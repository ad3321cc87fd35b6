//! `report.md` of a run directory: when and where it ran, the results table (mean ± sd over the
//! seeds), frozen encoders, one verdict per seed claim, and the PNG plots it embeds.

use super::difference_chart::{self, DifferenceRow};
use super::plots::{Chart, Series, Style, write_png};
use super::run_dir::{MethodRuns, RunRecord};
use super::stats::{format_mean_sd, mean_sd};
use super::verdicts::{ALPHA, CONFIDENCE, POWER, Verdict, budget_words, claims, judge, judge_against};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The report's sections.
pub struct Report {
    /// "Made <date> on <CPU>".
    pub provenance: String,
    /// Results, frozen encoders and verdicts (Markdown).
    pub body: String,
    /// The plots, embedded (Markdown).
    pub plots: String,
}

impl Report {
    /// The whole `report.md` of `dir`.
    pub fn full(&self, dir: &Path) -> String {
        format!("# kdkit report: {}\n\n{}\n\n{}{}", dir.display(), self.provenance, self.body, self.plots)
    }
}

/// Markers of the README section `--readme` rewrites.
pub const README_BEGIN: &str = "<!-- kd-report:begin -->";
/// End marker.
pub const README_END: &str = "<!-- kd-report:end -->";

/// Writes `<dir>/report.md` and `<dir>/plots/*.png`; returns the report.
pub fn write_report(dir: &Path, methods: &[MethodRuns]) -> Result<Report> {
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).with_context(|| format!("creating {}", plots_dir.display()))?;
    let mut text = String::new();
    let classifiers: Vec<&MethodRuns> = methods.iter().filter(|m| !m.runs.iter().any(RunRecord::is_encoder)).collect();
    let encoders: Vec<&MethodRuns> = methods.iter().filter(|m| m.runs.iter().all(RunRecord::is_encoder)).collect();
    if !classifiers.is_empty() {
        text.push_str("## Results\n\n");
        text.push_str(&results_table(&classifiers));
    }
    if !encoders.is_empty() {
        text.push_str("\n## Frozen encoders (kNN and linear probe)\n\n");
        text.push_str(&encoder_table(&encoders));
    }
    let (verdicts, differences) = verdicts_section(methods);
    text.push_str(&verdicts);
    let mut plots = String::new();
    let charts = charts(methods);
    if !charts.is_empty() {
        plots.push_str("\n## Plots\n\n");
    }
    for (file, chart) in charts {
        let path = plots_dir.join(file);
        write_png(&chart, &path).with_context(|| format!("writing {}", path.display()))?;
        let _ = writeln!(plots, "![{}](plots/{file})\n", chart.title);
    }
    if !differences.is_empty() {
        let path = plots_dir.join("differences.png");
        difference_chart::write_png(&differences, &path).with_context(|| format!("writing {}", path.display()))?;
        if plots.is_empty() {
            plots.push_str("\n## Plots\n\n");
        }
        let _ = writeln!(plots, "![{}](plots/differences.png)\n", difference_chart::TITLE);
    }
    let report = Report { provenance: provenance(), body: text, plots };
    kd_common::atomic::write_bytes(&dir.join("report.md"), report.full(dir).as_bytes())?;
    Ok(report)
}

/// The verdicts: a table of each comparison's numbers, then per claim its word with the reason,
/// the means and both budgets; with the rows of the difference chart (primary controls).
fn verdicts_section(methods: &[MethodRuns]) -> (String, Vec<DifferenceRow>) {
    let mut text = format!(
        "\n## Verdicts\n\nEach seed paper's claim, tested over the student seeds: the difference treatment - control \
         with its {level:.0}% confidence interval (Welch), the one-sided p of the claimed direction, Hedges' g, and the \
         minimum detectable difference beyond the claim's margin (alpha {ALPHA:.2} two-sided, power {POWER}). \
         **reproduced**: the interval lies above the margin; **contradicted**: it lies below (or the claimed speed is \
         missing); **inconclusive**: neither (the reason is given). Secondary rows compare with a further control and \
         carry no verdict. Each claim is a separate paper's and is tested on its own (no correction for multiple \
         comparisons).\n\n\
         | claim | treatment - control | difference (points) | {level:.0}% CI | one-sided p | Hedges' g | min. detectable \
         | verdict |\n|---|---|---|---|---|---|---|---|\n",
        level = 100.0 * CONFIDENCE,
    );
    let mut notes = String::new();
    let mut rows = Vec::new();
    for claim in claims(methods) {
        let primary = judge(&claim, methods);
        let secondary: Vec<Verdict> = claim.secondary.iter().map(|c| judge_against(&claim, c, methods)).collect();
        for (verdict, is_primary) in std::iter::once((&primary, true)).chain(secondary.iter().map(|v| (v, false))) {
            let number = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "-".to_string(), f);
            let d = verdict.difference.as_ref();
            let _ = writeln!(
                text,
                "| {}{} | {} - {} | {} | {} | {} | {} | {} | {} |",
                claim.name,
                if is_primary { "" } else { " (secondary)" },
                claim.treatment,
                verdict.control,
                number(d.map(|d| d.mean), |v| format!("{v:+.2}")),
                d.and_then(|d| d.interval).map_or_else(|| "-".into(), |(l, h)| format!("[{l:+.2}, {h:+.2}]")),
                number(d.and_then(|d| d.p), |v| if v < 0.001 { "< 0.001".into() } else { format!("{v:.3}") }),
                number(d.and_then(|d| d.hedges_g), |v| format!("{v:.2}")),
                number(d.and_then(|d| d.minimum_detectable), |v| format!("{v:.2}")),
                if is_primary { format!("**{}**", verdict.outcome.word()) } else { "-".into() },
            );
        }
        let _ = write!(
            notes,
            "- **{}** ({}; claim: difference > {:+.1}): **{}**: {}.",
            claim.name,
            claim.statement,
            claim.margin,
            primary.outcome.word(),
            primary.reason
        );
        for (i, verdict) in std::iter::once(&primary).chain(&secondary).enumerate() {
            if verdict.evidence.is_empty() {
                continue;
            }
            let _ = write!(notes, " {}{}", if i == 0 { "" } else { "Secondary: " }, verdict.evidence);
            if let Some(budgets) = budget_words(verdict, &claim.treatment) {
                let _ = write!(notes, "; {budgets}");
            }
            notes.push('.');
        }
        notes.push('\n');
        if let Some(d) = &primary.difference {
            rows.push(DifferenceRow {
                label: claim.name.to_string(),
                difference: d.mean,
                interval: d.interval,
                margin: claim.margin,
            });
        }
    }
    text.push('\n');
    text.push_str(&notes);
    (text, rows)
}

/// Rewrites the section between [`README_BEGIN`] and [`README_END`] of `readme` with the
/// report's provenance, tables and verdicts (headings one level down); the plots stay in the
/// run directory's `report.md`.
pub fn update_readme(readme: &Path, dir: &Path, report: &Report) -> Result<()> {
    let text = std::fs::read_to_string(readme).with_context(|| format!("reading {}", readme.display()))?;
    let (Some(begin), Some(end)) = (text.find(README_BEGIN), text.find(README_END)) else {
        anyhow::bail!("{}: no {README_BEGIN} ... {README_END} section to rewrite", readme.display());
    };
    anyhow::ensure!(begin < end, "{}: {README_END} comes before {README_BEGIN}", readme.display());
    // Second-level headings, line by line (a second `replace` over the text would also rewrite
    // the `#### ` the first one wrote).
    let body: String = report
        .body
        .lines()
        .map(|line| match line.strip_prefix("## ") {
            Some(heading) => format!("#### {heading}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    let section = format!(
        "{README_BEGIN}\n<!-- written by `kd-report --run-dir {} --readme`; do not edit by hand -->\n\n{} The plots are in \
         `{}/report.md`.\n\n{body}\n",
        dir.display(),
        report.provenance,
        dir.display()
    );
    let updated = format!("{}{section}{}", &text[..begin], &text[end..]);
    kd_common::atomic::write_bytes(readme, updated.as_bytes())?;
    Ok(())
}

/// "Made <date> on <CPU> (<n> cores)".
fn provenance() -> String {
    let cpu = crate::shared::machine::cpu_model().unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("Made {} on {cpu} ({cores} cores).", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"))
}

/// `mean ± sd` of `f` over a method's runs, "-" when a run lacks it.
fn column(method: &MethodRuns, f: impl Fn(&RunRecord) -> Option<f64>, decimals: usize) -> String {
    method.all(f).map_or_else(|| "-".into(), |values| format_mean_sd(&values, decimals))
}

/// The short name of a teacher checkpoint: its run directory (`runs/quick/teacher/model.safetensors`
/// -> `teacher`), or the file stem for files that share a directory (pruned checkpoints).
fn checkpoint_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = path.parent().and_then(|p| p.file_name()).map(|p| p.to_string_lossy().into_owned());
    match parent {
        Some(parent) if stem == "model" => parent,
        Some(parent) => format!("{parent}/{stem}"),
        None => stem,
    }
}

/// Bytes per crop of an FKD label file (file size over stored crops).
pub fn label_bytes_per_crop(path: &Path) -> Option<f64> {
    let (_, meta) = kd_datasets::soft_labels::file::open_complete(path).ok()?;
    let size = std::fs::metadata(path).ok()?.len() as f64;
    Some(size / (meta.num_images * meta.crops_per_image).max(1) as f64)
}

fn teacher_cell(run: &RunRecord) -> String {
    if let Some(labels) = run.label_file() {
        return format!("labels: {}", labels.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default());
    }
    let teachers: Vec<String> = run.teachers().iter().map(|t| checkpoint_name(t)).collect();
    if teachers.is_empty() { "-".into() } else { teachers.join(" + ") }
}

fn results_table(methods: &[&MethodRuns]) -> String {
    let mut text = String::from(
        "| method | student | teacher | runs | top-1 (%) | top-5 (%) | NLL | ECE | agreement with teacher (%) \
         | train s | images/s | label bytes/crop |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for method in methods {
        let first = &method.runs[0];
        let arch = first.eval.get("arch").and_then(|a| a.as_str()).unwrap_or("?");
        let weights = first.eval_number("sparsity/nonzero_weights").map_or(String::new(), |w| format!(" ({w:.0} w)"));
        let label_bytes =
            first.label_file().and_then(|l| label_bytes_per_crop(&l)).map_or("-".into(), |b| format!("{b:.1}"));
        let _ = writeln!(
            text,
            "| {} | {arch}{weights} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {label_bytes} |",
            method.name,
            teacher_cell(first),
            method.runs.len(),
            column(method, |r| r.eval_number("top1"), 2),
            column(method, |r| r.eval_number("top5"), 2),
            column(method, |r| r.eval_number("nll"), 4),
            column(method, |r| r.eval_number("ece"), 4),
            column(method, |r| r.eval_number("agreement"), 2),
            column(method, |r| r.trained_number("train_seconds"), 0),
            column(method, |r| r.trained_number("train_images_per_s"), 0),
        );
    }
    text
}

fn encoder_table(methods: &[&MethodRuns]) -> String {
    let mut text = String::from(
        "| method | model | runs | kNN top-1 (%) | linear-probe top-1 (%) | train s |\n|---|---|---|---|---|---|\n",
    );
    for method in methods {
        let arch = method.runs[0].eval.get("arch").and_then(|a| a.as_str()).unwrap_or("?");
        let _ = writeln!(
            text,
            "| {} | {arch} | {} | {} | {} | {} |",
            method.name,
            method.runs.len(),
            column(method, |r| r.eval_number("knn_top1"), 2),
            column(method, |r| r.eval_number("linear_probe_top1"), 2),
            column(method, |r| r.trained_number("train_seconds"), 0),
        );
    }
    text
}

/// The mean of `f` over a method's runs, if every run has it.
fn mean_of(method: &MethodRuns, f: impl Fn(&RunRecord) -> Option<f64>) -> Option<f64> {
    method.all(f).map(|values| mean_sd(&values).0)
}

/// Global sparsity (%) of the first teacher a run learnt from: 0 for a dense teacher.
fn teacher_sparsity(run: &RunRecord) -> Option<f64> {
    let teacher: PathBuf = run.teachers().into_iter().next()?;
    let meta = kd_common::checkpoint::read_meta(&teacher).ok()?;
    Some(100.0 * meta.pruning.map_or(0.0, |p| p.global_sparsity))
}

/// Teachers of the chain (trained or pruned), as opposed to students.
fn is_teacher(name: &str) -> bool {
    name == "teacher" || name.starts_with("teacher-") || name.starts_with("pruned-")
}

/// The charts the runs allow (a chart without points is left out).
fn charts(methods: &[MethodRuns]) -> Vec<(&'static str, Chart)> {
    let curves = |column: &str, encoders: bool| -> Vec<Series> {
        methods
            .iter()
            .filter(|m| m.runs.iter().all(RunRecord::is_encoder) == encoders)
            .map(|m| Series { label: m.name.clone(), points: m.mean_curve(column) })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let students: Vec<&MethodRuns> =
        methods.iter().filter(|m| !is_teacher(&m.name) && !m.runs.iter().any(RunRecord::is_encoder)).collect();
    let point = |m: &MethodRuns, x: Option<f64>, y: Option<f64>| {
        x.zip(y).map(|p| Series { label: m.name.clone(), points: vec![p] })
    };
    let time: Vec<Series> = students
        .iter()
        .filter_map(|m| {
            point(m, mean_of(m, |r| r.trained_number("train_seconds")), mean_of(m, |r| r.eval_number("top1")))
        })
        .collect();
    let sparsity_points =
        |select: &dyn Fn(&MethodRuns) -> bool, x: &dyn Fn(&RunRecord) -> Option<f64>| -> Vec<(f64, f64)> {
            let mut points: Vec<(f64, f64)> = methods
                .iter()
                .filter(|m| select(m))
                .filter_map(|m| mean_of(m, x).zip(mean_of(m, |r| r.eval_number("top1"))))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            points
        };
    let pruned_students = |m: &MethodRuns| m.name == "kd" || m.name.starts_with("kd-pruned");
    let pruned_teachers = |m: &MethodRuns| m.name == "teacher" || m.name.starts_with("pruned-");
    let sparsity = vec![
        Series { label: "KD student".into(), points: sparsity_points(&pruned_students, &teacher_sparsity) },
        Series {
            label: "teacher".into(),
            points: sparsity_points(&pruned_teachers, &|r| r.eval_number("sparsity/global").map(|s| 100.0 * s)),
        },
    ];
    let labels: Vec<Series> = methods
        .iter()
        .filter_map(|m| {
            let bytes = m.runs[0].label_file().and_then(|l| label_bytes_per_crop(&l));
            point(m, bytes, mean_of(m, |r| r.eval_number("top1")))
        })
        .collect();
    let mut charts = vec![
        (
            "val-top1.png",
            Chart {
                title: "Validation accuracy per epoch".into(),
                x_label: "epoch".into(),
                y_label: "validation top-1 (%)".into(),
                series: curves("val_top1", false),
                style: Style::Lines,
            },
        ),
        (
            "top1-vs-time.png",
            Chart {
                title: "Test accuracy against training time".into(),
                x_label: "training time (s)".into(),
                y_label: "test top-1 (%)".into(),
                series: time,
                style: Style::Points,
            },
        ),
        (
            "top1-vs-sparsity.png",
            Chart {
                title: "Accuracy against teacher sparsity".into(),
                x_label: "teacher sparsity (%)".into(),
                y_label: "test top-1 (%)".into(),
                series: sparsity.into_iter().filter(|s| s.points.len() > 1).collect(),
                style: Style::Lines,
            },
        ),
        (
            "top1-vs-label-bytes.png",
            Chart {
                title: "FKD student accuracy against label storage".into(),
                x_label: "label bytes per crop".into(),
                y_label: "test top-1 (%)".into(),
                series: labels,
                style: Style::Points,
            },
        ),
        (
            "knn-per-epoch.png",
            Chart {
                title: "kNN accuracy per epoch (frozen encoders)".into(),
                x_label: "epoch".into(),
                y_label: "validation kNN top-1 (%)".into(),
                series: curves("val_knn_top1", true),
                style: Style::Lines,
            },
        ),
    ];
    charts.retain(|(_, chart)| !chart.series.is_empty());
    charts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_section_is_rewritten_between_its_markers() {
        let dir = tempfile::tempdir().unwrap();
        let readme = dir.path().join("README.md");
        let before = format!("intro\n{README_BEGIN}\nold numbers\n{README_END}\nrest\n");
        std::fs::write(&readme, before).unwrap();
        let report = Report {
            provenance: "Made today.".into(),
            body: "## Results\n\n| a |\n\n## Verdicts\n\n- x\n".into(),
            plots: "## Plots".into(),
        };
        update_readme(&readme, Path::new("runs/quick"), &report).unwrap();
        let after = std::fs::read_to_string(&readme).unwrap();
        assert!(after.starts_with("intro\n<!-- kd-report:begin -->\n"), "{after}");
        assert!(after.ends_with("<!-- kd-report:end -->\nrest\n"), "{after}");
        assert!(after.contains("Made today.") && after.contains("#### Results") && after.contains("#### Verdicts"));
        assert!(!after.contains("old numbers") && !after.contains("## Plots"), "{after}");
        assert!(!after.contains("##### "), "headings two levels down, not more: {after}");
        std::fs::write(&readme, "no markers").unwrap();
        assert!(update_readme(&readme, Path::new("r"), &report).unwrap_err().to_string().contains("kd-report:begin"));
    }

    #[test]
    fn checkpoints_are_named_by_their_run() {
        assert_eq!(checkpoint_name(Path::new("runs/quick/teacher/model.safetensors")), "teacher");
        assert_eq!(
            checkpoint_name(Path::new("runs/quick/prune/model-remaining-0.210.safetensors")),
            "prune/model-remaining-0.210"
        );
    }
}

//! `kd-seed`: SEED self-supervised distillation.
use clap::Parser;

fn main() -> std::process::ExitCode {
    kd_tools::shared::cli::main_with(|| kd_tools::seed::run(kd_tools::seed::Args::parse()))
}

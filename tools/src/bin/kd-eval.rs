//! `kd-eval`: metrics of a checkpoint on a dataset split.
use clap::Parser;

fn main() -> std::process::ExitCode {
    kd_tools::shared::cli::main_with(|| kd_tools::eval::run(kd_tools::eval::Args::parse()))
}

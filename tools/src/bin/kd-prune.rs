//! `kd-prune`: iterative magnitude pruning with learning-rate rewinding; `derive-student`.
use clap::Parser;

fn main() -> std::process::ExitCode {
    kd_tools::shared::cli::main_with(|| kd_tools::prune::run(kd_tools::prune::Args::parse()))
}

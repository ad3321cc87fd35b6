//! `kd-bench`: training and data-loading throughput.
use clap::Parser;

fn main() -> std::process::ExitCode {
    kd_tools::shared::cli::main_with(|| kd_tools::bench::run(kd_tools::bench::Args::parse()))
}

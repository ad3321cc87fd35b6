//! `kd-report`: a Markdown table of `kd-eval` results.
use clap::Parser;

fn main() -> std::process::ExitCode {
    kd_tools::shared::cli::main_with(|| kd_tools::report::run(kd_tools::report::Args::parse()))
}

//! `kd-distill`: see `kd_tools::distill`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    kd_tools::shared::cli::main_with(|| kd_tools::distill::run(kd_tools::distill::config::Args::parse()))
}

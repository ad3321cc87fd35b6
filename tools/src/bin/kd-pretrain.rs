//! `kd-pretrain`: supervised training of a teacher or a baseline student.
use clap::Parser;

fn main() -> std::process::ExitCode {
    kd_tools::shared::cli::main_with(|| kd_tools::pretrain::run(kd_tools::pretrain::Args::parse()))
}

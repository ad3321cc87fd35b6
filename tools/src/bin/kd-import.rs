//! `kd-import`: a PyTorch or safetensors state dict as a kdkit checkpoint.
use clap::Parser;

fn main() -> std::process::ExitCode {
    kd_tools::shared::cli::main_with(|| kd_tools::import::run(kd_tools::import::Args::parse()))
}

//! `kd-pack-labels`: FKD region-level soft labels packed into one HDF5 file.
use clap::Parser;

fn main() -> std::process::ExitCode {
    kd_tools::shared::cli::main_with(|| kd_tools::pack_labels::run(kd_tools::pack_labels::Args::parse()))
}

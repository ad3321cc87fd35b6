//! `kd-bench`: training and data-loading throughput.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = kd_tools::bench::Args::parse();
    kd_tools::shared::cli::main_with_threads(args.threads, || kd_tools::bench::run(args))
}

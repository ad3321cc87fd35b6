//! `tracing` to stderr, with the level set by `-v`/`-q` and overridden by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `verbosity` is the number of `-v` minus the number of `-q`:
/// -1 and below show warnings only, 0 shows info, 1 debug, 2 and above trace.
pub fn init(verbosity: i8) {
    let level = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // kdkit's own crates at `level`, the libraries below at warn unless -vv.
    let default = if verbosity >= 2 { level.to_string() } else { format!("warn,kd={level}") };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::env::var_os("NO_COLOR").is_none() && is_terminal_stderr())
        .try_init();
}

fn is_terminal_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

//! Progress bars for long jobs: drawn on stderr when it is a terminal, hidden when the run is
//! quiet (`-q`), when stderr is not a terminal (CI, pipes) or when `KD_NO_PROGRESS` is set.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Whether bars are drawn at all; decided once per process by [`set_enabled`].
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns bars off for this process (for `-q`).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

fn visible() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
        && std::env::var_os("KD_NO_PROGRESS").is_none()
        && std::io::stderr().is_terminal()
}

/// A bar of `len` steps labelled `what` (for example `epoch 3/30`).
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), draw_target());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta}) {msg}",
        )
        .expect("progress template should be valid"),
    );
    bar.set_prefix(what.to_string());
    bar
}

fn draw_target() -> ProgressDrawTarget {
    if visible() { ProgressDrawTarget::stderr_with_hz(4) } else { ProgressDrawTarget::hidden() }
}

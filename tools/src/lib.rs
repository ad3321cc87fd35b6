//! kd-tools: the kdkit command-line tools. Each tool's code is one folder (`pretrain/`,
//! `distill/`, `pack_labels/`, `eval/`, `import/`, `bench/`, `report/`), and its binary in
//! `src/bin/` is a thin shim over it; what the tools share lives in [`shared`].

/// `println!` for a tool's data on stdout, returning the write's error instead of panicking when
/// the reader has gone (`kd-eval ... | head -n1`): `shared::cli::main_with` then exits 0.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `print!` for a tool's data on stdout, like [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

pub mod bench;
pub mod distill;
pub mod eval;
pub mod import;
pub mod pack_labels;
pub mod pretrain;
pub mod prune;
pub mod report;
pub mod seed;
pub mod shared;

//! kd-tools: the kdkit command-line tools. Each binary in `src/bin/` is a thin shim over one
//! module here; shared conventions live in [`cli`] and [`data`].

pub mod bench;
pub mod bench_distill;
pub mod bench_labels;
pub mod cli;
pub mod data;
pub mod distill;
pub mod eval;
pub mod finish;
pub mod pack_labels;
pub mod pretrain;
pub mod profiles;
pub mod report;
pub mod teachers;
pub mod train_args;

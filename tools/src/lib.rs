//! kd-tools: the kdkit command-line tools. Each tool's code is one folder (`pretrain/`,
//! `distill/`, `pack_labels/`, `eval/`, `import/`, `bench/`, `report/`), and its binary in
//! `src/bin/` is a thin shim over it; what the tools share lives in [`shared`].

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

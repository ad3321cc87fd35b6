//! Unstructured magnitude pruning (Han et al., NeurIPS 2015) as prune-then-distill uses it
//! (Park & No, ECCV 2022, §3.2): iterative rounds, each removing a fraction of the remaining
//! convolution and linear weights with the smallest magnitude, globally or per layer; masks kept
//! on the device while the network retrains; and the dense student shaped from the pruned
//! teacher's per-layer non-zero counts, optionally initialised from its strongest filters. The
//! `kd-prune` tool builds on these.

mod magnitude;
mod masked;
mod schedule;
mod student;
mod transplant;

pub use magnitude::{Scope, complete_masks, prune_round};
pub use masked::{DeviceMasks, Masked};
pub use schedule::rounds_for_target;
pub use student::{derive_student, vgg_student_plan};
pub use transplant::init_from_strongest_filters;

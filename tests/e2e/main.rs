//! End-to-end tests: the real binaries on tiny generated data. Backend-specific runs use wgpu
//! (`--device wgpu`, Mesa's lavapipe on CI machines without a GPU); input-validation runs use the
//! CPU since they fail before any tensor work.
//!
//! Modules:
mod fixture;
// kd-pretrain: training, checkpoint, resume after kill, bad input.
mod pretrain;
// kd-eval: metrics JSON, predictions CSV, bad input.
mod eval;
// --device handling: missing drivers give an error, not a panic.
mod devices;
// kd-pack-labels: packing, geometry, resume, shards, bad input.
mod pack_labels;
// kd-distill: online KD, FKD, MEAL V2, SSLD, resume, bad input.
mod distill;
// kd-import: PyTorch and safetensors teachers, predictions against PyTorch's, use as teacher.
mod import;
// kd-prune: rounds, resume inside a round, exact zeros, derive-student, bad input.
mod prune;
// MoCo v2 pretraining: kNN monitor, resume with the queue, bad input.
mod moco;
// kd-seed: SEED from MoCo and supervised teachers, queue resume, dataset bank, bad input.
mod seed;
// Hostile input: exit 2 naming the file, arguments checked first, no Vulkan noise.
mod hostile;
// kd-report --run-dir: report.md with the results table, verdicts and PNG plots.
mod report;
// torchvision/timm/MoCo teachers imported and used by every tool on a JPEG folder.
mod imagenet_families;
// ImageNet evaluation (Resize 256, CenterCrop 224) and an imported ResNet-50 against torchvision.
mod imagenet_eval;
// The seeds' recipes (make PROFILE=imagenet-fkd ... cifar100-ptd) on generated data.
mod recipes;
// The Makefile chain on a generated image folder: every stage, the report, interrupt and rerun.
mod make_chain;

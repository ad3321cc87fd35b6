#!/usr/bin/env bash
# `make bench-torch`: training images/s of kdkit, PyTorch eager and kdkit on the unpatched
# burn-flex 0.22.1 (and torchvision's networks at 224 px against PyTorch), side by side in one run (interleaved rounds, same models, batch sizes and
# thread count). Builds the unpatched variant into target/stock-flex on first use, and installs
# PyTorch with scripts/setup-torch.sh when the Python has none. Extra arguments go to kd-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
python=${PYTHON:-python3}
stock=target/stock-flex
if ! "$python" -c 'import torch' 2>/dev/null; then
  scripts/setup-torch.sh
  python=$(scripts/setup-torch.sh --print-python)
fi
scripts/patch-vendor.sh pristine burn-flex "$stock/burn-flex-src"
# kdkit's fused operations need the patched crate: the baseline builds without them.
cargo build --quiet -p kd-tools --bin kd-bench --no-default-features --features flex-unfused \
  --target-dir "$stock" --config "patch.crates-io.burn-flex.path=\"$PWD/$stock/burn-flex-src\""
cargo build --quiet --bin kd-bench
exec target/debug/kd-bench --device cpu --threads "$threads" --pytorch "$python" \
  --baseline-bin "$stock/debug/kd-bench" --sections train,distill,imagenet,jpeg "$@"

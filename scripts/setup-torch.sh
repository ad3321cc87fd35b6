#!/usr/bin/env bash
# PyTorch for `make bench-torch` and `make test-pytorch` only (nothing else in kdkit needs it):
# Debian's python3-torch and python3-torchvision, the CPU builds. `--print-python` prints the interpreter that imports it.
set -euo pipefail
if [ "${1:-}" = "--print-python" ]; then
  for python in "${PYTHON:-python3}" /usr/bin/python3; do
    if "$python" -c 'import torch' 2>/dev/null; then echo "$python"; exit 0; fi
  done
  echo "no Python here imports torch" >&2
  exit 1
fi
if /usr/bin/python3 -c 'import torch, torchvision' 2>/dev/null; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
$sudo apt-get install -y -qq python3-torch python3-torchvision >/dev/null
/usr/bin/python3 -c 'import torch, torchvision; print("PyTorch", torch.__version__, "torchvision", torchvision.__version__)'

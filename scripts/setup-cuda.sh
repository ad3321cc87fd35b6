#!/usr/bin/env bash
# Offline build of Burn's `cuda` feature. cubecl-cuda depends on cubecl-llvm, whose build script
# downloads an LLVM 23.1 bundle ("tracel-llvm"). Without network we point it at Debian's LLVM 22:
# a directory laid out like the bundle (bin, lib, include, share -> /usr/lib/llvm-22/...) with the
# bundle's "installed" sentinel, found through XDG_DATA_HOME. Cargo calls that build with the
# `cuda` feature must export XDG_DATA_HOME=target/llvm-shim (the Makefile does).
# A build made this way ran the unit tests and a training chain on an NVIDIA H200 (docs/devices.md).
set -euo pipefail
cd "$(dirname "$0")/.."
llvm=/usr/lib/llvm-22
[[ -x "$llvm/bin/llvm-config" ]] || { echo "error: $llvm not found; run scripts/setup.sh --cuda" >&2; exit 2; }
shim="$PWD/target/llvm-shim/tracel/tracel-llvm-23.1.0-4"
mkdir -p "$shim"
for d in bin lib include share; do ln -sfn "$llvm/$d" "$shim/$d"; done
touch "$shim/.tracel-llvm-installed"
echo "LLVM shim ready: XDG_DATA_HOME=$PWD/target/llvm-shim" >&2

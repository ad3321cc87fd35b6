#!/usr/bin/env bash
# Installs what kdkit needs on a Debian/Ubuntu machine (run as root, or with sudo available):
#   scripts/setup.sh          Vulkan (software fallback for wgpu), HDF5, libjpeg-turbo, Fashion-MNIST
#   scripts/setup.sh --cuda   also LLVM 22 for the `cuda` feature's offline build (see setup-cuda.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(mesa-vulkan-drivers libvulkan1 libhdf5-dev hdf5-tools libturbojpeg0-dev dataset-fashion-mnist pkg-config)
if [[ "${1:-}" == "--cuda" ]]; then
  packages+=(llvm-22-dev libpolly-22-dev libzstd-dev libz3-dev)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "${1:-}" == "--cuda" ]]; then
  scripts/setup-cuda.sh
fi

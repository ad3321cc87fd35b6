#!/usr/bin/env bash
# vendor/<crate> = a crates.io release + patches/<crate>/*.patch, one patch per feature, each
# written to be offered upstream on its own; the workspace uses them through [patch.crates-io].
#
#   burn-flex 0.22.1   Burn's CPU backend: one patch per kernel family (convolution, batch norm
#                      alone and fused with ReLU, 2x2 max pool, parallel elementwise loops) plus
#                      one that wires them into the module tree and ModuleOps
#   rayon-core 1.13.0  a pool option to keep idle workers spinning before they sleep
#
#   scripts/patch-vendor.sh apply [CRATE]     rebuild vendor/<crate> from the registry's .crate file
#   scripts/patch-vendor.sh diff [CRATE]      rewrite patches/<crate>/ from edits made in vendor/<crate>
#   scripts/patch-vendor.sh check [CRATE]     fail unless vendor/<crate> is exactly source + patches
#   scripts/patch-vendor.sh pristine CRATE DIR   unpack the unpatched crate into DIR (benchmarks)
#
# Without CRATE, apply/diff/check handle every crate. The .crate file is the one cargo keeps in
# ~/.cargo/registry/cache (fetched here from crates.io with a throwaway manifest when it is
# missing), so the result does not depend on this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
all_crates="burn-flex rayon-core"
version_of() {
  case "$1" in
    burn-flex) echo 0.22.1 ;;
    rayon-core) echo 1.13.0 ;;
    *)
      echo "error: no vendored crate '$1' (have: $all_crates)" >&2
      exit 2
      ;;
  esac
}
# The patch file of each changed source file of crate $name: its feature, else the wiring.
family_of() {
  case "$name:$1" in
    burn-flex:src/ops/conv2d_*) echo 0002-conv2d-direct-and-gemm-kernels ;;
    burn-flex:src/ops/batch_norm.rs) echo 0003-batch-norm-kernels ;;
    burn-flex:src/ops/batch_norm_relu.rs) echo 0006-batch-norm-relu-kernel ;;
    burn-flex:src/ops/max_pool2x2.rs | burn-flex:src/ops/pool.rs) echo 0004-max-pool-2x2-kernel ;;
    burn-flex:src/ops/elementwise_parallel.rs | burn-flex:src/ops/unary.rs | burn-flex:src/ops/binary.rs | burn-flex:src/simd/portable.rs)
      echo 0005-parallel-elementwise-loops ;;
    burn-flex:*) echo 0001-kernel-wiring ;;
    rayon-core:*) echo 0001-spin-before-sleep ;;
  esac
}
mode=${1:-check}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Sets name, version, crate (name-version), vendor and patches for crate $1, in a fresh $work/$1.
select_crate() {
  name=$1
  version=$(version_of "$name")
  crate=$name-$version
  vendor=vendor/$name
  patches=patches/$name
  mkdir -p "$work/$name"
}

crate_file() {
  local registry=${CARGO_HOME:-$HOME/.cargo}/registry/cache
  local found
  found=$(ls "$registry"/*/"$crate.crate" 2>/dev/null | head -n 1 || true)
  if [ -z "$found" ]; then
    mkdir -p "$work/fetch/src"
    printf '[package]\nname = "fetch-vendored"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = { version = "=%s", default-features = false }\n' \
      "$name" "$version" >"$work/fetch/Cargo.toml"
    touch "$work/fetch/src/lib.rs"
    cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml" >&2
    found=$(ls "$registry"/*/"$crate.crate" | head -n 1)
  fi
  echo "$found"
}

# The crate's published sources, unpacked into $work/$name/$crate.
unpack() {
  tar -xzf "$(crate_file)" -C "$work/$name"
}

# The patched tree, built into $work/$name/patched.
build_patched() {
  unpack
  cp -r "$work/$name/$crate" "$work/$name/patched"
  for p in "$patches"/*.patch; do
    patch --quiet --no-backup-if-mismatch -p1 -d "$work/$name/patched" <"$p"
  done
}

apply() {
  build_patched
  rm -rf "$vendor"
  mkdir -p vendor
  cp -r "$work/$name/patched" "$vendor"
  echo "rebuilt $vendor from $crate + $(ls "$patches"/*.patch | wc -l) patch file(s)"
}

diff_patches() {
  local dir=$work/$name
  unpack
  mkdir -p "$patches"
  # Upstream formats with rustfmt's defaults, not with this workspace's rustfmt.toml.
  : >"$dir/rustfmt.toml"
  changed=$( (diff -rq --exclude=target "$dir/$crate" "$vendor" || true) | sed -n 's#^Files .* and \(.*\.rs\) differ$#\1#p;s#^Only in \('"$vendor"'[^:]*\): \(.*\.rs\)$#\1/\2#p')
  edition=$(sed -n 's/^edition = "\(.*\)"$/\1/p' "$vendor/Cargo.toml")
  [ -z "$changed" ] || rustfmt --edition "$edition" --config-path "$dir/rustfmt.toml" $changed
  (cd "$dir" && ln -s "$OLDPWD/$vendor" b && mv "$crate" a &&
    diff -ruN --exclude=target a b/ || true) >"$dir/new.patch"
  # no timestamps, no doubled slashes: the patches only change when the code does
  sed -i -e 's#^\(---\|+++\) \([ab]\)//*\([^\t]*\)\t.*#\1 \2/\3#' "$dir/new.patch"
  # one file's diff starts at its `diff -ruN` line; each goes to its family's patch
  mkdir -p "$dir/split"
  out=/dev/null
  while IFS= read -r line; do
    case "$line" in
      "diff -ruN "*)
        file=${line##* b/}
        out="$dir/split/$(family_of "$file").patch"
        ;;
    esac
    printf '%s\n' "$line" >>"$out"
  done <"$dir/new.patch"
  rm -f "$patches"/*.patch
  cp "$dir"/split/*.patch "$patches"/
  for p in "$patches"/*.patch; do
    echo "wrote $p ($(grep -c '^+++ ' "$p") files)"
  done
}

check() {
  build_patched
  if ! diff -r --exclude=target "$work/$name/patched" "$vendor" >"$work/$name/difference"; then
    cat "$work/$name/difference" >&2
    echo "error: $vendor differs from $crate + $patches (run scripts/patch-vendor.sh diff $name or apply $name)" >&2
    exit 1
  fi
  echo "$vendor = $crate + $patches: ok"
}

case "$mode" in
  apply | diff | check)
    for c in ${2:-$all_crates}; do
      select_crate "$c"
      case "$mode" in
        apply) apply ;;
        diff) diff_patches ;;
        check) check ;;
      esac
    done
    ;;
  pristine)
    select_crate "${2:?usage: $0 pristine CRATE DIR}"
    target=${3:?usage: $0 pristine CRATE DIR}
    unpack
    rm -rf "$target"
    mkdir -p "$(dirname "$target")"
    cp -r "$work/$name/$crate" "$target"
    ;;
  *)
    echo "usage: $0 apply|diff|check [CRATE] | pristine CRATE DIR" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# vendor/burn-flex = burn-flex 0.22.1 from crates.io + patches/burn-flex/*.patch, one patch per
# kernel family (convolution, batch norm, 2x2 max pool, parallel elementwise loops) plus one that
# wires them into the module tree and ModuleOps; the workspace uses it through [patch.crates-io].
#
#   scripts/patch-burn-flex.sh apply   rebuild vendor/burn-flex from the registry's .crate file
#   scripts/patch-burn-flex.sh diff    rewrite patches/burn-flex/ from edits made in vendor/burn-flex
#   scripts/patch-burn-flex.sh check   fail unless vendor/burn-flex is exactly source + patches
#   scripts/patch-burn-flex.sh pristine DIR   unpack the unpatched crate into DIR (benchmarks)
#
# The .crate file is the one cargo keeps in ~/.cargo/registry/cache (fetched here from crates.io
# with a throwaway manifest when it is missing), so the result does not depend on this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.22.1
crate=burn-flex-$version
vendor=vendor/burn-flex
# The patch file of each changed source file: its kernel family, else the wiring.
family_of() {
  case "$1" in
    src/ops/conv2d_*) echo 0002-conv2d-direct-and-gemm-kernels ;;
    src/ops/batch_norm.rs) echo 0003-batch-norm-kernels ;;
    src/ops/batch_norm_relu.rs) echo 0006-batch-norm-relu-kernel ;;
    src/ops/max_pool2x2.rs | src/ops/pool.rs) echo 0004-max-pool-2x2-kernel ;;
    src/ops/elementwise_parallel.rs | src/ops/unary.rs | src/ops/binary.rs | src/simd/portable.rs)
      echo 0005-parallel-elementwise-loops ;;
    *) echo 0001-kernel-wiring ;;
  esac
}
mode=${1:-check}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

crate_file() {
  local registry=${CARGO_HOME:-$HOME/.cargo}/registry/cache
  local found
  found=$(ls "$registry"/*/"$crate.crate" 2>/dev/null | head -n 1 || true)
  if [ -z "$found" ]; then
    mkdir -p "$work/fetch/src"
    printf '[package]\nname = "fetch-burn-flex"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nburn-flex = { version = "=%s", default-features = false }\n' \
      "$version" >"$work/fetch/Cargo.toml"
    touch "$work/fetch/src/lib.rs"
    cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml" >&2
    found=$(ls "$registry"/*/"$crate.crate" | head -n 1)
  fi
  echo "$found"
}

# The crate's published sources, unpacked into $work/$crate.
unpack() {
  tar -xzf "$(crate_file)" -C "$work"
}

# The patched tree, built into $work/patched.
build_patched() {
  unpack
  cp -r "$work/$crate" "$work/patched"
  for p in patches/burn-flex/*.patch; do
    patch --quiet --no-backup-if-mismatch -p1 -d "$work/patched" <"$p"
  done
}

case "$mode" in
  apply)
    build_patched
    rm -rf "$vendor"
    mkdir -p vendor
    cp -r "$work/patched" "$vendor"
    echo "rebuilt $vendor from $crate + $(ls patches/burn-flex/*.patch | wc -l) patch file(s)"
    ;;
  diff)
    unpack
    mkdir -p patches/burn-flex
    # Upstream formats with rustfmt's defaults, not with this workspace's rustfmt.toml.
    : >"$work/rustfmt.toml"
    changed=$( (diff -rq --exclude=target "$work/$crate" "$vendor" || true) | sed -n 's#^Files .* and \(.*\.rs\) differ$#\1#p;s#^Only in \('"$vendor"'[^:]*\): \(.*\.rs\)$#\1/\2#p')
    [ -z "$changed" ] || rustfmt --edition 2024 --config-path "$work/rustfmt.toml" $changed
    (cd "$work" && ln -s "$OLDPWD/$vendor" b && mv "$crate" a &&
      diff -ruN --exclude=target a b/ || true) >"$work/new.patch"
    # no timestamps, no doubled slashes: the patches only change when the code does
    sed -i -e 's#^\(---\|+++\) \([ab]\)//*\([^\t]*\)\t.*#\1 \2/\3#' "$work/new.patch"
    # one file's diff starts at its `diff -ruN` line; each goes to its family's patch
    mkdir -p "$work/split"
    out=/dev/null
    while IFS= read -r line; do
      case "$line" in
        "diff -ruN "*)
          file=${line##* b/}
          out="$work/split/$(family_of "$file").patch"
          ;;
      esac
      printf '%s\n' "$line" >>"$out"
    done <"$work/new.patch"
    rm -f patches/burn-flex/*.patch
    cp "$work"/split/*.patch patches/burn-flex/
    for p in patches/burn-flex/*.patch; do
      echo "wrote $p ($(grep -c '^+++ ' "$p") files)"
    done
    ;;
  check)
    build_patched
    if ! diff -r --exclude=target "$work/patched" "$vendor" >"$work/difference"; then
      cat "$work/difference" >&2
      echo "error: $vendor differs from $crate + patches/burn-flex (run scripts/patch-burn-flex.sh diff or apply)" >&2
      exit 1
    fi
    echo "$vendor = $crate + patches/burn-flex: ok"
    ;;
  pristine)
    target=${2:?usage: $0 pristine DIR}
    unpack
    rm -rf "$target"
    mkdir -p "$(dirname "$target")"
    cp -r "$work/$crate" "$target"
    ;;
  *)
    echo "usage: $0 apply|diff|check|pristine DIR" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# vendor/burn-flex = burn-flex 0.22.1 from crates.io + patches/burn-flex/*.patch (our CPU
# convolution-backward, batch-norm and 2x2 max-pool kernels; the workspace uses it through [patch.crates-io]).
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
patch_file=patches/burn-flex/0001-conv2d-batch-norm-and-max-pool-kernels.patch
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
    # no timestamps, no doubled slashes: the patch only changes when the code does
    sed -i -e 's#^\(---\|+++\) \([ab]\)//*\([^\t]*\)\t.*#\1 \2/\3#' "$work/new.patch"
    mv "$work/new.patch" "$patch_file"
    echo "wrote $patch_file ($(grep -c '^+++ ' "$patch_file") files)"
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

#!/usr/bin/env bash
# Training smoke test on one device (`make smoke DEVICE=cuda`): a ResNet-20 teacher for 3 epochs,
# the same command again (must be a no-op), KD into the quick profile's student for 2 epochs, and
# the teacher evaluated on the device and on the CPU. Fails unless the teacher reaches 85% test
# top-1, the student 70% (chance is 10%), and the two evaluations agree within 0.2 points.
# Usage: scripts/smoke-device.sh DEVICE [OUT_DIR]; BIN (default target/debug) and DATA_DIR
# (default: the dataset's standard location) from the environment.
set -euo pipefail
device=${1:?usage: scripts/smoke-device.sh DEVICE [OUT_DIR]}
out=${2:-runs/smoke-${device//:/-}}
bin=${BIN:-target/debug}
data=(${DATA_DIR:+--data-dir "$DATA_DIR"})
args=(--profile quick --device "$device" --seed 0 "${data[@]}")
fail() { echo "smoke test on $device failed: $*" >&2; exit 1; }
# The "top1" field of a tool's JSON summary on stdout.
top1() { sed -n 's/^ *"\(test_\)\{0,1\}top1": \([0-9.]*\),\{0,1\}$/\2/p' | head -1; }

teacher=(--role teacher --arch resnet20 --epochs 3 --out "$out/teacher")
t=$("$bin/kd-pretrain" "${args[@]}" "${teacher[@]}" | top1)
"$bin/kd-pretrain" "${args[@]}" "${teacher[@]}" | grep -q '"already_complete": true' \
  || fail "rerunning the finished teacher was not a no-op"
s=$("$bin/kd-distill" kd "${args[@]}" --teacher "$out/teacher/model.safetensors" --epochs 2 --out "$out/kd" | top1)
on_device=$("$bin/kd-eval" "$out/teacher/model.safetensors" --device "$device" "${data[@]}" | top1)
on_cpu=$("$bin/kd-eval" "$out/teacher/model.safetensors" --device cpu "${data[@]}" | top1)
echo "teacher test top-1 $t% (evaluated on $device $on_device%, on the CPU $on_cpu%); KD student $s%"
awk -v t="$t" -v s="$s" -v a="$on_device" -v b="$on_cpu" 'BEGIN { d = a - b; if (d < 0) d = -d;
  exit !(t >= 85 && s >= 70 && d <= 0.2) }' || fail "below the thresholds above"
echo "smoke test on $device passed"

#!/usr/bin/env bash
# Training smoke test on one device (`make smoke DEVICE=cuda`): a ResNet-20 teacher for 3 epochs,
# the same command again (must be a no-op), KD into the quick profile's student for 2 epochs, and
# the teacher evaluated on the device and on the CPU. Fails unless the teacher reaches 85% test
# top-1, the student 70% (chance is 10%), and the two evaluations agree within 0.2 points.
# Usage: scripts/smoke-device.sh DEVICE [OUT_DIR]; BIN (default target/debug) and DATA_DIR
# (default: the dataset's standard location) from the environment. OUT_DIR (default
# runs/smoke-DEVICE) is emptied first, so that every run trains from scratch.
set -euo pipefail
device=${1:?usage: scripts/smoke-device.sh DEVICE [OUT_DIR]}
out=${2:-runs/smoke-${device//:/-}}
bin=${BIN:-target/debug}
data=()
[[ -n ${DATA_DIR:-} ]] && data=(--data-dir "$DATA_DIR")
args=(--profile quick --device "$device" --seed 0 ${data[@]+"${data[@]}"})
fail() { echo "smoke test on $device failed: $*" >&2; exit 1; }
# The "top1" (kd-eval) or "test_top1" (training tools) field of a JSON summary.
top1() { sed -n 's/^ *"\(test_\)\{0,1\}top1": \([0-9.]*\),\{0,1\}$/\2/p' <<<"$1" | head -1; }
run() { "$@" && return; local status=$?; fail "$(basename "$1") exited with status $status"; }

rm -rf "$out"
teacher=(--role teacher --arch resnet20 --epochs 3 --out "$out/teacher")
summary=$(run "$bin/kd-pretrain" "${args[@]}" "${teacher[@]}")
t=$(top1 "$summary")
summary=$(run "$bin/kd-pretrain" "${args[@]}" "${teacher[@]}")
grep -q '"already_complete": true' <<<"$summary" || fail "rerunning the finished teacher was not a no-op"
summary=$(run "$bin/kd-distill" kd "${args[@]}" --teacher "$out/teacher/model.safetensors" --epochs 2 --out "$out/kd")
s=$(top1 "$summary")
summary=$(run "$bin/kd-eval" "$out/teacher/model.safetensors" --device "$device" ${data[@]+"${data[@]}"})
on_device=$(top1 "$summary")
summary=$(run "$bin/kd-eval" "$out/teacher/model.safetensors" --device cpu ${data[@]+"${data[@]}"})
on_cpu=$(top1 "$summary")
for value in "$t" "$s" "$on_device" "$on_cpu"; do
  [[ -n $value ]] || fail "a tool's summary had no top-1 field"
done
echo "teacher test top-1 $t% (evaluated on $device $on_device%, on the CPU $on_cpu%); KD student $s%"
awk -v t="$t" -v s="$s" -v a="$on_device" -v b="$on_cpu" 'BEGIN { d = a - b; if (d < 0) d = -d;
  exit !(t >= 85 && s >= 70 && d <= 0.2) }' || fail "below the thresholds above"
echo "smoke test on $device passed"

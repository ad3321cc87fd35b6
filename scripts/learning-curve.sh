#!/usr/bin/env bash
# Learning curve of the quick profile's student, to choose its schedule: the baseline (labels
# only) and the KD student of the quick teacher, each trained for increasing schedules (every
# length its own warm-up and cosine decay, as `make EPOCHS=E` would run it), with validation
# top-1 at the end of each.
#
#   scripts/learning-curve.sh                        baseline at 3 5 10 20 40 epochs, KD at 5 10 20
#   BASELINE_EPOCHS="5 10 20 40" KD_EPOCHS="5 10 20" SEED=1 scripts/learning-curve.sh
#
# Plateau criterion: the shortest baseline schedule whose final validation top-1 is within
# TOLERANCE points (default 0.25, the seed-to-seed sd of the quick student) of the longest
# schedule's; when only the longest qualifies, no plateau was reached and the script says so. Writes OUT (default runs/curve): one run per method and length (<method>-e<E>/,
# resumable: a finished run is not redone), curve.csv (method, epochs, last and best validation
# top-1, test top-1, train seconds), and report.md with plots/ (kd-report --run-dir); prints the
# table and the chosen schedule. Two jobs side by side (baseline and KD), one thread each, as
# `make` runs on a 2-core CPU. TEACHER defaults to the quick profile's (made by `make` if absent).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/curve}
TEACHER=${TEACHER:-runs/quick/teacher/model.safetensors}
BASELINE_EPOCHS=${BASELINE_EPOCHS:-3 5 10 20 40}
KD_EPOCHS=${KD_EPOCHS:-5 10 20}
TOLERANCE=${TOLERANCE:-0.25}
DEVICE=${DEVICE:-auto}
SEED=${SEED:-0}
BIN=${BIN:-target/debug}
PYTHON=${PYTHON:-python3}

make build
[[ -f "$TEACHER" ]] || make "$TEACHER"
mkdir -p "$OUT"

# run NAME TOOL ARGS...: trains into OUT/NAME (the tool resumes or skips a finished run), then
# evaluates it; each output is written under a temporary name and renamed when complete.
run() {
  local name=$1 dir="$OUT/$1"
  shift
  RAYON_NUM_THREADS=1 "$@" --out "$dir" > "$OUT/$name.summary.tmp"
  mkdir -p "$dir" && mv "$OUT/$name.summary.tmp" "$dir/summary.json"
  if [[ ! -f "$dir/eval.json" ]]; then
    RAYON_NUM_THREADS=1 "$BIN/kd-eval" "$dir/model.safetensors" --device "$DEVICE" --reference "$TEACHER" > "$OUT/$name.eval.tmp"
    mv "$OUT/$name.eval.tmp" "$dir/eval.json"
  fi
}

common=(--profile quick --device "$DEVICE" --seed "$SEED")
(
  for e in $BASELINE_EPOCHS; do
    run "baseline-e$e" "$BIN/kd-pretrain" "${common[@]}" --role student --epochs "$e"
  done
) &
baseline=$!
(
  for e in $KD_EPOCHS; do
    run "kd-e$e" "$BIN/kd-distill" kd "${common[@]}" --teacher "$TEACHER" --epochs "$e"
  done
) &
kd=$!
wait "$baseline"
wait "$kd"

"$BIN/kd-report" --run-dir "$OUT" > /dev/null
"$PYTHON" - "$OUT" "$TOLERANCE" <<'EOF'
import csv, json, pathlib, re, sys

out, tolerance = pathlib.Path(sys.argv[1]), float(sys.argv[2])
rows = []
for run in sorted(out.iterdir()):
    m = re.fullmatch(r"(baseline|kd)-e(\d+)", run.name)
    if not m or not (run / "eval.json").is_file():
        continue
    metrics = list(csv.DictReader(open(run / "metrics.csv")))
    vals = [float(r["val_top1"]) for r in metrics if r.get("val_top1")]
    summary = json.load(open(run / "summary.json"))
    rows.append({
        "method": m[1], "epochs": int(m[2]),
        "last_val_top1": vals[-1], "best_val_top1": max(vals),
        "test_top1": json.load(open(run / "eval.json"))["top1"],
        "train_seconds": round(summary["train_seconds"], 1),
    })
rows.sort(key=lambda r: (r["method"], r["epochs"]))
with open(out / "curve.csv.tmp", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
(out / "curve.csv.tmp").rename(out / "curve.csv")
print("| method | epochs | last val top-1 (%) | best val top-1 (%) | test top-1 (%) | train s |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['method']} | {r['epochs']} | {r['last_val_top1']:.2f} | {r['best_val_top1']:.2f} "
          f"| {r['test_top1']:.2f} | {r['train_seconds']:.0f} |")
baseline = [r for r in rows if r["method"] == "baseline"]
longest = baseline[-1]
plateau = next(r for r in baseline if longest["last_val_top1"] - r["last_val_top1"] <= tolerance)
if plateau is longest:
    print(f"\nno plateau before the longest schedule ({longest['epochs']} epochs): the previous one is "
          f"more than {tolerance} points below it; add a longer schedule to BASELINE_EPOCHS")
else:
    print(f"\nplateau: {plateau['epochs']} epochs (baseline validation top-1 {plateau['last_val_top1']:.2f}, "
          f"within {tolerance} points of the {longest['epochs']}-epoch schedule's {longest['last_val_top1']:.2f})")
EOF

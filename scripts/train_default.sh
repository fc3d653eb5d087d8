#!/usr/bin/env bash
# Train a candidate default model on the rebuilt corpus, validated on held-out *sources*
# (see docs/model-card.md and docs/training.md).
#
#   bash scripts/train_default.sh                       # CPU recipe (2 cores)
#   DEVICE=cuda WORKERS=6 THREADS= bash scripts/train_default.sh   # GPU recipe
#
# Split: 5 source-grouped folds of corpus/manifest.csv (seed 0); fold 0 validates (early
# stopping, temperature and fading calibration), fold 1 is held out for the reported test
# scores, folds 2-4 train.  Composites on held-out photographs are not used.
#
# Env: CORPUS (default corpus, made by scripts/build_corpus.py), OUT (default runs/), NAME
# (default compact_lab), SPACE (lab), STEPS (3000), BATCH (16), CROP (160), DEVICE (auto),
# THREADS (1: on a shared 2-core machine one torch thread per run is faster), DROPOUT (0),
# WD (weight decay, 1e-2), LR (peak learning rate, default 2e-3), DEGRADE (0.3), PATIENCE (10 validations), VAL_EVERY (150),
# HIDDEN (h_fc1 width; the backbone's default, 128), CONTEXT (overview side of the image-level
# context, 0 = none), CONTEXT_DROPOUT, WEIGHTS (a CSV of per-image sampling weights, default none:
# uniform),
# WORKERS, PY (python with napari-colorize installed), RESUME (1: continue a killed run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CORPUS=${CORPUS:-corpus}
OUT=${OUT:-runs}
NAME=${NAME:-compact_lab}
PY=${PY:-.venv/bin/python}
THREADS=${THREADS-1}
mkdir -p "$OUT"
args=("$CORPUS/train" "$CORPUS/val" -o "$OUT/$NAME.safetensors" --backbone compact --space "${SPACE:-lab}"
      --steps "${STEPS:-3000}" --batch-size "${BATCH:-16}" --crop "${CROP:-160}" --scale 0.35 1.0
      --device "${DEVICE:-auto}" --weights "${WEIGHTS:-none}" --manifest "$CORPUS/manifest.csv" --val-fold 0/5 --hold-out 1
      --val-every "${VAL_EVERY:-150}" --val-images 48 --early-stop "${PATIENCE:-10}"
      --degrade "${DEGRADE:-0.3}" --dropout "${DROPOUT:-0}" --weight-decay "${WD:-1e-2}"
      --checkpoint-every 150 --no-progress)
[ -n "${RESUME:-}" ] && args+=(--resume) || args+=(--force)
[ -n "${WORKERS:-}" ] && args+=(--workers "$WORKERS")
[ -n "${LR:-}" ] && args+=(--lr "$LR")
[ -n "${HIDDEN:-}" ] && args+=(--hidden "$HIDDEN")
[ -n "${CONTEXT:-}" ] && args+=(--context "$CONTEXT")
[ -n "${CONTEXT_DROPOUT:-}" ] && args+=(--context-dropout "$CONTEXT_DROPOUT")
[ -n "$THREADS" ] && args+=(--threads "$THREADS")
"$PY" -m napari_colorize.cli_train "${args[@]}" > "$OUT/$NAME.out" 2>&1
tail -n 3 "$OUT/$NAME.out"

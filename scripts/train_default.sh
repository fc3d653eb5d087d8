#!/usr/bin/env bash
# Train the embedded default model from the rebuilt corpus (see docs/model-card.md).
#
#   bash scripts/train_default.sh                # CPU recipe (2 cores: ~85 min for hue_chroma)
#   DEVICE=cuda STEPS=4000 BATCH=32 CROP=224 WORKERS=6 bash scripts/train_default.sh   # GPU recipe
#
# Env: CORPUS (default /work/corpus, made by scripts/build_corpus.py), OUT (default runs/),
# SPACES (default "hue_chroma lab"; trained concurrently), STEPS, BATCH, CROP, WORKERS, DEVICE,
# PY (python with napari-colorize installed), TIME_LIMIT (seconds per run, 0 = none).
# The best space after calibration is then chosen with scripts/finalize_default.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CORPUS=${CORPUS:-/work/corpus}
OUT=${OUT:-runs}
SPACES=${SPACES:-hue_chroma lab}
STEPS=${STEPS:-1500}
BATCH=${BATCH:-16}
CROP=${CROP:-160}
DEVICE=${DEVICE:-auto}
PY=${PY:-.venv/bin/python}
TIME_LIMIT=${TIME_LIMIT:-0}
mkdir -p "$OUT"
pids=()
for space in $SPACES; do
  args=("$CORPUS/train" -o "$OUT/compact_$space.safetensors" --backbone compact --space "$space"
        --steps "$STEPS" --batch-size "$BATCH" --crop "$CROP" --device "$DEVICE"
        --weights "$CORPUS/manifest.csv" --val "$CORPUS/val" --val-every 200 --val-images 12
        --checkpoint-every 100 --no-progress)
  [ -n "${WORKERS:-}" ] && args+=(--workers "$WORKERS")
  if [ "$TIME_LIMIT" -gt 0 ]; then
    timeout "$TIME_LIMIT" "$PY" -m napari_colorize.cli_train "${args[@]}" > "$OUT/compact_$space.out" 2>&1 &
  else
    "$PY" -m napari_colorize.cli_train "${args[@]}" > "$OUT/compact_$space.out" 2>&1 &
  fi
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
tail -n 3 "$OUT"/*.out
exit "$status"

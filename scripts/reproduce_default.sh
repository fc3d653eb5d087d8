#!/usr/bin/env bash
# Reproduce the embedded default model from nothing, in one go: rebuild the corpus, train
# the shipped recipe, choose and calibrate on the validation sources, score on the test
# sources, then compare the result with the shipped weights (docs/model-card.md).
#
#   bash scripts/reproduce_default.sh                                         # CPU recipe (2 cores)
#   DEVICE=cuda WORKERS=6 THREADS= bash scripts/reproduce_default.sh   # GPU recipe
#
# Env: PY (python with napari-colorize installed, default .venv/bin/python), CORPUS (corpus),
# CACHE (where the Debian packages are downloaded; the builder's default, ~/.cache/napari-colorize/corpus),
# OUT (runs), NAME
# (default_repro); DEVICE, BATCH, CROP, WORKERS, THREADS go to scripts/train_default.sh.
# Writes OUT/NAME.safetensors (the run), OUT/NAME.shipped.safetensors (chosen and calibrated),
# OUT/NAME.finalize.json and OUT/NAME.log.  The CPU recipe is deterministic: on the same CPU
# and torch build it gives the shipped weights exactly; elsewhere the last step prints how far
# they are.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PY=${PY:-.venv/bin/python}
export CORPUS=${CORPUS:-corpus}
export OUT=${OUT:-runs}
export NAME=${NAME:-default_repro}
SHIPPED=src/napari_colorize/weights/default.safetensors
mkdir -p "$OUT"
log() { printf '==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
t0=$SECONDS

if [ -f "$CORPUS/manifest.csv" ]; then
    log "corpus: using $CORPUS (delete it to rebuild)"
else
    log "corpus: building $CORPUS"
    "$PY" scripts/build_corpus.py --out "$CORPUS" ${CACHE:+--cache "$CACHE"} > "$OUT/$NAME.corpus.log"
    tail -n 5 "$OUT/$NAME.corpus.log"
fi
log "corpus ready after $((SECONDS - t0)) s"

# The shipped recipe (the metadata of $SHIPPED records the same command).
log "training $OUT/$NAME.safetensors"
HIDDEN=64 DROPOUT=0.2 WD=5e-2 LR=5e-4 STEPS=1500 bash scripts/train_default.sh
log "trained after $((SECONDS - t0)) s"

log "choosing, calibrating (validation sources) and testing (test sources)"
"$PY" scripts/finalize_default.py "$OUT/$NAME.safetensors" --compare "$SHIPPED" \
    --ship "$OUT/$NAME.shipped.safetensors" --json "$OUT/$NAME.finalize.json" > "$OUT/$NAME.log"
grep -E "^chosen|^decoding kept|^\| \*\*pooled" "$OUT/$NAME.log"
log "finalized after $((SECONDS - t0)) s"

"$PY" - "$OUT/$NAME.shipped.safetensors" "$SHIPPED" <<'EOF'
"""How far the reproduced model is from the shipped one: weights and decoding settings."""
import sys

from safetensors.torch import load_file

from napari_colorize.model import read_config

mine, shipped = sys.argv[1:]
a, b = load_file(mine), load_file(shipped)
if a.keys() != b.keys():
    sys.exit(f"different tensors: {sorted(a.keys() ^ b.keys())}")
worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
print(f"weights: {len(a)} tensors, largest absolute difference from the shipped model {worst:.3g}")
keys = ("method", "temperature", "confidence_fading", "chroma_gain")
da, db = read_config(mine).decoding, read_config(shipped).decoding
for k in keys:
    print(f"decoding {k}: reproduced {da.get(k)}, shipped {db.get(k)}")
EOF
log "done in $((SECONDS - t0)) s"

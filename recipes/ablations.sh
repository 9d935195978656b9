#!/usr/bin/env bash
# Reproduces: the paper's table 3 (ablations): full model, w/o background model, single viewing bin,
# fixed (average) shape, random and average latent initialisation, evaluated side by side on the
# same images. Input: a dataset and a trained model, e.g. from recipes/synthetic.sh:
#   DATA=runs/synthetic-demo/data MODEL=runs/synthetic-demo/model.h5 bash recipes/ablations.sh
# Run time: 6 × the infer time of the chosen images (demo scale: about 10 minutes on 2 CPU cores).
# Outputs in $OUT (default runs/ablations): predictions_<variant>.h5, report/ (one column per variant).
set -euo pipefail
: "${DATA:?set DATA to a PASCAL3D+-layout dataset}"
: "${MODEL:?set MODEL to a model artifact}"
OUT=${OUT:-runs/ablations}
LIMIT=${LIMIT:-4}
OCCLUSION=${OCCLUSION:-0,3}
EXTRA=(${INFER_ARGS:-})
mkdir -p "$OUT"
run() {  # name, extra infer options...
  local name=$1; shift
  ntdm infer --data "$DATA" --split val --occlusion "$OCCLUSION" --limit "$LIMIT" --model "$MODEL" \
    -o "$OUT/predictions_$name.h5" "${EXTRA[@]}" "$@"
}
run full
run no-bg --no-background
run single-bin --single-bin
run fix-shape --fix-shape
run random-init --init random
run average-init --init average
ntdm eval "$OUT"/predictions_{full,no-bg,single-bin,fix-shape,random-init,average-init}.h5 --data "$DATA" \
  --out "$OUT/report" --labels full,no-bg,single-bin,fix-shape,random-init,average-init
echo "== done: $OUT/report/report.md"

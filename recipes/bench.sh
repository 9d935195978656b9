#!/usr/bin/env bash
# Reproduces: every performance figure of docs/results.md ("Performance"): the rasterizer sweep (ntdm bench-raster, as the
# PyTorch3D paper's fig. 3) and the image->surface, rasterizer workload W, deformer fit, synth,
# contrastive-scaling, training-step precision and inference benchmarks. Run time: about 10 minutes on 2 CPU cores.
# Outputs in $OUT (default runs/bench): raster.csv/json/png and one JSON/log per benchmark, and
# bench.md collecting all of their printed tables.
set -euo pipefail
OUT=${OUT:-runs/bench}
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cpu}
mkdir -p "$OUT"
ntdm --device "$DEVICE" bench-raster --out "$OUT/raster.csv" --plot "$OUT/raster.png" | tee "$OUT/raster.log"
ntdm --device "$DEVICE" bench-raster --out "$OUT/raster.json" -b native --faces 5120 --image-size 64x80 \
  --batch 144 --mode fwd+bwd | tee "$OUT/raster_w.log"
{
  echo "# ntdm benchmarks ($(date -u +%Y-%m-%d), $(nproc) cores, device $DEVICE)"
  for bm in bm_image_to_surface bm_raster bm_infer bm_train_step bm_backbone; do  # these take --device
    echo; echo "## $bm"; echo '```'; "$PY" -m "tests.benchmarks.$bm" --device "$DEVICE" 2>&1; echo '```'
  done
  for bm in bm_contrastive bm_synth bm_fit_deformer; do  # CPU-side stages
    echo; echo "## $bm"; echo '```'; "$PY" -m "tests.benchmarks.$bm" 2>&1; echo '```'
  done
} | tee "$OUT/bench.md"
echo "== done: $OUT/bench.md"

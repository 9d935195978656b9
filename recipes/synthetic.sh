#!/usr/bin/env bash
# Reproduces: the NTDM pipeline on ntdm's built-in synthetic PASCAL3D+-layout benchmark.
# Stages in this version: only the foundation (artifacts, CLI, image->surface op) has landed;
# the recipe grows with each stage. Run time: seconds. Outputs: none yet.
set -euo pipefail
OUT=${OUT:-demo-out}
SCALE=${SCALE:-demo}
mkdir -p "$OUT"
echo "ntdm demo (SCALE=$SCALE) -> $OUT"
ntdm --version
ntdm --help
echo "Only the foundation stage exists in this version: synth, fit-deformer, train-textures, infer"
echo "and eval are not built yet, so there is no pipeline output to show."

#!/usr/bin/env bash
# Reproduces: the NTDM pipeline (paper sec. 4: tables 1 and 2 layout) on ntdm's built-in synthetic
# PASCAL3D+-layout benchmark: synth -> fit-deformer per category -> train-textures -> infer on the
# val split (L0-L3 occlusion) and the OOD splits -> eval.
#
# SCALE=tiny|demo|cpu|full picks the settings file configs/$SCALE.yaml (categories, images, deformer,
# network, training and inference settings; every command below runs with --config on it):
#   tiny  2 categories, a handful of images (the tests' pipeline; minutes)
#   demo  6 categories x 300 images at 256², pretrained EfficientNet-Lite0, 8 epochs (make demo)
#   cpu   6 categories x 1000 images at 128², objects zoomed 2x (train.zoom), 4 starts refined (infer.topk), 8 epochs
#   full  all 12 categories, ResNet-50, the paper's sizes (use a GPU; PRETRAINED=resnet50.pth loads
#         ImageNet weights in torchvision layout)
# Only the number of evaluated images is set here (EVAL_LIMIT per category and occlusion level,
# OOD_LIMIT per category and nuisance): they are options of `ntdm infer`, not config keys.
# Overrides: EPOCHS=N (train.epochs); BACKBONE=effnet-lite0|effnet-lite1|effnet-lite2|small|small-s4
# (train.backbone; small-s4 also observes on a stride-2 grid and scores the pose grid at stride 8);
# OUT (default runs/synthetic-$SCALE).
# An interrupted training resumes from $OUT/model.h5.ckpt.h5; with model.h5 present training is skipped
# (delete it, keep the checkpoint and raise EPOCHS to train on).
# SCALE=demo makes the trained model the user's default model (`ntdm infer img.jpg` without --model;
# see `ntdm models`), also when training is skipped because model.h5 exists.
# Outputs in $OUT: data/ (the dataset), deformers/*.h5, model.h5, predictions.h5, predictions_ood.h5,
# overlays/*.png, meshes/*.obj, car-shapes/*.obj, report/ and report_ood/ (report.md, report.json, plots).
set -euo pipefail
SCALE=${SCALE:-demo}
case "$SCALE" in
  tiny) EVAL_LIMIT=2; OOD_LIMIT=1 ;;
  demo) EVAL_LIMIT=16; OOD_LIMIT=1 ;;
  cpu) EVAL_LIMIT=16; OOD_LIMIT=2 ;;
  full) EVAL_LIMIT=200; OOD_LIMIT=50 ;;
  *) echo "SCALE must be tiny, demo, cpu or full (got $SCALE)" >&2; exit 2 ;;
esac
CONFIG="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/configs/$SCALE.yaml"
[ -f "$CONFIG" ] || { echo "missing settings file $CONFIG" >&2; exit 2; }
OUT=${OUT:-runs/synthetic-$SCALE}
SETS=()  # overrides of the settings file from the environment
case "${BACKBONE:-}" in
  "") ;;
  effnet-lite0|effnet-lite1|effnet-lite2|small) SETS+=(--set train.backbone=$BACKBONE) ;;
  small-s4) SETS+=(--set train.backbone=small-s4 --set train.observe_upsample=2 --set infer.grid_pool=2) ;;
  *) echo "BACKBONE must be effnet-lite0, effnet-lite1, effnet-lite2, small or small-s4 (got $BACKBONE)" >&2; exit 2 ;;
esac
if [ -n "${EPOCHS:-}" ]; then SETS+=(--set train.epochs=$EPOCHS); fi
ntdm() { command ntdm --config "$CONFIG" "${SETS[@]}" "$@"; }  # every command below reads the settings file
TRAIN=()
if [ "$SCALE" = full ] && [ -n "${PRETRAINED:-}" ]; then TRAIN+=(--pretrained "$PRETRAINED"); fi
mkdir -p "$OUT/deformers"
echo "== ntdm synthetic pipeline, SCALE=$SCALE -> $OUT"
ntdm synth "$OUT/data" --occlusion L1,L2,L3 --ood all --seed 0 --workers "$(nproc 2>/dev/null || echo 1)"  # per-image seeds: the same images for any worker count
for cad in "$OUT"/data/CAD/*/; do  # one deformer per category of the dataset
  c=$(basename "$cad")
  [ -f "$OUT/deformers/$c.h5" ] || ntdm fit-deformer --cads "$cad" --category "$c" -o "$OUT/deformers/$c.h5"
done
SET_DEFAULT=()  # the demo's model becomes the user default of `ntdm infer`
if [ "$SCALE" = demo ]; then SET_DEFAULT=(--set-default); fi
if [ -f "$OUT/model.h5" ]; then
  echo "== $OUT/model.h5 exists: training skipped (delete it to retrain)"
  if [ "$SCALE" = demo ]; then ntdm models --set-default "$OUT/model.h5"; fi
else
  RESUME=()  # an interrupted run continues from its last epoch checkpoint (bit-identical to an uninterrupted one)
  if [ -f "$OUT/model.h5.ckpt.h5" ]; then RESUME=(--resume "$OUT/model.h5.ckpt.h5"); fi
  # after the last epoch it solves a few held-out training images per category with the infer section
  # and fits per-category evidence gains for classification (train.class_calib_images)
  ntdm train-textures --data "$OUT/data" --deformers "$OUT/deformers" -o "$OUT/model.h5" \
    "${TRAIN[@]}" "${RESUME[@]}" "${SET_DEFAULT[@]}"
fi
ntdm infer --data "$OUT/data" --split val --occlusion 0,1,2,3 --limit "$EVAL_LIMIT" --model "$OUT/model.h5" \
  -o "$OUT/predictions.h5" --overlay "$OUT/overlays" --export "$OUT/meshes"
ntdm infer --data "$OUT/data" --split val --nuisance all --limit "$OOD_LIMIT" --model "$OUT/model.h5" \
  -o "$OUT/predictions_ood.h5"
ntdm export-obj "$OUT/deformers/car.h5" --all -o "$OUT/car-shapes" >/dev/null
ntdm eval "$OUT/predictions.h5" --data "$OUT/data" --out "$OUT/report" --labels ntdm
ntdm eval "$OUT/predictions_ood.h5" --data "$OUT/data" --out "$OUT/report_ood" --labels ntdm-ood
echo "== done: report $OUT/report/report.md (OOD: $OUT/report_ood/report.md), overlays $OUT/overlays, meshes $OUT/meshes"

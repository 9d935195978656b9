#!/usr/bin/env bash
# Reproduces: NTDM on real data (paper tables 1 and 2): PASCAL3D+ (L0), Occluded-PASCAL3D+ (L1-L3) and
# OOD-CV, with the paper's settings (ResNet-50 backbone, 7 bins, 256² × 128 textures, 144-pose grid,
# 300 Adam steps). Needs the datasets on disk:
#   P3D=/path/to/PASCAL3D+_release1.1   (Images/, Annotations/, Image_sets/, CAD/)
#   OCC=/path/to/OccludedPASCAL3D       (optional; default $P3D/OccludedPASCAL3D)
#   OOD=/path/to/OOD_CV                 (optional; default $P3D/OOD_CV)
#   PRETRAINED=/path/to/resnet50.pth    (optional ImageNet weights, torchvision layout)
# Run time: days on 2 CPU cores; hours on a GPU (train with torchrun, one process per GPU:
#   NPROC=8 bash recipes/pascal3d.sh). Outputs in $OUT (default runs/pascal3d): deformers/*.h5,
#   model.h5, predictions*.h5, report*/.
# Extra options per stage (e.g. smaller runs): FIT_ARGS, TRAIN_ARGS, INFER_ARGS (word-split).
set -euo pipefail
: "${P3D:?set P3D to the PASCAL3D+ release folder}"
OUT=${OUT:-runs/pascal3d}
CATS=${CATS:-aeroplane,bicycle,boat,bottle,bus,car,chair,diningtable,motorbike,sofa,train,tvmonitor}
NPROC=${NPROC:-1}
EPOCHS=${EPOCHS:-800}
OCC=${OCC:-$P3D/OccludedPASCAL3D}
OOD=${OOD:-$P3D/OOD_CV}
FIT_ARGS=(${FIT_ARGS:-}); TRAIN_ARGS=(${TRAIN_ARGS:-}); INFER_ARGS=(${INFER_ARGS:-})
INFER_SETS=()  # the --set pairs of INFER_ARGS: the class calibration after the last epoch solves with them
for ((i = 0; i + 1 < ${#INFER_ARGS[@]}; i++)); do
  if [ "${INFER_ARGS[i]}" = --set ]; then INFER_SETS+=(--set "${INFER_ARGS[i + 1]}"); fi
done
mkdir -p "$OUT/deformers"
for c in ${CATS//,/ }; do
  [ -f "$OUT/deformers/$c.h5" ] || ntdm fit-deformer --cads "$P3D/CAD/$c" --category "$c" -o "$OUT/deformers/$c.h5" \
    "${FIT_ARGS[@]}"
done
TRAIN=(train-textures --data "$P3D" --deformers "$OUT/deformers" --categories "$CATS" -o "$OUT/model.h5" --epochs "$EPOCHS" "${TRAIN_ARGS[@]}"
  "${INFER_SETS[@]}")
[ -n "${PRETRAINED:-}" ] && TRAIN+=(--pretrained "$PRETRAINED")
RESUME=()
[ -f "$OUT/model.h5.ckpt.h5" ] && RESUME=(--resume "$OUT/model.h5.ckpt.h5")
if [ "$NPROC" -gt 1 ]; then
  torchrun --nproc_per_node="$NPROC" "$(command -v ntdm)" "${TRAIN[@]}" "${RESUME[@]}"
else
  ntdm "${TRAIN[@]}" "${RESUME[@]}"
fi
ntdm infer --data "$P3D" --split val --occlusion 0,1,2,3 --model "$OUT/model.h5" -o "$OUT/predictions.h5" \
  --set infer.shortlist=3 "${INFER_ARGS[@]}"
ntdm eval "$OUT/predictions.h5" --data "$P3D" --out "$OUT/report" --labels ntdm
if [ -d "$OOD" ]; then
  ntdm infer --data "$P3D" --split val --nuisance all --model "$OUT/model.h5" -o "$OUT/predictions_ood.h5" \
    --set infer.shortlist=3 "${INFER_ARGS[@]}"
  ntdm eval "$OUT/predictions_ood.h5" --data "$P3D" --out "$OUT/report_ood" --labels ntdm
fi
echo "== done: $OUT/report/report.md"

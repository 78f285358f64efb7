#!/usr/bin/env bash
# Self-supervised pretraining of remixformer_small's two image encoders on real dermoscopy (the ISIC 2018
# training cases), on one GPU, both runs at once: the window encoder T_phi1
# (configs/pretrain/dino_small_isic2018.yaml) and the clinical CLS-Swin encoder
# (configs/pretrain/dino_small_clinical_isic2018.yaml). The same configs run on a CPU without the
# trainer.* overrides below (docs/results.md gives the CPU commands and times).
#   [LIMIT=seconds] bash benchmarks/gpu/pretrain_small_real.sh DATA_ROOT OUT_DIR [WINDOW_EPOCHS] [CLINICAL_EPOCHS] [WORKERS]
# LIMIT stops each run after that many seconds; the export of its last finished epoch stays.
set -uo pipefail
root=${1:?ISIC 2018 root}; out=${2:?output folder}
we=${3:-6}; ce=${4:-40}; workers=${5:-7}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
common=(trainer.accelerator=gpu trainer.devices=1 trainer.progress_bar=false "data.root=$root"
        "windows.num_workers=$workers" "windows.scan_workers=$workers" output_dir="$out/runs")
timeout "${LIMIT:-0}" python3 -m remixformer.cli.main pretrain -c configs/pretrain/dino_small_isic2018.yaml "${common[@]}" \
    optim.epochs="$we" >"$out/window_encoder.log" 2>&1 &
w=$!
timeout "${LIMIT:-0}" python3 -m remixformer.cli.main pretrain -c configs/pretrain/dino_small_clinical_isic2018.yaml "${common[@]}" \
    optim.epochs="$ce" >"$out/clinical_encoder.log" 2>&1 &
c=$!
wait $w; echo "window encoder exit $?"
wait $c; echo "clinical encoder exit $?"

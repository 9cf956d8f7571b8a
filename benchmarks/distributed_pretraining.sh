#!/usr/bin/env bash
# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
#
# A short pretraining run under DDP and under FSDP2 on the GPUs of this machine, with the shipped accelerate configs;
# prints each run's steps per second, peak GPU memory and final loss (from its train_results.json).
#
#   bash benchmarks/distributed_pretraining.sh                  # base size, 30 steps, 8 clips per GPU
#   SIZE=huge STEPS=50 BATCH=4 bash benchmarks/distributed_pretraining.sh
#
# The clips are the packaged sample video, listed many times, read without face detection (the sample is framed).
set -euo pipefail
cd "$(dirname "$0")/.."
NUM_GPUS=${NUM_GPUS:-$(nvidia-smi -L | wc -l)}
SIZE=${SIZE:-base}
STEPS=${STEPS:-30}
BATCH=${BATCH:-8}
WORKERS=${WORKERS:-4}
WORK=${WORK:-$(mktemp -d)}
CLIP="$PWD/avfmae_hf/data/sample_talking_face.mp4"
for _ in $(seq $((NUM_GPUS * BATCH * 4))); do echo "$CLIP"; done > "$WORK/videos.txt"

for config in multi_gpu fsdp2; do
  echo "== $config: $NUM_GPUS GPU(s), size $SIZE, $BATCH clips per GPU, $STEPS steps"
  accelerate launch --config_file "training/accelerate_configs/$config.yaml" --num_processes "$NUM_GPUS" \
    training/run_pretraining.py --size "$SIZE" --do_face_crop false --train_file "$WORK/videos.txt" \
    --output_dir "$WORK/$config" --per_device_train_batch_size "$BATCH" --max_steps "$STEPS" \
    --save_strategy no --logging_steps 10 --bf16 --dataloader_num_workers "$WORKERS" --report_to none
  python - "$WORK/$config/train_results.json" "$config" <<'PY'
import json
import sys

results = json.load(open(sys.argv[1]))
print(
    f"{sys.argv[2]}: {results['num_processes']} processes, {results['train_steps_per_second']:.3f} steps/s, "
    f"peak {results['max_memory_allocated_gb']:.1f} GiB per GPU, final loss {results['train_loss']:.4f}"
)
PY
done

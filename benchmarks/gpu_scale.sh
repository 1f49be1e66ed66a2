#!/usr/bin/env bash
# `u2net predict --dataset` on a GPU machine: 1 process vs N processes (accelerate launch), side by side.
# With more processes than GPUs the processes share the GPUs (gloo for the barriers): one Python process
# decoding and resizing JPEGs cannot keep a fast GPU busy, several can. About 5 minutes on one H200.
# Runs under the machine's own python3 (with a CUDA PyTorch, datasets, accelerate, av); results in ${OUT:-gpu-results}/.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
python=${PYTHON:-python3}
cores=$(nproc)
gpus=$(nvidia-smi -L | wc -l)

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/scale_gpu.txt"
echo "cpu cores: $cores, gpus: $gpus" | tee -a "$out/scale_gpu.txt"

configs="1x$cores"
for n in 2 4 8; do
  [ "$n" -le "$cores" ] && configs="$configs ${n}x$((cores / n))"
done
# The full model at 320x320, 2048 photos of 640x480, batch 32, shard 256 rows, two alternating rounds.
timeout 540 $python benchmarks/dataset_scale.py --device cuda --model full --configs $configs \
  --images 2048 --image-size 640x480 --batch-size 32 --shard-size 256 --rounds 2 \
  --json "$out/scale_gpu.json" 2>&1 | tee -a "$out/scale_gpu.txt"

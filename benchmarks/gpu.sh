#!/usr/bin/env bash
# The GPU figures in the README: inference and training throughput on one CUDA device, side by side with the
# plain fp32 eager baseline. Runs under the machine's own python3 (with a CUDA PyTorch); packages it lacks can
# be put on PYTHONPATH first. Results go to ${OUT:-gpu-results}/.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
python=${PYTHON:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
$python -c "import torch, datasets; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'datasets', datasets.__version__)" \
  | tee -a "$out/gpu.txt"

# Inference at 320x320: batch 64 (the issue's throughput target, also through torch.compile) and batch 1.
timeout 420 $python benchmarks/inference.py --device cuda --variants full,tiny --paths ours,baseline,compiled \
  --batch-size 64 --iters 20 --warmup 5 --json "$out/inference_b64.json" 2>&1 | tee "$out/inference_b64.txt"
timeout 120 $python benchmarks/inference.py --device cuda --variants full,tiny --paths ours,baseline \
  --batch-size 1 --iters 50 --warmup 10 --json "$out/inference_b1.json" 2>&1 | tee "$out/inference_b1.txt"

# Training step: batch 8 at 288x288 (the CPU target's shape) and batch 32; the data line with 8 workers.
for batch in 8 32; do
  timeout 180 $python benchmarks/train_throughput.py --device cuda --batch_size "$batch" --steps 15 --warmup 5 --workers 8 \
    2>&1 | tee "$out/train_b$batch.txt"
done

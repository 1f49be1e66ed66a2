# Sourced by the train/device_*.sh scripts, from the repository root, on a lent GPU machine: the results folder
# (${OUT:-gpu-results}, with device.log), the environment, the wheels in .whl/ of what the machine's python3 lacks
# (NO_WHEELS=1 skips them), and the GPU and core count at the top of the log.
out="${OUT:-gpu-results}"
mkdir -p "$out" runs
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PY=${PY:-python3} PYTHONPATH="$PWD"
if [ -z "${NO_WHEELS:-}" ] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD" || exit 1
fi
log="$out/device.log"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; } | tee "$log"

#!/usr/bin/env bash
# GPU check: VGG-16 at full width, then the distributed training, on whatever GPUs this machine has.
#
#   scripts/gpu_check.sh            (or: make gpu-check)
#
# Prints the GPUs TensorFlow sees and samples/s of: VGG-16 (width 1.0, 32x32x3 patches) trained on one GPU,
# and the crop LSTM and the VGG-16 trained data-parallel by workbench.training.distributed on N GPU workers
# (a `dask scheduler` and one `dask worker --resources GPU=1` per GPU, each with its CUDA_VISIBLE_DEVICES).
# Without a GPU it says so and exits 0; with a GPU that TensorFlow cannot use (the CPU build is installed)
# it says what to install and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VENV_PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

n_smi=0
if command -v nvidia-smi >/dev/null 2>&1; then
  n_smi=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
if [ "$n_smi" = 0 ] && ! ls /dev/nvidia[0-9]* >/dev/null 2>&1; then
  echo "gpu-check: no GPU on this machine (no nvidia-smi GPU, no /dev/nvidia* device): nothing to check."
  exit 0
fi
n_tf=$("$PY" - <<'PY' 2>/dev/null || echo 0
import tensorflow as tf
print(len(tf.config.list_physical_devices("GPU")))
PY
)
n_tf=$(echo "$n_tf" | tail -1)
if [ "$n_smi" = 0 ] && [ "$n_tf" = 0 ]; then
  echo "gpu-check: no GPU on this machine (nvidia-smi lists none, TensorFlow sees none): nothing to check."
  exit 0
fi
if [ "$n_tf" = 0 ]; then
  echo "gpu-check: nvidia-smi lists $n_smi GPU(s) but TensorFlow sees none: install the CUDA build," >&2
  echo "  pip uninstall -y tensorflow-cpu && pip install -c env/constraints.txt -r env/gpu.txt" >&2
  exit 1
fi
echo "gpu-check: TensorFlow sees $n_tf GPU(s)"
nvidia-smi -L 2>/dev/null || true

"$PY" scripts/gpu_check.py vgg

# a CLI cluster: one worker per GPU, each seeing its own GPU and declaring it as a resource
work=$(mktemp -d -t wb-gpu-check-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
DASK=$(dirname "$PY")/dask
[ -x "$DASK" ] || DASK=dask
"$DASK" scheduler --host 127.0.0.1 --port 0 --dashboard-address :0 --scheduler-file "$work/scheduler.json" \
  >"$work/scheduler.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/scheduler.json" ] && break; sleep 0.2; done
n_workers=$n_tf
IFS=, read -r -a visible <<< "${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $((n_tf - 1)))}"
for i in $(seq 0 $((n_workers - 1))); do
  CUDA_VISIBLE_DEVICES=${visible[$i]} "$DASK" worker --scheduler-file "$work/scheduler.json" --nthreads 1 --no-nanny \
    --resources GPU=1 --name "gpu-$i" --local-directory "$work/w$i" >"$work/worker-$i.log" 2>&1 &
  pids+=($!)
done
address=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['address'])" "$work/scheduler.json")
"$PY" scripts/gpu_check.py distributed "$address" "$n_workers"
echo "gpu-check: done"

#!/usr/bin/env bash
# One prepared run on a GPU machine: builds genrt with its CUDA kernels, runs the CUDA tests, runs the GPU
# benchmark (and scripts/amx_check.sh where the host CPU has AMX), and writes everything to the folder given
# (default: $OUT, else ./gpu-results).
#
#   bash scripts/gpu_check.sh /path/to/results
#
# Needs python with torch (CUDA), numpy, onnx, onnxruntime, pybind11, pytest already installed: a GPU machine may
# have no package registry. ORT headers: ./.ort (carry it) or $ORT_INCLUDE_DIR. Tried on a CPU machine first, where
# the tests skip and the benchmark says it needs a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${1:-${OUT:-gpu-results}}"
mkdir -p "$RESULTS"
PY="${PYTHON:-python3}"
{
  date; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; nvcc --version | tail -2
  "$PY" -c "import torch, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'ort', o.__version__, o.get_available_providers())"
} > "$RESULTS/env.txt" 2>&1
cat "$RESULTS/env.txt"
export GENRT_CUDA=1 GENRT_CUDA_ARCHS="${GENRT_CUDA_ARCHS:-80,90}" MAX_JOBS=16
if ! "$PY" -m pip install --no-build-isolation --no-deps --no-index -e . > "$RESULTS/build.log" 2>&1; then
  echo "build failed: tail of $RESULTS/build.log"; tail -40 "$RESULTS/build.log"; exit 1
fi
"$PY" -c "from genrt import kernels; print('cuda_available', kernels.cuda_available(), kernels.cuda_device_count())" | tee -a "$RESULTS/env.txt"
"$PY" -m pytest -q tests/cuda tests/ops -p no:cacheprovider 2>&1 | tee "$RESULTS/tests.txt" | tail -25
tests_rc=${PIPESTATUS[0]}
timeout 240 "$PY" benchmarks/bench_cuda.py --out "$RESULTS" > "$RESULTS/bench.log" 2>&1
echo "benchmark exit $?"; cat "$RESULTS/cuda.md" 2>/dev/null || tail -20 "$RESULTS/bench.log"
# The GPU machines' hosts may be Xeons with AMX: check genrt's tile kernels there too (its exit status is reported,
# not this script's).
if grep -q -w amx_tile /proc/cpuinfo; then
  PYTHON="$PY" timeout 420 bash scripts/amx_check.sh "$RESULTS" > "$RESULTS/amx.log" 2>&1
  echo "amx check exit $?"; tail -20 "$RESULTS/amx.log"
fi
exit "$tests_rc"

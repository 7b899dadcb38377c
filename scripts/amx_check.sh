#!/usr/bin/env bash
# One prepared run on a CPU with Intel AMX (Xeon Sapphire Rapids and later; the GPU machines' hosts may be one):
# checks that genrt picked the amx level, runs the bfloat16 kernel tests there (the isa fixture then runs every
# level, amx included, on the real tiles), and times the tile kernels per layer against the AVX512-BF16 and float32
# ones. Writes everything to the folder given (default: $OUT, else ./amx-results). genrt must be built already
# (pip install -e ., or scripts/gpu_check.sh, which calls this script where the CPU has AMX).
#
#   bash scripts/amx_check.sh [/path/to/results] [--full]
#
# --full also runs the network benchmark against OpenVINO (benchmarks/bench_bf16.py, needs its optional extra) and
# the first-call timing (benchmarks/bench_first_load.py): several minutes more.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${OUT:-amx-results}"
FULL=0
for arg in "$@"; do
  if [ "$arg" = "--full" ]; then FULL=1; else RESULTS="$arg"; fi
done
mkdir -p "$RESULTS"
PY="${PYTHON:-python3}"
THREADS="${THREADS:-$(nproc)}"
{
  date
  lscpu | grep -E "^Model name|^CPU\(s\)"
  echo "amx flags: $(grep -o -w 'amx[a-z0-9_]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  "$PY" -c "from genrt import kernels; from genrt._native import _C; print('isa', kernels.cpu_isa(), _C.available_isas())"
} > "$RESULTS/amx_env.txt" 2>&1
cat "$RESULTS/amx_env.txt"
if ! grep -q "^isa amx" "$RESULTS/amx_env.txt"; then
  echo "genrt is not at the amx level here (no AMX, an old kernel, or arch_prctl refused the tile data): nothing to check"
  exit 1
fi
"$PY" -m pytest -q -p no:cacheprovider tests/test_conv2d_bf16.py tests/test_conv_transpose2d_bf16.py \
  tests/runtime/test_precision.py 2>&1 | tee "$RESULTS/amx_tests.txt" | tail -15
tests_rc=${PIPESTATUS[0]}
timeout 600 "$PY" benchmarks/bench_amx.py --threads "$THREADS" 2>&1 | tee "$RESULTS/bench_amx.txt"
if [ "$FULL" = 1 ]; then
  timeout 1800 "$PY" benchmarks/bench_bf16.py --rounds 3 --runs 5 2>&1 | tee "$RESULTS/bench_bf16.txt"
  timeout 900 "$PY" benchmarks/bench_first_load.py --configs apps 2>&1 | tee "$RESULTS/bench_first_load.txt"
fi
exit "$tests_rc"

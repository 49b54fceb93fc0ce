#!/usr/bin/env bash
# Everything issue 12 measures on a GPU, as one command for a lent machine (the `device` tool's `run`,
# from the repository root; about 3 minutes on an H200, at most 9.5 with its two timeouts, inside the
# tool's 10-minute limit for one command):
#     bash benchmarks/gpu_run.sh
# Runs benchmarks/gpu_check.py (statistics and throughput, both step kernels) and the CUDA-parametrised
# tests, from this checkout's src/ (nothing is installed: the machine's python3 has torch, Triton, numpy,
# scipy, matplotlib, filelock, tqdm, pytest and hypothesis). Logs and gpu_check.json go to $OUT
# (default /tmp/shld-gpu). Exit status: 0 when both passed.
set -u -o pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export OUT="${OUT:-/tmp/shld-gpu}"
mkdir -p "$OUT"
python3 - <<'PY' 2>&1 | tee "$OUT/environment.txt"
import platform, numpy, torch
try:
    import triton
    tv = triton.__version__
except Exception as exc:
    tv = f"not importable ({exc})"
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
print(f"python {platform.python_version()}, numpy {numpy.__version__}, torch {torch.__version__}, "
      f"triton {tv}, GPU {gpu}")
PY
timeout 300 python3 benchmarks/gpu_check.py 2>&1 | tee "$OUT/gpu_check.log"
check=$?
timeout 270 python3 -m pytest -q -p no:cacheprovider -k cuda tests/dynamics tests/landscapes 2>&1 \
    | tee "$OUT/pytest_cuda.log"
tests=$?
echo "gpu_check exit status $check, CUDA tests exit status $tests"
[ "$check" -eq 0 ] && [ "$tests" -eq 0 ]

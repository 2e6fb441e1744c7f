#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU and `pip install '.[gpu]'` done (under 5 minutes):
# core vs bare RNG throughput on the GPU, a chunk re-run bit-identical, GPU vs CPU within 4 SE.
#     benchmarks/device_check.sh            # uses $PYTHON, else .venv/bin/python, else python3
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L; then
  echo "device_check: no NVIDIA GPU on this machine (nvidia-smi finds none)" >&2
  exit 2
fi
exec timeout 300 "$PY" benchmarks/device_check.py "$@"

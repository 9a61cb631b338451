#!/usr/bin/env bash
# The GPU check in one command, for a machine with torch+CUDA and no network: install this checkout without
# fetching anything, then run benchmarks/gpu_check.py (options pass through; the JSON goes to $OUT when set).
#   bash benchmarks/gpu_check.sh [--n 20000] [--budget 470]
cd "$(dirname "$0")/.." || exit 1
PY=python3
for candidate in python python3; do   # the interpreter that has torch
  if command -v "$candidate" >/dev/null && "$candidate" -c "import torch" 2>/dev/null; then PY=$candidate; break; fi
done
"$PY" -m pip install -q --no-deps --no-build-isolation -e . || "$PY" -m pip install -q --no-deps -e . \
  || echo "note: pip install failed; running from the checkout (PYTHONPATH)" >&2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py "$@"

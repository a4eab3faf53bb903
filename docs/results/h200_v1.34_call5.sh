#!/usr/bin/env bash
# session 36 call 5 (one H200): the fused-path tests with step shares on the GPU (the inline-PTX adds,
# masked and unmasked, that the interpreter does not run), and the 4-lane case with shares off.
# Output: NVIDIA H200 / "3 passed in 48.84s".
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
nvidia-smi --query-gpu=name --format=csv,noheader
T=tests/test_triton_scan.py::test_fused_directions_match_gather_scan_scatter
timeout 220 python -m pytest -q -p no:cacheprovider "$T[zigzag-4-4-4-lane-4-32-16-1]" \
  "$T[hilbert-5-6-4-lane-2-3-16-1]" "$T[zigzag-4-4-4-lane-4-32-16-0]" 2>&1 | tail -15

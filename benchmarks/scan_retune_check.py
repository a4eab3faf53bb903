"""Rerun one of test_triton_scan's fp32 cases many times, autotuning afresh each time, on a GPU.

A case that fails once in a long test run and passes alone may depend on the autotuner's pick (the picks
follow timings, which vary). This clears every scan autotuner's picks before each run, so each run tunes
again, and prints each run's errors against the float64 loop (the test's bounds: output 1e-5, gradients
1e-4, relative in norm), the picks of the first runs and of every run out of bounds.

    MAMBAAD_SCAN_TUNE_CACHE=0 python benchmarks/scan_retune_check.py "G = D" 40

(MAMBAAD_SCAN_TUNE_CACHE=0: no pick kept on disk between processes either.)
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/ and kernels/


def main() -> None:
    tests = importlib.import_module("tests.test_triton_scan")
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=list(tests.CASES))
    parser.add_argument("runs", type=int, nargs="?", default=40)
    args = parser.parse_args()
    scan = importlib.import_module("kernels.triton_scan")
    batch, dim, length, n, groups, z, bias, D, softplus, chunk = tests.CASES[args.case]
    failures = 0
    for i in range(args.runs):
        for tuner in scan._tuned_kernels():
            tuner.cache.clear()
        inputs = tests.make(batch, dim, length, n, groups, z=z, bias=bias, D=D, seed=length)
        ref_in, test_in, ref, out = tests.run_both(scan, inputs, softplus, chunk)
        errors = {"out": tests.rel(out, ref)}
        errors.update({k: tests.rel(test_in[k].grad, ref_in[k].grad) for k in tests.NAMES
                       if test_in[k] is not None})
        bad = errors["out"] >= 1e-5 or any(v >= 1e-4 for k, v in errors.items() if k != "out")
        failures += bad
        print(json.dumps({"run": i, "bad": bad, "errs": {k: f"{v:.2e}" for k, v in errors.items()},
                          "picks": scan.tuned_picks() if bad or i < 2 else "..."}), flush=True)
    print(f"{args.case}: {failures} of {args.runs} runs out of bounds")


if __name__ == "__main__":
    main()

"""A/B timing of two versions of the Triton scan in one process: this tree's kernels against a copy of
kernels/ from another commit, on MambaAD's shapes, so that the ratio is measured side by side.

    git archive REV kernels | tar x -C .devcarry/prev      # here, before the device call (ignored folder)
    python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --json ab.json

Both versions are first checked against each other (forward and every gradient), then timed with
triton.testing.do_bench medians: forward as in training, forward at inference, and backward, and the GPU
time of the training forward and the backward alone (mambaad_cli/engine/gpu_time.py). On a CPU
(TRITON_INTERPRET=1, tiny --shapes) it only runs the check, as a smoke test of the script.

With --configs "2:1:3:1:2;4:2:3:1:2;auto" this tree's kernels are checked and timed once per config
(MAMBAAD_SCAN_CONFIGS syntax, "auto": the default autotuned space), so a config sweep is one call. An entry
of KEY=VALUE pairs joined by "&" sets MAMBAAD_SCAN_KEY instead: "SEG=0" (the tiles kernels),
"SEG_CONFIGS=4:1:3:1:16:0" (one config of the segment kernels), "SEG_RED=3" (the reduce-scatter of dB / dC),
"CHUNK=64" (64-step chunks: the segment backward then sums 8 channels per lane column).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from scan_gpu_dev import inputs, rel  # noqa: E402  (the same inputs as the main dev script)

from kernels import triton_scan  # noqa: E402
from mambaad_cli.engine.gpu_time import gpu_ms  # noqa: E402

GRADS = ("u", "delta", "A", "B", "C")


def load_baseline(path: Path, name: str = "kernels_baseline"):
    """The triton_scan module of another kernels/ tree, imported under its own package name."""
    spec = importlib.util.spec_from_file_location(name, path / "__init__.py",
                                                  submodule_search_locations=[str(path)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.triton_scan")


def run(module, xs):
    u, delta, A, B, C, D, bias = xs
    return module.selective_scan_triton(u, delta, A, B, C, D=D, delta_bias=bias, delta_softplus=True)


def leaves(xs):
    u, delta, A, B, C, D, bias = xs
    u, delta, A, B, C = (t.detach().clone().requires_grad_() for t in (u, delta, A, B, C))
    return (u, delta, A, B, C, D, bias), (u, delta, A, B, C)


def compare(new, old, xs) -> dict[str, float]:
    """Relative L2 differences between the two versions: output and the gradients of u, delta, A, B, C."""
    xa, ga = leaves(xs)
    xb, gb = leaves(xs)
    out_a, out_b = run(new, xa), run(old, xb)
    dout = torch.randn_like(out_a)
    grads_a = torch.autograd.grad(out_a, ga, dout)
    grads_b = torch.autograd.grad(out_b, gb, dout)
    errs = {"out": rel(out_a, out_b)}
    errs.update({name: rel(a, b) for name, a, b in zip(GRADS, grads_a, grads_b, strict=True)})
    return errs


def timings(module, xs) -> dict[str, float]:
    import triton

    x, grads = leaves(xs)
    fwd = triton.testing.do_bench(lambda: run(module, x), return_mode="median")
    with torch.no_grad():
        infer = triton.testing.do_bench(lambda: run(module, x), return_mode="median")
    out = run(module, x)
    dout = torch.randn_like(out)
    def backward():
        return torch.autograd.grad(out, grads, dout, retain_graph=True)

    bwd = triton.testing.do_bench(backward, return_mode="median")
    # the same calls' GPU time alone: where it is well below the wall clock, the host's launches set the pace
    return {"fwd": fwd, "fwd_infer": infer, "bwd": bwd,
            "fwd_gpu": gpu_ms(lambda: run(module, x)), "bwd_gpu": gpu_ms(backward)}


# each entry starts from none of them
KNOBS = ("CONFIGS", "SEG", "SEG_CONFIGS", "SEG_RED", "SEG_BWD", "CHUNK", "SEG_ORDER", "SEG_RED_SKIP",
         "BC_FP32", "LANE", "LANE_CONFIGS", "LANE_BWD", "LANE_BWD_CONFIGS",
         "LANE_CKPT", "LANE_SPLIT", "LANE_BWD_SPLIT", "LANE_SHARES", "LANE_BWD_SHARES", "LANE_PAIRS",
         "LANE_MIN_STEPS", "INFER_CKPT")


def use_configs(spec: str) -> None:
    """Point this tree's autotuners at one config space ("auto": the default) and drop the tuned ones."""
    for knob in KNOBS:
        os.environ.pop(f"MAMBAAD_SCAN_{knob}", None)
    if "=" in spec:
        for pair in spec.split("&"):
            key, value = pair.split("=", 1)
            os.environ[f"MAMBAAD_SCAN_{key}"] = value
    elif spec != "auto":
        os.environ["MAMBAAD_SCAN_CONFIGS"] = spec
    triton_scan._tuned_kernels.cache_clear()
    getattr(triton_scan, "_LANE_PICKS", {}).clear()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, required=True, help="a kernels/ folder from another commit")
    parser.add_argument("--shapes", default="1024:4096,2048:1024,4096:256,8192:64", help="D:L, comma-sep.")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--configs", default="auto", help="config spaces to time this tree with, ';'-sep.")
    parser.add_argument("--baseline-configs", help="the baseline's config space, in its own syntax")
    parser.add_argument("--check-only", action="store_true",
                        help="no timing: a warm-up that fills Triton's compile cache (run several at once)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    timing = device == "cuda" and not args.check_only
    old = load_baseline(args.baseline)
    # the baseline's autotuners are built now, with their own config space (--baseline-configs or its
    # default), before --configs points the environment at this tree's syntax, which an older tree may not
    # read
    saved = os.environ.pop("MAMBAAD_SCAN_CONFIGS", None)
    if args.baseline_configs:
        os.environ["MAMBAAD_SCAN_CONFIGS"] = args.baseline_configs
    old._tuned_kernels()
    os.environ.pop("MAMBAAD_SCAN_CONFIGS", None)
    if saved is not None:
        os.environ["MAMBAAD_SCAN_CONFIGS"] = saved
    rows = []
    for dtype in [getattr(torch, name) for name in args.dtypes.split(",")]:
        for dim, length in (tuple(int(x) for x in s.split(":")) for s in args.shapes.split(",")):
            xs = inputs(args.batch, dim, length, dtype, device=device)
            base = {"dim": dim, "L": length, "dtype": str(dtype).replace("torch.", "")}
            use_configs("auto")  # the baseline reads some knobs at call time: none left from the last entry
            old_times = timings(old, xs) if timing else None
            for spec in args.configs.split(";"):
                use_configs(spec)
                row = {**base, "configs": spec, "diff": compare(triton_scan, old, xs)}
                if timing:
                    row["new"], row["old"] = timings(triton_scan, xs), old_times
                    total = {k: row[k]["fwd"] + row[k]["bwd"] for k in ("old", "new")}
                    row["old_over_new_fwd_bwd"] = total["old"] / total["new"]
                    row["picks"] = triton_scan.tuned_picks()  # this tree's autotuner picks so far
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

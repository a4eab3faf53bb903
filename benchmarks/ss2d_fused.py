"""The SS2D core (K directional scans merged in natural order), forward + backward, several ways side by side
in one process on `mambaad bench`'s inputs (channels-last, as SS2D gives them):

    python benchmarks/ss2d_fused.py --json ss2d.json            # GPU: check, then GPU ms of each way
    python benchmarks/ss2d_fused.py --check-only --dtypes bf16  # warm the compile cache (several at once)

Ways: `fused-lane` (kernels.selective_scan_directions, backend triton-fused, on the lane kernels: the
default since v1.28), `fused-tiles` (the same through v1's tiles kernels, MAMBAAD_SCAN_FUSED_KERNEL=tiles),
`unfused-triton` (torch's gather / scatter glue around our scan) and `unfused-cuda` (the same glue around
mamba_ssm's selective_scan_cuda, where it imports: the issue's baseline, as `mambaad bench` runs it), and
with --baseline KERNELS (a kernels/ folder from another commit, as benchmarks/scan_ab.py takes it)
`fused-baseline`, that tree's fused path, for an A/B of two versions in one process.
With --configs "auto;LANE_CONFIGS=32:1:3:1:8:6;LANE_SPLIT=4" (scan_ab.py's syntax) the ways run once per
config space of this tree's kernels, in one process (a sweep of the fused path's picks side by side).
Each is checked against the first (forward and the gradients of u, delta, B, C), then timed by
triton.testing.do_bench (wall clock) and by the profiler's GPU time (mambaad_cli/engine/gpu_time.py).
On a CPU (TRITON_INTERPRET=1) it runs the check at one tiny size, as a smoke test of the script.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if not torch.cuda.is_available():  # Triton's interpreter, set before triton loads
    os.environ.setdefault("TRITON_INTERPRET", "1")

from kernels.directions import selective_scan_directions  # noqa: E402
from mambaad_cli.engine.bench import SS2D_SIZES, relative_l2_error, ss2d_inputs  # noqa: E402
from mambaad_cli.engine.gpu_time import gpu_ms, kernel_table  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from scan_ab import load_baseline, use_configs  # noqa: E402

WAYS = {  # name: (backend, MAMBAAD_SCAN_FUSED_KERNEL)
    "fused-lane": ("triton-fused", "lane"),
    "fused-tiles": ("triton-fused", "tiles"),
    "unfused-triton": ("triton", None),
    "unfused-cuda": ("cuda", None),
    "fused-baseline": ("baseline", "lane"),
}
BASELINE = None  # --baseline's triton_scan module
GRADS = ("u", "delta", "B", "C")


def step(inputs: dict[str, torch.Tensor], way: str, dout: torch.Tensor):
    """(output, gradients of GRADS) of one forward + backward the given way, dout the output's gradient."""
    backend, kernel = WAYS[way]
    if kernel:
        os.environ["MAMBAAD_SCAN_FUSED_KERNEL"] = kernel
    leaves = {k: v.detach().requires_grad_(k in GRADS) for k, v in inputs.items()}
    if backend == "baseline":
        out = BASELINE.selective_scan_directions_triton(**leaves, delta_softplus=True)
    else:
        out = selective_scan_directions(**leaves, delta_softplus=True, backend=backend)
    grads = torch.autograd.grad(out, [leaves[k] for k in GRADS], dout)
    return out, grads


def measure(inputs: dict[str, torch.Tensor], ways: list[str], timed: bool,
            profile: bool = False) -> dict[str, object]:
    """Each way's largest relative L2 error against the first way that runs, and its times where timed (with
    profile, each way's kernel table printed too)."""
    dout = torch.randn_like(inputs["u"])
    row: dict[str, object] = {}
    ref = None
    for way in ways:
        try:
            out, grads = step(inputs, way, dout)
        except Exception as e:  # noqa: BLE001 - a way that does not run here (no mamba_ssm): say so
            row[f"{way}_error"] = f"{type(e).__name__}: {e}"[:200]
            continue
        if ref is None:
            ref = (out, grads)
        else:
            errors = [relative_l2_error(out, ref[0])] + [relative_l2_error(g, r)
                                                          for g, r in zip(grads, ref[1], strict=True)]
            row[f"{way}_rel"] = max(errors)
        if timed:
            from triton.testing import do_bench

            row[f"{way}_ms"] = do_bench(lambda way=way: step(inputs, way, dout), warmup=25, rep=100)
            row[f"{way}_gpu_ms"] = gpu_ms(lambda way=way: step(inputs, way, dout))
            if profile:
                table = kernel_table(lambda way=way: step(inputs, way, dout), row_limit=20)
                print(f"kernels of {way}, 3 steps\n{table}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--scan", default="hilbert")
    parser.add_argument("--check-only", action="store_true")
    parser.add_argument("--sides", default="", help="only these map sides (e.g. 64,32), of 64, 32, 16, 8")
    parser.add_argument("--profile", action="store_true", help="print each way's kernels (GPU)")
    parser.add_argument("--json")
    parser.add_argument("--baseline", type=Path, help="a kernels/ folder of another commit: fused-baseline")
    parser.add_argument("--configs", default="auto", help="this tree's config spaces (scan_ab.py), ';'-sep.")
    args = parser.parse_args()
    if args.baseline:
        global BASELINE

        BASELINE = load_baseline(args.baseline)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    sides = {int(x) for x in args.sides.split(",") if x}
    sizes = tuple(s for s in SS2D_SIZES if not sides or s[1] in sides) if cuda else ((4, 4),)
    batch = args.batch if cuda else 1
    ways = [w for w in args.ways.split(",") if w in WAYS and (w != "fused-baseline" or BASELINE)]
    rows = []
    specs = [c for c in args.configs.split(";") if c]
    for dtype in args.dtypes.split(","):
        for d_inner, side in sizes:
            inputs = ss2d_inputs(batch, d_inner, side, dtype, device, args.scan)
            for spec in specs:
                if args.configs != "auto":  # else the caller's knobs as they are
                    use_configs(spec)
                row = {"dtype": dtype, "d_inner": d_inner, "side": side, "batch": batch,
                       **({"configs": spec} if len(specs) > 1 else {}),
                       **measure(inputs, ways, cuda and not args.check_only, args.profile)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    os.environ.pop("MAMBAAD_SCAN_FUSED_KERNEL", None)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""max_pool2d (kernels/max_pool.py): the Triton kernel against F.max_pool2d on the ResNet stem's max pool.

nn.MaxPool2d(3, stride=2, padding=1) on (B, 64, 128, 128) channels-last fp16 and bf16 maps, B in --batch:
PyTorch's max_pool_forward_nhwc took 71 us a call at batch 16 in v1.20's trace, H200. Each backend (and each
tile config of the Triton kernel, so that one GPU run picks the best; "default" is kernels/max_pool.py's)
is captured --iters times in one CUDA graph, the graph replayed --reps times, timed with CUDA events: the
median per call. GB/s counts the input read once and the output written once. Checks that every config
equals F.max_pool2d exactly (NaN positions included). One JSON line per case and backend. Note: at batch 16
the 34 MB input fits in the H200's L2 between back-to-back calls; batch 64's does not.

    python benchmarks/max_pool_bench.py --batch 16 64 --json max_pool.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels.channel_sums import map_rows  # noqa: E402
from kernels.max_pool import _forward, _tiles  # noqa: E402

KERNEL, STRIDE, PADDING = 3, 2, 1
# (BLOCK_P, BLOCK_C, num_warps) tried besides the default
CONFIGS = [(16, 64, 4), (32, 64, 4), (64, 64, 4), (64, 64, 8), (128, 64, 8), (64, 32, 4), (128, 32, 4)]


def graph_us(fn, iters: int, reps: int) -> float:
    """Median microseconds per call of fn, from replays of a CUDA graph of `iters` calls."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # compile and warm up outside the capture
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(iters):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / iters)
    return statistics.median(times)


def same(y: torch.Tensor, ref: torch.Tensor) -> bool:
    """y equals ref exactly, NaN positions included, and is channels-last."""
    return bool(torch.equal(y.isnan(), ref.isnan()) and torch.equal(y.nan_to_num(), ref.nan_to_num())
                and y.is_contiguous(memory_format=torch.channels_last))


def bench_map(x: torch.Tensor, iters: int, reps: int) -> list[dict]:
    """One row per backend and tile config on the map x."""
    k, s, p = (KERNEL,) * 2, (STRIDE,) * 2, (PADDING,) * 2
    ref = F.max_pool2d(x, KERNEL, STRIDE, PADDING)
    nbytes = (x.numel() + ref.numel()) * x.element_size()
    configs = [("default", _tiles(x.shape[1]))]
    for bp, bc, w in CONFIGS:
        configs.append((f"P{bp}_C{bc}_w{w}", {"BLOCK_P": bp, "BLOCK_C": bc, "num_warps": w}))
    cases = {"torch": (lambda: F.max_pool2d(x, KERNEL, STRIDE, PADDING), None)}
    for name, tiles in configs:
        cases[f"triton {name}"] = (lambda tiles=tiles: _forward(x, k, s, p, tiles), tiles)
    rows, torch_us = [], None
    for name, (fn, tiles) in cases.items():
        with torch.no_grad():
            y = fn()
            us = graph_us(fn, iters, reps)
        torch_us = us if name == "torch" else torch_us
        row = {"backend": name, "dtype": str(x.dtype)[6:], "batch": x.shape[0], "shape": list(x.shape),
               "us": round(us, 2), "GB/s": round(nbytes / us / 1e3, 1), "speedup": round(torch_us / us, 2),
               "equal": same(y, ref)}
        if tiles is not None:
            row["tiles"] = tiles
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--iters", type=int, default=50, help="calls per CUDA graph")
    parser.add_argument("--reps", type=int, default=20, help="graph replays timed")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("max_pool_bench.py: no CUDA device; nothing timed")
        return
    rows = []
    for dtype in (torch.float16, torch.bfloat16):
        for batch in args.batch:
            x = torch.randn(batch, 64, 128, 128, device="cuda").to(dtype)
            x = x.contiguous(memory_format=torch.channels_last)
            map_rows(x).view(-1)[::9973] = float("nan")  # a few NaNs: both must propagate them alike
            rows += bench_map(x, args.iters, args.reps)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""Where a step's tensor copies come from: GPU time of aten::copy_ per call site and input shapes.

    python benchmarks/copy_sites.py --variant bf16+cl --batch-size 64 --phase train

Runs a few steps of benchmarks/model_throughput.py's model (random weights) under torch.profiler with stacks
and shapes, then sums the GPU time of every copy (dtype casts, layout changes) by the innermost frame of this
project or of torch.nn, and prints the largest sites. On a CPU the times are CPU times.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).parent))
from model_throughput import VARIANTS, split_variant  # noqa: E402

from mambaad_cli.engine.bench import model_throughput  # noqa: E402

COPIES = ("aten::copy_",)
OURS = ("mambaad_cli", "kernels", "torch/nn/modules", "torch/nn/functional", "torch/amp")


def site(event) -> str:
    """The innermost caller of this project (or torch.nn / autocast) of a profiler event: with_stack
    records Python frames as parent events. In the backward (autograd's thread, no Python frames) the
    autograd node. "?" where neither is recorded (the H200's forward copies, torch 2.11)."""
    node, autograd = event.cpu_parent, None
    while node is not None:
        if any(part in node.name for part in OURS):
            return node.name
        if autograd is None and node.name.startswith("autograd::engine::evaluate_function"):
            autograd = node.name.split(": ", 1)[-1]
        node = node.cpu_parent
    return f"backward: {autograd}" if autograd else "?"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="mvtec")
    parser.add_argument("--variant", default="bf16+cl", choices=list(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--phase", default="train", choices=("train", "infer"))
    parser.add_argument("--image-size", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    from torch.profiler import ProfilerActivity, profile

    overrides, env, benchmark = split_variant(args.variant)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    # one untimed call first: compiling and autotuning the scan kernels is not a step's work
    with mock.patch.dict(os.environ, env):
        model_throughput(args.preset, args.batch_size, args.device, args.backend, args.image_size, 1, 1,
                         overrides, phases=(args.phase,), cudnn_benchmark=benchmark)
        with profile(activities=activities, record_shapes=True, with_stack=True) as prof:
            model_throughput(args.preset, args.batch_size, args.device, args.backend, args.image_size,
                             args.steps, 1, overrides, phases=(args.phase,), cudnn_benchmark=benchmark)
    gpu = args.device.startswith("cuda")
    totals: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        if event.name not in COPIES:
            continue
        if gpu:
            us = getattr(event, "self_device_time_total", None)
            us = event.self_cuda_time_total if us is None else us
        else:
            us = event.self_cpu_time_total
        shapes = " ".join("x".join(map(str, s)) for s in event.input_shapes if s)
        entry = totals[(site(event), shapes)]
        entry[0] += us
        entry[1] += 1
    steps = args.steps + 1  # the profiled call's warm-up step and its timed ones
    all_us = sum(v[0] for v in totals.values())
    calls = sum(v[1] for v in totals.values()) / steps
    print(f"{args.variant}, batch {args.batch_size}, {args.phase}: copies {all_us / steps / 1000:.2f} ms "
          f"per step ({'GPU' if gpu else 'CPU'} time), {calls:.0f} calls per step")
    for (where, shapes), (us, n) in sorted(totals.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"{us / steps / 1000:8.3f} ms {n / steps:6.1f}x  {shapes[:60]:60s} {where}")


if __name__ == "__main__":
    main()

"""Model throughput: training and inference images/s of MambaAD for a preset, on CPU or GPU.

    python benchmarks/model_throughput.py --preset mvtec --batch-size 16 --device cuda
    python benchmarks/model_throughput.py --preset demo --device cpu --steps 3

Weights are random (encoder weights "none"): throughput does not depend on them. The scan backend
is the config's (auto: triton on GPU when available, else torch); --backend overrides it.
The measurement itself is mambaad_cli.engine.bench.model_throughput (also behind `mambaad bench --model`).
"""

from __future__ import annotations

import argparse
import platform

import torch

from mambaad_cli.engine.bench import model_throughput


def measure(args: argparse.Namespace) -> dict[str, float]:
    return model_throughput(
        args.preset, args.batch_size, args.device, args.backend, args.image_size, args.steps, args.warmup
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="mvtec")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"device: {name}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    res = measure(args)
    print(f"preset {args.preset}, batch {args.batch_size}, backend {args.backend}")
    for k, v in res.items():
        print(f"  {k:24s} {v:10.2f}")


if __name__ == "__main__":
    main()

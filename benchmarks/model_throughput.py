"""Model throughput: training and inference images/s of MambaAD for a preset, on CPU or GPU.

    python benchmarks/model_throughput.py --preset mvtec --batch-size 16 --device cuda
    python benchmarks/model_throughput.py --preset demo --device cpu --steps 3

Weights are random (encoder weights "none"): throughput does not depend on them. The scan backend
is the config's (auto: triton on GPU when available, else torch); --backend overrides it.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from mambaad_cli.config import load_preset
from mambaad_cli.model import anomaly_map, build_model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace) -> dict[str, float]:
    device = torch.device(args.device)
    overrides = {"model.encoder.weights": "none", "model.decoder.scan_backend": args.backend}
    cfg = load_preset(args.preset, overrides)
    size = args.image_size or cfg.data.image_size
    model = build_model(cfg).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    x = torch.rand(args.batch_size, 3, size, size, device=device)

    def train_step() -> None:
        enc, dec = model(x)
        loss = model.loss(enc, dec, 5.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()

    @torch.inference_mode()
    def infer_step() -> None:
        enc, dec = model(x)
        anomaly_map(enc, dec, (size, size), sigma=cfg.eval.sigma)

    result = {}
    for name, fn, train_mode in (("train", train_step, True), ("infer", infer_step, False)):
        model.train(train_mode)
        for _ in range(args.warmup):
            fn()
        sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            fn()
        sync(device)
        seconds = (time.perf_counter() - start) / args.steps
        result[f"{name}_ms_per_batch"] = 1000 * seconds
        result[f"{name}_images_per_s"] = args.batch_size / seconds
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


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

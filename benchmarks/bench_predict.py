"""Throughput of `mambaad predict`: images/s end to end (read, model, map, PNG writes), CPU or GPU.

    python benchmarks/bench_predict.py --model runs/demo/latest --images 64 --batch-size 16
    python benchmarks/bench_predict.py --model RUN --size 1024 --writers 1,0 --device cuda

Takes up to --images test images of the run's own dataset (or, with --size, synthetic images of that
size, to see the cost of resizing and writing large images), runs one warm-up batch, then times
predict() as the command runs it, and the model alone (forward + anomaly map) on the same batches.
Prints one JSON line with the figures and the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mambaad_cli.data import build_datasets, write_png
from mambaad_cli.engine.checkpoint import load_model
from mambaad_cli.engine.predict import predict
from mambaad_cli.engine.runs import resolve_run_dir
from mambaad_cli.model import anomaly_map


def prepare_images(run_dir: Path, folder: Path, count: int, size: int | None) -> list[Path]:
    if size:
        rng = np.random.default_rng(0)
        paths = [folder / f"img{i:04d}.png" for i in range(count)]
        for p in paths:
            write_png(p, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        return paths
    _, cfg, _ = load_model(run_dir)
    _, test_ds, _ = build_datasets(cfg.data)
    folder.mkdir(parents=True, exist_ok=True)
    records = test_ds.records[:: max(1, len(test_ds.records) // count)][:count]  # every class
    paths = []
    for i, rec in enumerate(records):
        dst = folder / f"img{i:04d}{Path(rec['img_path']).suffix}"
        shutil.copy(test_ds.root / rec["img_path"], dst)
        paths.append(dst)
    return paths


def model_only(run_dir: Path, paths: list[Path], batch_size: int, device: str = "cpu") -> float:
    from mambaad_cli.data import image_to_tensor, read_image

    model, cfg, _ = load_model(run_dir, device)
    size = cfg.data.image_size
    tensors = [image_to_tensor(read_image(p), size) for p in paths]
    starts = range(0, len(tensors), batch_size)
    batches = [torch.stack(tensors[i : i + batch_size]).to(device) for i in starts]
    with torch.inference_mode():
        enc, dec = model(batches[0])  # warm-up
        start = time.perf_counter()
        for b in batches:
            enc, dec = model(b)
            anomaly_map(enc, dec, (size, size), sigma=cfg.eval.sigma)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return len(paths) / (time.perf_counter() - start)


@contextlib.contextmanager
def _io_only(on: bool):
    """predict's scorer replaced by one that returns the real scorer's maps of its first batch (so the PNGs
    hold real maps), repeated to each batch's size."""
    if not on:
        yield
        return
    import importlib

    module = importlib.import_module("mambaad_cli.engine.predict")
    real = module.make_scorer

    def replaying(model, cfg, device):
        score, maps = real(model, cfg, device), []

        def replay(images):
            if not maps:
                maps.append(score(images))
            first = maps[0]
            return first[torch.arange(len(images), device=first.device) % len(first)]

        return replay

    module.make_scorer = replaying
    try:
        yield
    finally:
        module.make_scorer = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/demo/latest")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=0, help="synthetic square images of this size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--writers", default="0", help="comma-separated predict(writers=...) to time side by "
                        "side (0: its default)")
    parser.add_argument("--workers", default="0", help="comma-separated image-loading worker counts to time")
    parser.add_argument("--io-only", action="store_true",
                        help="replace the model by the maps of its first batch, replayed: predict's reading, "
                        "resizing and writing alone, as behind a GPU that scores in no time")
    parser.add_argument("--graphs", default="auto", help="comma-separated: auto (the run's eval.cuda_graphs) "
                        "or false, timed side by side")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = resolve_run_dir(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        paths = prepare_images(run_dir, folder, args.images, args.size or None)
        common = dict(run=run_dir, device=args.device, batch_size=args.batch_size, show_progress=False)
        predict(paths[: args.batch_size], Path(tmp) / "warm", **common)
        timings = []  # (graphs, workers, writers, images/s), in the order timed
        with _io_only(args.io_only):
            for graphs in args.graphs.split(","):
                for workers in [int(x) for x in args.workers.split(",")]:
                    for w in [int(x) for x in args.writers.split(",")]:
                        setting = False if graphs == "false" else None
                        result = predict(paths, Path(tmp) / f"out{graphs}{workers}_{w}", writers=w or None,
                                         num_workers=workers, cuda_graphs=setting, **common)
                        timings.append((graphs, workers, w, round(result.images_per_s, 2)))
        forward = model_only(run_dir, paths, args.batch_size, args.device)
    print(
        json.dumps(
            {
                "images": len(result.predictions),
                "image_size": args.size or "dataset",
                "batch_size": args.batch_size,
                "predict_images_per_s": round(result.images_per_s, 2),
                "predict_images_per_s_by_graphs_workers_writers": timings,
                "io_only": args.io_only,
                "device": args.device,
                "model_only_images_per_s": round(forward, 2),
                "torch_threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()

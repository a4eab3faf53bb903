"""Training DataLoader images/s: decoding every epoch against reading the image cache (data.cache_images).

    python benchmarks/loader_bench.py --images 200 --source-size 1024 --workers 2
    python benchmarks/loader_bench.py --root ../shared/data/real-dev --dataset folder --workers 2

Without --root it writes --images synthetic MVTec-layout PNGs of --source-size pixels (textured, so that
they compress like photos) into a temporary folder. It times two epochs of each: the plain dataset, then
the cached one (after building the cache, timed separately), with the training loader's settings (batch
size, workers, pinned memory off on CPU). Prints one JSON line: images/s of each, the build time, the
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mambaad_cli.config import DataConfig
from mambaad_cli.data import build_datasets, cache_images, collate_samples, write_png


def synthetic_folder(root: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    import cv2

    for i in range(n):
        noise = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
        image = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        image = np.clip(image.astype(int) + rng.integers(-6, 7, image.shape), 0, 255).astype(np.uint8)
        write_png(root / "part" / "train" / "good" / f"{i:04d}.png", image)
    write_png(root / "part" / "test" / "good" / "0000.png", image)
    return root


def images_per_s(dataset, batch_size: int, workers: int, epochs: int) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        collate_fn=collate_samples, persistent_workers=workers > 0)
    next(iter(loader))  # workers started
    start, n = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            n += batch["image"].shape[0]
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="a dataset folder (default: synthetic PNGs in a temporary folder)")
    parser.add_argument("--dataset", default="folder")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--source-size", type=int, default=1024)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="loader-bench-"))
    os.environ["MAMBAAD_CACHE"] = str(tmp / "cache")  # a fresh cache: the build is part of what is timed
    try:
        root = Path(args.root) if args.root else synthetic_folder(tmp / "data", args.images, args.source_size)
        train_ds, _, _ = build_datasets(DataConfig(dataset=args.dataset, root=str(root),
                                                   image_size=args.image_size))
        plain = images_per_s(train_ds, args.batch_size, args.workers, args.epochs)
        start = time.perf_counter()
        (cached_ds,) = cache_images((train_ds,), args.workers)
        build_s = time.perf_counter() - start
        cached = images_per_s(cached_ds, args.batch_size, args.workers, args.epochs)
        print(json.dumps({
            "images": len(train_ds), "source": args.root or f"synthetic {args.source_size}px PNG",
            "image_size": args.image_size, "workers": args.workers, "batch_size": args.batch_size,
            "decoding_images_per_s": round(plain, 1), "cached_images_per_s": round(cached, 1),
            "ratio": round(cached / plain, 2), "cache_build_s": round(build_s, 2),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "torch_threads": torch.get_num_threads(),
        }), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

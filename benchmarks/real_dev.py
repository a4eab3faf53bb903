"""Quality check on real data: one multi-class model on ../shared/data/real-dev (MVTec-3D tire and
KolektorSDD), bundled EfficientNet-Lite0 encoder, then the seven metrics per class.

    python benchmarks/real_dev.py --root ../shared/data/real-dev --epochs 20 --device cuda
    python benchmarks/real_dev.py --root ... --minutes 6      # pick the epochs that fit 6 minutes

With --minutes, a few timed steps measure the throughput first and the epoch count is chosen from it
(the lr schedule needs the total up front). Equivalent CLI command:
    mambaad train --preset folder --data-root ROOT --set model.encoder.name=tf_efficientnet_lite0 \
        --set model.encoder.weights=bundled --epochs N [--precision bf16 --channels-last] [--no-cuda-graphs]
        [--set data.cache_images=true]
"""

from __future__ import annotations

import argparse
import csv
import json
import time

from rich.console import Console

from mambaad_cli.config import PRECISIONS, load_preset
from mambaad_cli.engine import train
from mambaad_cli.viz.tables import metrics_table


def config(args: argparse.Namespace, epochs: int, run_name: str, max_steps: int = 0):
    return load_preset(
        "folder",
        {
            "data.root": args.root,
            "data.num_workers": args.workers,
            "model.encoder.name": "tf_efficientnet_lite0",
            "model.encoder.weights": "bundled",
            "train.epochs": epochs,
            "train.device": args.device,
            "train.precision": args.precision,
            "train.channels_last": args.channels_last,
            "train.cuda_graphs": args.cuda_graphs,
            "eval.cuda_graphs": args.cuda_graphs,
            "data.cache_images": args.cache_images,
            "model.decoder.scan_backend": args.backend,
            "train.max_steps": max_steps,
            "train.eval_at_end": max_steps == 0,
            "output_dir": args.output_dir,
            "run_name": run_name,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default="../shared/data/real-dev")
    parser.add_argument("--epochs", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=0.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--output-dir", default="runs")
    parser.add_argument("--run-name", default="real-dev")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default="auto",
                        help="train and evaluate as CUDA graphs (default auto: on one GPU, as mambaad train)")
    parser.add_argument("--backend", default="auto", help="model.decoder.scan_backend")
    parser.add_argument("--cache-images", action="store_true", help="data.cache_images: decoded, on disk")
    args = parser.parse_args()
    epochs = args.epochs
    if not epochs:
        probe = train(config(args, 1000, args.run_name + "-probe", max_steps=30), show_progress=False)
        # time the last 20 steps: the first ones pay for warm-up (cudnn autotuning, workers starting)
        with (probe.run_dir / "log.csv").open() as f:
            rows = list(csv.DictReader(f))
        per_step = (float(rows[-1]["elapsed_s"]) - float(rows[-3]["elapsed_s"])) / 20
        steps_per_epoch = 481 // 16
        epochs = max(1, int(args.minutes * 60 / (per_step * steps_per_epoch)))
        print(f"probe: {per_step:.3f} s/step -> {epochs} epochs fit {args.minutes} min")
    start = time.perf_counter()
    result = train(config(args, epochs, args.run_name), show_progress=False)
    wall = time.perf_counter() - start
    Console().print(metrics_table(result.metrics, title=f"real-dev, {epochs} epochs, bundled encoder (%)"))
    print(
        json.dumps(
            {
                "epochs": epochs,
                "steps": result.steps,
                "train_seconds": round(result.seconds, 1),
                "wall_seconds": round(wall, 1),
                "run_dir": str(result.run_dir),
            }
        )
    )


if __name__ == "__main__":
    main()

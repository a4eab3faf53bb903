"""Datasets evaluated as the mean over separately trained splits (COCO-AD: 4 splits, paper protocol).

`train --preset coco_ad` with data.coco_split = -1 trains one model per split into
runs/coco_ad/<name>/split<k>/ (each an ordinary run folder) and writes the mean over the splits to
runs/coco_ad/<name>/metrics.json: one row per split (its mean over classes) and their plain mean.
`eval runs/coco_ad/<name>` re-evaluates every split and rewrites that summary.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from mambaad_cli.atomic import write_text
from mambaad_cli.config import Config
from mambaad_cli.engine.distributed import barrier, is_main_process, on_main
from mambaad_cli.engine.evaluate import SPLIT_PREFIX, EvalResult, mean_over_splits, write_metrics
from mambaad_cli.engine.runs import LATEST, new_run_dir, point_latest


def train_splits(cfg: Config, data_configs: list, train_one) -> tuple[Path, int, float, EvalResult | None]:
    """Train `train_one(cfg_k)` for each split's DataConfig; returns (folder, steps, seconds, mean)."""
    base = on_main(_new_base, cfg)  # rank 0 writes, every rank learns the folder (engine/distributed.py)
    results: dict[str, EvalResult] = {}
    steps, start = 0, time.perf_counter()
    for dc in data_configs:
        name = f"{SPLIT_PREFIX}{dc.coco_split}"
        cfg_k = dataclasses.replace(cfg, data=dc, run_name=f"{base.name}/{name}")
        result = train_one(cfg_k)
        steps += result.steps
        if result.metrics is not None:
            results[name] = result.metrics
    summary = mean_over_splits(results) if results else None
    if is_main_process():
        (base / LATEST).unlink(missing_ok=True)  # each split's run pointed <name>/latest at itself
        point_latest(base)
        if summary is not None:
            write_metrics(base, summary, cfg)
    barrier()
    return base, steps, time.perf_counter() - start, summary


def _new_base(cfg: Config) -> Path:
    base = new_run_dir(cfg)
    write_text(base / "config.yaml", cfg.to_yaml())
    return base

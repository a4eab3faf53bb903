"""Evaluation on the test split: anomaly maps -> the seven metrics per class and their mean.

Streaming: the test set is walked class by class; only the current class's maps are held (float32),
so memory is bounded by the largest class, not by the dataset (Real-IAD has 114k test images).
Protocol (reference/mambaad_spec.md 5.1-5.2): maps at the training resolution, masks resized bilinearly
and binarised at 0.5, image label = "the resized mask has a defect pixel", image score = max of the map.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mambaad_cli.atomic import write_text
from mambaad_cli.config import Config, config_from_dict, set_field
from mambaad_cli.data import build_datasets, cache_images
from mambaad_cli.engine.checkpoint import load_model, load_run_info, update_model_json
from mambaad_cli.engine.distributed import (
    broadcast_from_main,
    current,
    distributed_session,
    gather_to_main,
    is_main_process,
    on_main,
    shard,
)
from mambaad_cli.engine.progress import console, make_progress
from mambaad_cli.engine.runs import resolve_run_dir
from mambaad_cli.engine.scoring import indices_by_class, make_scorer, score_batches
from mambaad_cli.errors import UserError
from mambaad_cli.metrics import METRIC_KEYS, MetricAccumulator, mean_metrics

PROTOCOL = {
    "name": "MambaAD / ADer (April 2024), multi-class",
    "anomaly_map": "1 - cosine per scale, bilinear upsample (align_corners=True), sum, Gaussian sigma",
    "image_score": "max of the smoothed map",
    "image_label": "1 if the mask, resized bilinearly to the map size and binarised at 0.5, "
    "has a defect pixel",
    "mask": "resized bilinearly to the map size, binarised at 0.5",
    "mean": "plain mean over classes; a class whose metric is undefined (nan) is left out of that mean",
    "I-AUROC/I-AP/P-AUROC/P-AP": "exact over all thresholds (scikit-learn definitions; AP is step-wise)",
    "I-F1max/P-F1max": "max F1 over all thresholds (exact)",
    "AUPRO": "MVTec reference: mean per-region overlap over 8-connected GT regions, FPR in [0, 0.3] "
    "interpolated at 0.3, trapezoid, divided by 0.3",
    "P-F1max@21": "paper-era pixel F1-max: 21 thresholds on class min-max normalised maps (spec 5.2)",
    "AUPRO@paper": "paper-era AUPRO: ~100 thresholds, FPR < 0.3 re-normalised min-max (spec 5.2)",
    "I-Precision@thr/I-Recall@thr/I-F1@thr": "image-level, at the deployable per-class threshold of "
    "model.json (chosen without test images; engine/calibrate.py)",
    "paper_columns": ["I-AUROC", "I-AP", "I-F1max", "P-AUROC", "P-AP", "P-F1max@21", "AUPRO@paper"],
}


@dataclass
class EvalResult:
    per_class: dict[str, dict[str, float]]
    mean: dict[str, float]
    counts: dict[str, dict[str, int]]
    score_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_s: float = 0.0

    def to_json(self, cfg: Config) -> dict[str, Any]:
        return {
            "protocol": {
                **PROTOCOL,
                "sigma": cfg.eval.sigma,
                "image_size": cfg.data.image_size,
                "dataset": cfg.data.dataset,
                "preset": cfg.preset,
            },
            "mean": self.mean,
            "classes": self.per_class,
            "counts": self.counts,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 2),
        }


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    test_ds,
    cfg: Config,
    device: torch.device,
    show_progress: bool = True,
    thresholds: dict[str, float] | None = None,
) -> EvalResult:
    """The seven metrics (and named variants) per class; with `thresholds` (model.json's deployable
    per-class thresholds) also the image-level precision, recall and F1 at that threshold.

    In a distributed run (engine/distributed.py) each rank scores a contiguous block of every class and
    rank 0 merges the accumulators' arrays in rank order: the same arrays, so the same numbers, as one
    process (given the same maps). Every rank returns the result."""
    ctx = current()
    per_class: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    stats: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    mine = {c: shard(idx, ctx.rank, ctx.world_size) for c, idx in indices_by_class(test_ds).items()}
    with make_progress(show_progress and ctx.is_main) as progress:
        task = progress.add_task("evaluate", total=sum(map(len, mine.values())), extra="")
        scorer = make_scorer(model, cfg, device)
        for cls_name, indices in mine.items():
            acc = MetricAccumulator()
            for sb in score_batches(model, test_ds, cfg, device, indices, scorer):
                # on a GPU the maps stay there: the accumulator sorts them with torch on the device
                acc.update(
                    sb.scores, sb.labels, sb.maps if device.type == "cuda" else sb.maps.cpu(), sb.masks
                )
                progress.update(task, advance=len(sb.scores), extra=cls_name)
            acc = merge_on_main(acc, device)
            if acc is None:  # not rank 0: its share is sent
                continue
            per_class[cls_name] = acc.compute()
            if thresholds and cls_name in thresholds:
                per_class[cls_name].update(at_threshold(*acc.image_arrays(), thresholds[cls_name]))
            counts[cls_name] = acc.counts()
            stats[cls_name] = acc.score_stats()
    seconds = time.perf_counter() - start
    result = EvalResult(
        per_class=per_class,
        mean=mean_metrics(per_class),
        counts=counts,
        score_stats=stats,
        seconds=seconds,
        images_per_s=len(test_ds) / max(seconds, 1e-9),
    )
    return broadcast_from_main(result)


def merge_on_main(acc: MetricAccumulator, device: torch.device) -> MetricAccumulator | None:
    """The accumulators of every rank merged in rank order, on rank 0 (None elsewhere); `acc` itself in
    a single process. Only the compact arrays travel (scores, labels, pixel values, region areas)."""
    if not current().enabled:
        return acc
    states = gather_to_main(acc.state())
    return None if states is None else MetricAccumulator.from_states(states, device=device)


def at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Image-level precision, recall and F1 of the rule "defective if score >= threshold": what a
    deployed model achieves, unlike the oracle F1-max. nan where undefined."""
    predicted = scores >= threshold
    tp = float((predicted & labels).sum())
    precision = tp / predicted.sum() if predicted.any() else float("nan")
    recall = tp / labels.sum() if labels.any() else float("nan")
    f1 = 2 * tp / (predicted.sum() + labels.sum()) if labels.any() else float("nan")
    return {"I-Precision@thr": float(precision), "I-Recall@thr": float(recall), "I-F1@thr": float(f1)}


def write_metrics(run_dir: Path, result: EvalResult, cfg: Config) -> None:
    payload = result.to_json(cfg)
    write_text(run_dir / "metrics.json", json.dumps(nan_to_null(payload), indent=2) + "\n")
    write_text(run_dir / "metrics.csv", metrics_csv(result))


def metric_columns(result: EvalResult) -> list[str]:
    extra = sorted({k for m in result.per_class.values() for k in m} - set(METRIC_KEYS))
    return list(METRIC_KEYS) + extra


def metrics_csv(result: EvalResult) -> str:
    cols = metric_columns(result)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["class", *cols])
    for name in sorted(result.per_class):
        writer.writerow([name, *(_fmt(result.per_class[name].get(c)) for c in cols)])
    writer.writerow(["mean", *(_fmt(result.mean.get(c)) for c in cols)])
    return buf.getvalue()


def _fmt(v: float | None) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.6f}"


def nan_to_null(obj: Any) -> Any:
    """JSON has no NaN: an undefined metric is written as null."""
    if isinstance(obj, dict):
        return {k: nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_null(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


SPLIT_PREFIX = "split"  # multi-split runs (COCO-AD): <run>/split<k>/ (engine/splits.py)


def split_run_dirs(folder: Path) -> list[Path]:
    """The split run folders of a multi-split run, sorted; [] for an ordinary run folder."""
    if (folder / "model.json").is_file():
        return []
    return sorted(p for p in folder.glob(f"{SPLIT_PREFIX}*") if (p / "model.json").is_file())


def mean_over_splits(results: dict[str, EvalResult]) -> EvalResult:
    """One row per split (its mean over classes), and the plain mean of the rows."""
    per_split = {name: {k: v for k, v in r.mean.items() if k != "n_classes"} for name, r in results.items()}
    return EvalResult(
        per_class=per_split,
        mean=mean_metrics(per_split),
        counts={
            name: {"images": sum(c.get("images", 0) for c in r.counts.values())}
            for name, r in results.items()
        },
        seconds=sum(r.seconds for r in results.values()),
        images_per_s=0.0,
    )


def evaluate_run(
    run: str | Path, overrides: dict[str, Any] | None = None, show_progress: bool = True
) -> tuple[Path, EvalResult, Config]:
    """Evaluate a finished run on its test split (or another root via overrides); write the
    metrics files. A multi-split run (COCO-AD) evaluates every split and writes their mean.
    Under torchrun every process scores a shard and rank 0 writes the files."""
    folder = Path(run)
    splits = split_run_dirs(folder.resolve()) if folder.is_dir() else []
    run_dirs = splits or [resolve_run_dir(run)]
    device_name = (overrides or {}).get("train.device") or load_run_info(run_dirs[0])[0].train.device
    with distributed_session(str(device_name)) as (ctx, device):
        if not splits:
            result, cfg = _evaluate_one(run_dirs[0], overrides, show_progress, device)
            return run_dirs[0], result, cfg
        results = {p.name: _evaluate_one(p, overrides, show_progress, device)[0] for p in splits}
        summary = mean_over_splits(results)
        cfg = load_run_config(folder.resolve())
        if ctx.is_main:
            write_metrics(folder.resolve(), summary, cfg)
        return folder.resolve(), summary, cfg


def _evaluate_one(
    run_dir: Path, overrides: dict[str, Any] | None, show_progress: bool, device: torch.device
) -> tuple[EvalResult, Config]:
    cfg, _ = load_run_info(run_dir)
    for key, value in (overrides or {}).items():
        set_field(cfg, key, value)
    model, _, info = load_model(run_dir, device, cfg)
    _, test_ds, _ = build_datasets(cfg.data)
    if len(test_ds) == 0:
        raise UserError(f"--data-root {cfg.data.root}: the test split is empty")
    if cfg.data.cache_images:
        # rank 0 decodes (once), every rank reads the same files
        (test_ds,) = on_main(cache_images, (test_ds,), cfg.data.num_workers, console.print)
    result = evaluate(
        model, test_ds, cfg, device, show_progress=show_progress, thresholds=info.get("thresholds") or None
    )
    if is_main_process():
        write_metrics(run_dir, result, cfg)
        update_model_json(run_dir, score_stats=result.score_stats)
    return result, cfg


def load_run_config(run_dir: Path) -> Config:
    """The resolved config a run saved as config.yaml."""
    return config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))

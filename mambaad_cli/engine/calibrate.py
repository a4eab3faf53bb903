"""Deployable per-class thresholds and colour scales, chosen on images the model did not train on.

Validation split: `data.val_fraction` of each class's normal training images is held out of training
(a seeded, per-class draw, so a resume holds out the same images). After training, each class gets:
- a threshold on the image score (predict says "defective" when score >= threshold):
  * with defective validation images too (a dataset that ships a defective validation split), the
    threshold of maximal F1 on the validation images;
  * with normal validation images only (every benchmark as distributed), the NORMAL_QUANTILE quantile of
    the held-out normal scores: about 1 % of unseen normal images are expected above it;
  * with no validation images at all (data.val_fraction = 0, as the paper presets keep the paper's training
    set), the same quantile of the scores of up to FALLBACK_IMAGES training images: in-sample scores are
    lower than unseen ones, so this threshold errs towards false alarms; model.json names the source.
- a colour scale [lo, hi] for heat-map overlays, fixed per class so that overlays are comparable across
  images: lo = median normal pixel value, hi = lo + 1.5 * (threshold - lo).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from mambaad_cli.config import Config
from mambaad_cli.data import AnomalyDataset
from mambaad_cli.engine.scoring import score_batches
from mambaad_cli.metrics.image import f1max_and_threshold

NORMAL_QUANTILE = 0.99
FALLBACK_IMAGES = 100
PIXELS_PER_IMAGE = 4096  # sampled per image for the colour scale's median


def split_validation(
    train_ds: AnomalyDataset, fraction: float, seed: int
) -> tuple[AnomalyDataset, AnomalyDataset]:
    """Hold out `fraction` of each class's normal training images (at least one when fraction > 0 and the
    class has two or more). Returns (training set, validation set)."""
    if fraction <= 0:
        return train_ds, train_ds.subset([])
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(train_ds.records):
        by_class[rec["cls_name"]].append(i)
    held: set[int] = set()
    for cls_name, idx in by_class.items():
        n = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        rng = np.random.default_rng([seed, zlib.crc32(cls_name.encode())])
        held.update(idx[j] for j in rng.permutation(len(idx))[:n])
    train = [r for i, r in enumerate(train_ds.records) if i not in held]
    val = [r for i, r in enumerate(train_ds.records) if i in held]
    return (
        train_ds.subset(train),
        train_ds.subset(val),
    )


def in_sample_subset(train_ds: AnomalyDataset, seed: int) -> AnomalyDataset:
    """Up to FALLBACK_IMAGES training images per class, for the fallback threshold."""
    by_class: dict[str, list[dict]] = defaultdict(list)
    for rec in train_ds.records:
        by_class[rec["cls_name"]].append(rec)
    picked: list[dict] = []
    rng = np.random.default_rng(seed)
    for recs in by_class.values():
        picked += [recs[j] for j in sorted(rng.permutation(len(recs))[:FALLBACK_IMAGES])]
    return train_ds.subset(picked)


@torch.inference_mode()
def calibrate(
    model: torch.nn.Module, val_ds: AnomalyDataset, cfg: Config, device: torch.device, source: str
) -> dict[str, Any]:
    """Thresholds, their provenance, and colour scales per class -> the fields of model.json."""
    scores: dict[str, list[float]] = defaultdict(list)
    labels: dict[str, list[bool]] = defaultdict(list)
    pixels: dict[str, list[np.ndarray]] = defaultdict(list)
    gen = torch.Generator().manual_seed(cfg.train.seed)
    for sb in score_batches(model, val_ds, cfg, device):
        flat = sb.maps.flatten(1).cpu()
        for i, cls_name in enumerate(sb.batch["cls_name"]):
            scores[cls_name].append(float(sb.scores[i]))
            labels[cls_name].append(bool(sb.labels[i]))
            if not sb.labels[i]:
                pick = torch.randint(flat.shape[1], (min(PIXELS_PER_IMAGE, flat.shape[1]),), generator=gen)
                pixels[cls_name].append(flat[i, pick].numpy())
    thresholds, info, ranges = {}, {}, {}
    for cls_name in sorted(scores):
        s, y = np.asarray(scores[cls_name]), np.asarray(labels[cls_name])
        if y.any() and not y.all():
            _, thr = f1max_and_threshold(s, y)
            how = "F1-max on validation images"
        else:
            thr = float(np.quantile(s[~y], NORMAL_QUANTILE))
            how = f"{NORMAL_QUANTILE:.0%} quantile of normal {source} scores"
        lo = float(np.median(np.concatenate(pixels[cls_name]))) if pixels[cls_name] else 0.0
        thresholds[cls_name] = float(thr)
        ranges[cls_name] = [lo, lo + 1.5 * max(float(thr) - lo, 1e-6)]
        info[cls_name] = {
            "source": source,
            "rule": how,
            "n_normal": int((~y).sum()),
            "n_defective": int(y.sum()),
        }
    return {"thresholds": thresholds, "threshold_info": info, "map_range": ranges}

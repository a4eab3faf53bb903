"""The one scoring loop over a dataset: batches -> anomaly maps, image scores and labels.

evaluate, calibrate and visualize all read images through it, so they score an image exactly as
predict does (the same model call and anomaly_map) and label it by the paper's protocol: defective
when its mask, resized to the map, has a pixel above 0.5. eval.precision bf16 runs the model under
bfloat16 autocast (engine/acceleration.py; predict follows eval.precision or its --precision); the maps
are float32 either way.
eval.cuda_graphs (auto: on CUDA devices) replays the model call and anomaly_map as one CUDA graph for the
evaluation's batch shape (engine/graphs.py); other shapes (a last, smaller batch) run eagerly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from mambaad_cli.config import Config
from mambaad_cli.data import collate_samples
from mambaad_cli.engine.acceleration import autocast
from mambaad_cli.engine.graphs import graph_step, is_compiled, use_cuda_graphs
from mambaad_cli.engine.scoring_weights import CastWeights, autocast_cast_parameters, cast_weights_on
from mambaad_cli.model import anomaly_map, image_scores


@dataclass
class ScoredBatch:
    batch: dict[str, Any]  # collate_samples' dict: image, mask, label, cls_name, defect, path
    maps: torch.Tensor  # (n, H, W) float32 on the model's device
    scores: torch.Tensor  # (n,) float32 on the CPU: max of each map
    masks: torch.Tensor  # (n, H, W) bool on the CPU
    labels: torch.Tensor  # (n,) bool on the CPU


def indices_by_class(dataset) -> dict[str, list[int]]:
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(dataset.records):
        by_class[rec["cls_name"]].append(i)
    return dict(sorted(by_class.items()))


Scorer = Callable[[torch.Tensor], torch.Tensor]


def make_scorer(model: torch.nn.Module, cfg: Config, device: torch.device) -> Scorer:
    """images on the device -> float32 anomaly maps at their resolution; one per evaluation, so that with
    eval.cuda_graphs the graph captured for the first classes is replayed for the rest."""

    graphs = use_cuda_graphs(cfg.eval.cuda_graphs, device, compiled=is_compiled(model))
    return _scorer(model, cfg, device, graphs, cast_weights_on(cfg.eval.precision, device, graphs))


def _scorer(model: torch.nn.Module, cfg: Config, device: torch.device, graphs: bool, cast: bool) -> Scorer:
    """make_scorer's scorer, with (cast) the fusion's and decoder's autocast weights as bf16 copies
    (engine/scoring_weights.py: the same maps)."""
    weights = CastWeights(model, autocast_cast_parameters(model)) if cast else None

    def score(images: torch.Tensor) -> torch.Tensor:
        with autocast(device, cfg.eval.precision, "eval.precision"):
            if weights is None:
                enc, dec = model(images)
            else:
                enc, dec = torch.func.functional_call(model, weights.tensors(), (images,))
        return anomaly_map(enc, dec, out_size=images.shape[-2:], sigma=cfg.eval.sigma).float()

    return graph_step(score, cfg.eval.cuda_graphs, "eval") if graphs else score


@torch.inference_mode()
def score_batches(
    model: torch.nn.Module,
    dataset,
    cfg: Config,
    device: torch.device,
    indices: Sequence[int] | None = None,
    scorer: Scorer | None = None,
) -> Iterator[ScoredBatch]:
    model.eval()
    scorer = scorer or make_scorer(model, cfg, device)
    loader = DataLoader(
        dataset if indices is None else Subset(dataset, list(indices)),
        batch_size=cfg.eval.batch_size,
        shuffle=False,
        num_workers=cfg.data.num_workers,
        collate_fn=collate_samples,
        pin_memory=device.type == "cuda",
    )
    for batch in loader:
        maps = scorer(batch["image"].to(device, non_blocking=True))
        masks = batch["mask"][:, 0] > 0.5
        yield ScoredBatch(batch, maps, image_scores(maps).cpu(), masks, masks.flatten(1).any(dim=1))

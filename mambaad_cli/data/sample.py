"""What every dataset yields, and how a batch of them is stacked."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch


class Sample(NamedTuple):
    image: torch.Tensor  # float32 (3, S, S), RGB in [0, 1], not normalised (the model normalises)
    mask: torch.Tensor  # float32 (1, S, S), values in {0, 1}; all zero for normal images
    label: int  # 0 normal, 1 anomalous
    cls_name: str
    defect: str  # defect type; "good" for normal images
    path: str  # the image file


def collate_samples(samples: list[Sample]) -> dict[str, Any]:
    """DataLoader collate_fn: stacked tensors plus lists of strings.

    Module level, so DataLoader worker processes can pickle it."""
    return {
        "image": torch.stack([s.image for s in samples]),
        "mask": torch.stack([s.mask for s in samples]),
        "label": torch.tensor([s.label for s in samples], dtype=torch.long),
        "cls_name": [s.cls_name for s in samples],
        "defect": [s.defect for s in samples],
        "path": [s.path for s in samples],
    }

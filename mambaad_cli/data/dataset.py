"""A torch Dataset over manifest records (ADer meta.json records)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mambaad_cli.data.imageio import read_image, read_mask
from mambaad_cli.data.resize import image_to_tensor, mask_to_tensor
from mambaad_cli.data.sample import Sample


def defect_name(record: dict[str, Any]) -> str:
    """The defect type of a record: its specie_name, "good" for normal images (VisA leaves it empty)."""
    if not record["anomaly"]:
        return "good"
    return record.get("specie_name") or "anomaly"


class AnomalyDataset(Dataset):
    """Yields `Sample`s: images resized to (image_size, image_size), masks binarised after resizing."""

    def __init__(self, root: str | os.PathLike, records: list[dict[str, Any]], image_size: int):
        self.root = Path(root)
        self.records = list(records)
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def class_names(self) -> list[str]:
        return sorted({r["cls_name"] for r in self.records})

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        path = self.root / record["img_path"]
        image = image_to_tensor(read_image(path), self.image_size)
        if record.get("mask_path"):
            mask = mask_to_tensor(read_mask(self.root / record["mask_path"]), self.image_size)
        else:
            mask = torch.zeros(1, self.image_size, self.image_size, dtype=torch.float32)
        return Sample(
            image=image,
            mask=mask,
            label=int(record["anomaly"]),
            cls_name=record["cls_name"],
            defect=defect_name(record),
            path=str(path),
        )

"""A torch Dataset over manifest records (ADer meta.json records)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mambaad_cli.data.image_cache import ImageCache, open_or_build
from mambaad_cli.data.imageio import read_image, read_mask
from mambaad_cli.data.resize import image_to_tensor, mask_to_tensor
from mambaad_cli.data.sample import Sample


def defect_name(record: dict[str, Any]) -> str:
    """The defect type of a record: its specie_name, "good" for normal images (VisA leaves it empty)."""
    if not record["anomaly"]:
        return "good"
    return record.get("specie_name") or "anomaly"


class AnomalyDataset(Dataset):
    """Yields `Sample`s: images resized to (image_size, image_size), masks binarised after resizing. With an
    `ImageCache` (data.cache_images), the records it holds are read from it instead of decoded."""

    def __init__(self, root: str | os.PathLike, records: list[dict[str, Any]], image_size: int,
                 cache: ImageCache | None = None):
        self.root = Path(root)
        self.records = list(records)
        self.image_size = int(image_size)
        self.cache = cache if cache is not None and cache.image_size == self.image_size else None

    def subset(self, records: list[dict[str, Any]]) -> AnomalyDataset:
        """Another dataset over some of these records (same root, size and cache)."""
        return AnomalyDataset(self.root, records, self.image_size, self.cache)

    def with_image_cache(self, workers: int, on_build=None) -> AnomalyDataset:
        """This dataset reading its images from the image cache, which is built first if missing
        (data/image_cache.py; `on_build(n_images, folder)` is called before a build)."""
        if not self.records:
            return self
        cache = open_or_build(self.root, self.records, self.image_size, workers, on_build=on_build)
        return AnomalyDataset(self.root, self.records, self.image_size, cache)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def class_names(self) -> list[str]:
        return sorted({r["cls_name"] for r in self.records})

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        path = self.root / record["img_path"]
        if self.cache is not None and record["img_path"] in self.cache:
            image, mask = self.cache.image(record["img_path"]), self.cache.mask(record["img_path"])
        else:
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

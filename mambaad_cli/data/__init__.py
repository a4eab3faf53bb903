"""Datasets behind one interface: every dataset yields `Sample`s read from an ADer-style manifest."""

from mambaad_cli.data.build import build_datasets, cache_images
from mambaad_cli.data.dataset import AnomalyDataset
from mambaad_cli.data.demo import ensure_demo_dataset
from mambaad_cli.data.errors import DataError
from mambaad_cli.data.formats_tree import scan_mvtec, scan_mvtec3d
from mambaad_cli.data.imageio import read_image, read_mask, write_png
from mambaad_cli.data.manifest import read_meta, write_meta
from mambaad_cli.data.prepare import prepare_data
from mambaad_cli.data.resize import image_to_tensor, mask_to_tensor
from mambaad_cli.data.sample import Sample, collate_samples

__all__ = [
    "AnomalyDataset",
    "DataError",
    "Sample",
    "build_datasets",
    "cache_images",
    "collate_samples",
    "ensure_demo_dataset",
    "image_to_tensor",
    "mask_to_tensor",
    "prepare_data",
    "read_image",
    "read_mask",
    "read_meta",
    "scan_mvtec",
    "scan_mvtec3d",
    "write_meta",
    "write_png",
]

"""`build_datasets(data_cfg)`: the one entry point from a DataConfig to train/test datasets."""

from __future__ import annotations

import re
from pathlib import Path

from mambaad_cli.data.dataset import AnomalyDataset
from mambaad_cli.data.demo import ensure_demo_dataset
from mambaad_cli.data.errors import DataError
from mambaad_cli.data.manifest import (
    Meta,
    meta_classes,
    read_meta,
    scan_mvtec,
    scan_mvtec3d,
    select_classes,
    split_records,
)

FOLDER_LAYOUTS = {
    "mvtec": scan_mvtec,
    "folder": scan_mvtec,
    "uni_medical": scan_mvtec,
    "mvtec3d": scan_mvtec3d,
}
MANIFEST_ONLY = ("visa", "realiad", "coco_ad")
DATASETS = (*FOLDER_LAYOUTS, *MANIFEST_ONLY, "demo")


def _meta_path(root: Path, meta: str) -> Path:
    path = Path(meta).expanduser()
    return path if path.is_absolute() else root / path


def _load_meta(dataset: str, root: Path, data_cfg) -> Meta:
    if data_cfg.meta:
        return read_meta(_meta_path(root, data_cfg.meta))
    if (root / "meta.json").is_file():
        return read_meta(root / "meta.json")
    if dataset in FOLDER_LAYOUTS:
        return FOLDER_LAYOUTS[dataset](root, data_cfg.classes or None)
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    raise DataError(
        f"no meta.json in {root}: run `mambaad prepare-data --dataset {dataset} --root {root}` first"
    )


def _filter_views(records: list[dict], views: list[int]) -> list[dict]:
    """Real-IAD camera views, from the _C<n>_ token of the file name."""
    wanted = {int(v) for v in views}
    out = []
    for r in records:
        m = re.search(r"_C(\d+)_", Path(r["img_path"]).name)
        if m and int(m.group(1)) in wanted:
            out.append(r)
    return out


def _check_files(root: Path, records: list[dict]) -> None:
    """Fail before training, not an hour into it, when the manifest names files that are not there."""
    missing = [p for r in records for p in (r["img_path"], r["mask_path"]) if p and not (root / p).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"file listed in the manifest not found: {root / missing[0]}{more}")


def build_datasets(data_cfg) -> tuple[AnomalyDataset, AnomalyDataset, list[str]]:
    """(train dataset, test dataset, class names) for a DataConfig.

    Uses dataset, root, meta, classes, image_size and (Real-IAD) views."""
    dataset = data_cfg.dataset.lower()
    if dataset not in DATASETS:
        raise DataError(f"unknown data.dataset '{data_cfg.dataset}' (choose from: {', '.join(DATASETS)})")
    if dataset == "demo":
        demo_root = None if data_cfg.root in ("", "demo") else data_cfg.root
        root = ensure_demo_dataset(demo_root)
        meta = scan_mvtec(root, data_cfg.classes or None)
    else:
        root = Path(data_cfg.root).expanduser()
        meta = _load_meta(dataset, root, data_cfg)
    classes = select_classes(meta_classes(meta), data_cfg.classes, root)
    train = split_records(meta, "train", classes)
    test = split_records(meta, "test", classes)
    if dataset == "realiad" and data_cfg.views:
        train, test = _filter_views(train, data_cfg.views), _filter_views(test, data_cfg.views)
    if not train:
        raise DataError(f"no training images for classes {', '.join(classes)} in {root}")
    _check_files(root, train + test)
    return (
        AnomalyDataset(root, train, data_cfg.image_size),
        AnomalyDataset(root, test, data_cfg.image_size),
        classes,
    )

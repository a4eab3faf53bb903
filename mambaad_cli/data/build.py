"""`build_datasets(data_cfg)`: the one entry point from a DataConfig to train/test datasets.

The manifest is, in order: data.meta (a file, or a folder holding the manifest), ROOT/meta.json
(ROOT/meta_20_<k>.json for COCO-AD split k), or for folder-tree layouts a scan of ROOT made on the fly.
COCO-AD with data.coco_split = -1 means "the four splits, averaged": one model per split, so the
caller builds each split's datasets from split_data_configs(data_cfg).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from mambaad_cli.data.dataset import AnomalyDataset
from mambaad_cli.data.demo import ensure_demo_dataset
from mambaad_cli.data.errors import DataError
from mambaad_cli.data.formats_coco import SPLITS, check_split, meta_name
from mambaad_cli.data.formats_realiad import parse_views, view_of
from mambaad_cli.data.formats_tree import scan_mvtec, scan_mvtec3d_tree, scan_mvtec_tree, scan_user_folder
from mambaad_cli.data.manifest import Meta, meta_classes, read_meta, select_classes, split_records
from mambaad_cli.data.problems import ProblemLog
from mambaad_cli.data.validate import drop_untrainable_classes

# Layouts that can be read without a manifest (scanned on the fly; prepare-data also checks the images).
FOLDER_LAYOUTS = {
    "mvtec": scan_mvtec_tree,
    "folder": scan_user_folder,
    "uni_medical": scan_mvtec_tree,
    "mvtec3d": scan_mvtec3d_tree,
}
MANIFEST_ONLY = ("visa", "realiad", "coco_ad")
DATASETS = (*FOLDER_LAYOUTS, *MANIFEST_ONLY, "demo")


def coco_split_metas(root: str | Path) -> dict[int, Path]:
    """{split: ROOT/meta_20_<split>.json} for the COCO-AD splits whose manifest exists."""
    root = Path(root).expanduser()
    return {k: root / meta_name(k) for k in SPLITS if (root / meta_name(k)).is_file()}


def split_data_configs(data_cfg) -> list:
    """The DataConfigs to train and evaluate separately and then average: one per COCO-AD split when
    data.dataset is coco_ad and data.coco_split is -1, else [data_cfg] itself."""
    if data_cfg.dataset.lower() == "coco_ad" and data_cfg.coco_split == -1:
        return [dataclasses.replace(data_cfg, coco_split=k) for k in SPLITS]
    return [data_cfg]


def _manifest_file(dataset: str, root: Path, data_cfg) -> Path | None:
    name = meta_name(data_cfg.coco_split) if dataset == "coco_ad" else "meta.json"
    if data_cfg.meta:
        path = Path(data_cfg.meta).expanduser()
        path = path if path.is_absolute() else root / path
        return path / name if path.is_dir() else path
    return root / name if (root / name).is_file() else None


def _prepare_hint(dataset: str, root: Path, data_cfg) -> str:
    split = f" --split {data_cfg.coco_split}" if dataset == "coco_ad" else ""
    return f"run `mambaad prepare-data --dataset {dataset} --root {root}{split}` first"


def _load_meta(dataset: str, root: Path, data_cfg) -> Meta:
    path = _manifest_file(dataset, root, data_cfg)
    if path is not None:
        if not path.is_file() and root.is_dir():
            raise DataError(f"manifest not found: {path}: {_prepare_hint(dataset, root, data_cfg)}")
        return read_meta(path)
    if dataset in FOLDER_LAYOUTS:
        log = ProblemLog(root)
        meta = FOLDER_LAYOUTS[dataset](root, data_cfg.classes or None, log)
        meta = drop_untrainable_classes(meta, log, root)
        log.warn_summary(f"{dataset} {root}")
        return meta
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    name = meta_name(data_cfg.coco_split) if dataset == "coco_ad" else "meta.json"
    raise DataError(f"no {name} in {root}: {_prepare_hint(dataset, root, data_cfg)}")


def _filter_views(records: list[dict], views: list[int]) -> list[dict]:
    """Real-IAD camera views, from the _C<n>_ token of the file name."""
    wanted = set(parse_views(views))
    return [r for r in records if view_of(r["img_path"]) in wanted]


def _check_files(root: Path, records: list[dict]) -> None:
    """Fail before training, not an hour into it, when the manifest names files that are not there."""
    missing = [p for r in records for p in (r["img_path"], r["mask_path"]) if p and not (root / p).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"file listed in the manifest not found: {root / missing[0]}{more}")


def build_datasets(data_cfg) -> tuple[AnomalyDataset, AnomalyDataset, list[str]]:
    """(train dataset, test dataset, class names) for a DataConfig.

    Uses dataset, root, meta, classes, image_size, (Real-IAD) views and (COCO-AD) coco_split."""
    dataset = data_cfg.dataset.lower()
    if dataset not in DATASETS:
        raise DataError(f"unknown data.dataset '{data_cfg.dataset}' (choose from: {', '.join(DATASETS)})")
    if dataset == "coco_ad":
        if data_cfg.coco_split == -1:
            raise DataError(
                "data.coco_split -1 stands for the four COCO-AD splits, one model each: "
                "build each split (split_data_configs) or pick one with --set data.coco_split=K (0-3)"
            )
        check_split(data_cfg.coco_split)
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


def cache_images(datasets: tuple[AnomalyDataset, ...], workers: int,
                 say: Callable[[str], None] | None = None) -> tuple[AnomalyDataset, ...]:
    """The datasets reading their images from the image cache (data.cache_images), each split its own
    cache, decoded first where missing; `say` gets a line before each such build."""

    def notice(n_images: int, folder: Path) -> None:
        if say is not None:
            say(f"decoding {n_images} images once into the image cache ({folder}; data.cache_images)")

    return tuple(ds.with_image_cache(workers, on_build=notice) for ds in datasets)

"""COCO-AD: four anomaly-detection splits built from COCO 2017 (reference/mambaad_spec.md 6.2).

Split k holds out the contiguous group [20k, 20k + 20) of the 80 categories sorted by category id.
Train: train2017 images with annotations that contain only the 60 normal categories. Test: every
val2017 image with annotations, anomalous when it contains a held-out category, with a binary mask of
those instances in val2017_mask_ad_20_<k>/<stem>.png. One manifest per split: meta_20_<k>.json.
Images without annotations are left out, as in the reference (ADer gen_benchmark/coco.py).

The instances JSON is read with plain json; polygons are filled with OpenCV as the reference does
(coordinates truncated to integers). RLE masks (crowd annotations) need pycocotools, imported only
when one has to be decoded: `pip install "mambaad[coco]"`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mambaad_cli.data.errors import DataError
from mambaad_cli.data.imageio import write_png
from mambaad_cli.data.manifest import Meta, Record

CLASS_NAME = "coco"
GROUP = 20  # categories held out per split
N_CATEGORIES = 80
SPLITS = tuple(range(N_CATEGORIES // GROUP))
ANNOTATIONS = {"train": "annotations/instances_train2017.json", "val": "annotations/instances_val2017.json"}


def meta_name(split: int) -> str:
    return f"meta_{GROUP}_{split}.json"


def mask_folder(split: int) -> str:
    return f"val2017_mask_ad_{GROUP}_{split}"


def check_split(split: int) -> None:
    if split not in SPLITS:
        raise DataError(f"COCO-AD split {split}: choose 0-{SPLITS[-1]} (or -1 for all four)")


def load_instances(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"COCO annotations not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read COCO annotations {path}: {e}") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DataError(f"{path}: not a COCO instances file (needs images, annotations, categories)")
    return data


def held_out_categories(categories: list[dict], split: int, where: Path) -> set[int]:
    ids = sorted({int(c["id"]) for c in categories})
    if len(ids) != N_CATEGORIES:
        raise DataError(f"{where}: COCO-AD needs the {N_CATEGORIES} COCO categories, found {len(ids)}")
    return set(ids[GROUP * split : GROUP * (split + 1)])


class Instances:
    """What the splits need of one instances file: images with annotations, in file order."""

    def __init__(self, path: Path, keep_annotations: bool):
        data = load_instances(path)
        self.path = path
        self.categories = data["categories"]
        self.images = {int(im["id"]): im for im in data["images"]}
        self.cats: dict[int, set[int]] = defaultdict(set)
        self.anns: dict[int, list[dict]] = defaultdict(list)
        for ann in data["annotations"]:
            self.cats[int(ann["image_id"])].add(int(ann["category_id"]))
            if keep_annotations:
                self.anns[int(ann["image_id"])].append(ann)
        missing = [i for i in self.cats if i not in self.images]
        if missing:
            raise DataError(f"{path}: annotation for image id {missing[0]} that is not in 'images'")

    def annotated(self) -> list[dict]:
        return [self.images[i] for i in self.cats]  # first-annotation order, as pycocotools' imgToAnns


def _decode_rle(segmentation: dict, height: int, width: int, where: Path, ann_id) -> np.ndarray:
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise DataError(
            f"{where}: annotation {ann_id} has an RLE mask, which needs pycocotools "
            f"(pip install 'mambaad[coco]')"
        ) from None
    rle = segmentation
    if isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects([segmentation], height, width)[0]
    return mask_utils.decode(rle).astype(bool)


def instance_mask(anns: list[dict], height: int, width: int, where: Path) -> np.ndarray:
    """Union of the instance masks of `anns` as bool (height, width)."""
    canvas = np.zeros((height, width), np.uint8)
    for ann in anns:
        seg = ann.get("segmentation")
        if isinstance(seg, list):
            for poly in seg:
                points = np.asarray(poly, dtype=np.float64).astype(np.int64).reshape(-1, 2)
                cv2.fillPoly(canvas, [points.astype(np.int32)], 255)
        elif isinstance(seg, dict):
            canvas[_decode_rle(seg, height, width, where, ann.get("id"))] = 255
    return canvas > 0


def _write_if_changed(path: Path, mask: np.ndarray) -> None:
    """Rewrite a mask only when its bytes change, so that a re-run leaves the files untouched."""
    ok, encoded = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    if ok and path.is_file() and path.read_bytes() == encoded.tobytes():
        return
    write_png(path, mask)


def _record(img_path: str, mask_path: str, anomaly: int) -> Record:
    return {
        "img_path": img_path,
        "mask_path": mask_path,
        "cls_name": CLASS_NAME,
        "specie_name": "",
        "anomaly": anomaly,
    }


def build_coco_splits(root: Path, mask_root: Path, splits: list[int]) -> dict[int, Meta]:
    """{split: manifest}; writes the masks of the anomalous test images under mask_root. Mask paths
    are relative to root when mask_root is root, absolute otherwise (a read-only root)."""
    for s in splits:
        check_split(s)
    for folder in ("train2017", "val2017"):
        if not (root / folder).is_dir():
            raise DataError(f"COCO image folder not found: {root / folder}")
    train = Instances(root / ANNOTATIONS["train"], keep_annotations=False)
    val = Instances(root / ANNOTATIONS["val"], keep_annotations=True)
    metas: dict[int, Meta] = {}
    for split in splits:
        held = held_out_categories(train.categories, split, train.path)
        train_records = [
            _record(f"train2017/{im['file_name']}", "", 0)
            for im in train.annotated()
            if not (train.cats[int(im["id"])] & held)
        ]
        test_records = []
        for im in val.annotated():
            anns = [a for a in val.anns[int(im["id"])] if int(a["category_id"]) in held]
            img_path = f"val2017/{im['file_name']}"
            if not anns:
                test_records.append(_record(img_path, "", 0))
                continue
            mask_file = mask_root / mask_folder(split) / f"{Path(im['file_name']).stem}.png"
            mask = instance_mask(anns, int(im["height"]), int(im["width"]), val.path)
            _write_if_changed(mask_file, mask)
            mask_path = mask_file.relative_to(root).as_posix() if mask_root == root else str(mask_file)
            test_records.append(_record(img_path, mask_path, 1))
        metas[split] = {"train": {CLASS_NAME: train_records}, "test": {CLASS_NAME: test_records}}
    return metas

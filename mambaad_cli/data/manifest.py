"""Manifests in ADer's meta.json format, and scanners that build them from MVTec-style folders.

meta = {"train": {cls: [record, ...]}, "test": {cls: [...]}} (+ "validation" for MVTec-3D), a record
being {"img_path", "mask_path" ("" if none), "cls_name", "specie_name", "anomaly": 0|1} with paths
relative to the data root (reference/mambaad_spec.md section 6.1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mambaad_cli.atomic import write_text
from mambaad_cli.data.errors import DataError
from mambaad_cli.data.imageio import is_image_file

Record = dict[str, Any]
Meta = dict[str, dict[str, list[Record]]]

NORMAL_FOLDER = "good"


def make_record(
    root: Path, image: Path, mask: Path | None, cls_name: str, specie: str, anomaly: int
) -> Record:
    return {
        "img_path": image.relative_to(root).as_posix(),
        "mask_path": mask.relative_to(root).as_posix() if mask is not None else "",
        "cls_name": cls_name,
        "specie_name": specie,
        "anomaly": int(anomaly),
    }


# --------------------------------------------------------------------------- meta.json I/O


def read_meta(path: str | os.PathLike) -> Meta:
    """Read and check a meta.json; missing mask_path/specie_name fields default to ""."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"manifest {path} is not valid JSON: {e}") from None
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("train"), dict)
        or not isinstance(meta.get("test"), dict)
    ):
        raise DataError(f"manifest {path}: expected an object with 'train' and 'test' mappings")
    for split, classes in meta.items():
        if not isinstance(classes, dict):
            continue  # other top-level keys (e.g. Real-IAD's "meta") are kept untouched
        for cls, records in classes.items():
            if not isinstance(records, list):
                raise DataError(f"manifest {path}: {split}/{cls} must be a list of records")
            for i, rec in enumerate(records):
                if not isinstance(rec, dict) or "img_path" not in rec or "anomaly" not in rec:
                    raise DataError(f"manifest {path}: {split}/{cls} record {i} lacks img_path or anomaly")
                rec.setdefault("mask_path", "")
                rec["mask_path"] = rec["mask_path"] or ""
                rec.setdefault("specie_name", "")
                rec.setdefault("cls_name", cls)
                rec["anomaly"] = int(rec["anomaly"])
    return meta


def write_meta(meta: Meta, path: str | os.PathLike) -> None:
    """Write a manifest atomically (temporary file in the same folder, then rename), keys sorted."""
    write_text(path, json.dumps(meta, indent=4, sort_keys=True, ensure_ascii=False) + "\n")


def meta_classes(meta: Meta) -> list[str]:
    return sorted(set(meta["train"]) | set(meta["test"]))


def select_classes(available: list[str], wanted: list[str] | None, where: str | os.PathLike) -> list[str]:
    """`wanted` (in the order given) after checking each exists; all of `available` if empty."""
    if not wanted:
        return list(available)
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise DataError(f"unknown class '{unknown[0]}' in {where} (found: {', '.join(available) or 'none'})")
    return list(dict.fromkeys(wanted))


def split_records(meta: Meta, split: str, classes: list[str]) -> list[Record]:
    """Records of `classes` for "train" or "test". Training also takes the normal images of a
    "validation" split when there is one (MVTec-3D, as the reference does)."""
    parts = [split, "validation"] if split == "train" else [split]
    out: list[Record] = []
    for cls in classes:
        for part in parts:
            records = meta.get(part, {}).get(cls, [])
            out.extend(r for r in records if part != "validation" or not r["anomaly"])
    return out


# --------------------------------------------------------------------------- folder scanning


def _existing_root(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    return root


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def discover_classes(root: Path) -> list[str]:
    """Sub-folders of root that have train/good (hidden ones ignored), sorted."""
    return [p.name for p in _subfolders(root) if (p / "train" / NORMAL_FOLDER).is_dir()]


def _classes_to_scan(root: Path, classes: list[str] | None) -> list[str]:
    found = discover_classes(root)
    if classes:
        for cls in classes:
            if (root / cls).is_dir() and cls not in found:
                raise DataError(f"class folder {root / cls} has no train/{NORMAL_FOLDER} folder")
    elif not found:
        raise DataError(f"no class folders with train/{NORMAL_FOLDER} found in dataset root {root}")
    return select_classes(found, classes, root)


def _training_images(folder: Path, cls_dir: Path) -> list[Path]:
    images = _images(folder)
    if not images:
        raise DataError(f"class folder {cls_dir} has no training images in {folder}")
    return images


def _find_mask(image: Path, mask_dir: Path, masks: dict[str, Path]) -> Path:
    """The mask of a defective image, paired by file stem: <stem>_mask.* (MVTec) or <stem>.*."""
    mask = masks.get(f"{image.stem}_mask") or masks.get(image.stem)
    if mask is None:
        expected = mask_dir / f"{image.stem}_mask.png"
        raise DataError(f"defective image {image} has no mask (expected {expected})")
    return mask


def scan_mvtec(root: str | os.PathLike, classes: list[str] | None = None) -> Meta:
    """Manifest of an MVTec-AD layout: cls/train/good/*, cls/test/<defect>/*,
    cls/ground_truth/<defect>/<stem>_mask.png. Test folder "good" holds the normal test images."""
    root = _existing_root(root)
    meta: Meta = {"train": {}, "test": {}}
    for cls in _classes_to_scan(root, classes):
        cls_dir = root / cls
        train_dir = cls_dir / "train" / NORMAL_FOLDER
        meta["train"][cls] = [
            make_record(root, p, None, cls, NORMAL_FOLDER, 0) for p in _training_images(train_dir, cls_dir)
        ]
        test: list[Record] = []
        for defect_dir in _subfolders(cls_dir / "test"):
            defect = defect_dir.name
            if defect == NORMAL_FOLDER:
                test += [make_record(root, p, None, cls, defect, 0) for p in _images(defect_dir)]
                continue
            mask_dir = cls_dir / "ground_truth" / defect
            masks = {p.stem: p for p in _images(mask_dir)}
            test += [
                make_record(root, p, _find_mask(p, mask_dir, masks), cls, defect, 1)
                for p in _images(defect_dir)
            ]
        meta["test"][cls] = test
    return meta


def scan_mvtec3d(root: str | os.PathLike, classes: list[str] | None = None) -> Meta:
    """Manifest of an MVTec-3D-AD layout, RGB only: cls/{train,validation,test}/<specie>/rgb/*.png,
    masks cls/test/<specie>/gt/<same name>. "validation" (normal images) joins training in
    split_records, as the reference does."""
    root = _existing_root(root)
    meta: Meta = {"train": {}, "validation": {}, "test": {}}
    for cls in _classes_to_scan(root, classes):
        cls_dir = root / cls
        train_dir = cls_dir / "train" / NORMAL_FOLDER / "rgb"
        meta["train"][cls] = [
            make_record(root, p, None, cls, NORMAL_FOLDER, 0) for p in _training_images(train_dir, cls_dir)
        ]
        meta["validation"][cls] = [
            make_record(root, p, None, cls, NORMAL_FOLDER, 0)
            for p in _images(cls_dir / "validation" / NORMAL_FOLDER / "rgb")
        ]
        test: list[Record] = []
        for specie_dir in _subfolders(cls_dir / "test"):
            specie = specie_dir.name
            images = _images(specie_dir / "rgb")
            if specie == NORMAL_FOLDER:
                test += [make_record(root, p, None, cls, specie, 0) for p in images]
                continue
            mask_dir = specie_dir / "gt"
            masks = {p.stem: p for p in _images(mask_dir)}
            test += [make_record(root, p, _find_mask(p, mask_dir, masks), cls, specie, 1) for p in images]
        meta["test"][cls] = test
    return meta

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

"""Real-IAD as distributed: one JSON per class (the official realiad_jsons, all 5 camera views).

A class JSON has "train" and "test" lists (and "meta") of entries {category, anomaly_class ("OK" =
normal, else a defect code), image_path, mask_path} with paths relative to the class folder, e.g.
OK/S0001/audiojack_0001_OK_C1_20230922093127.jpg. The camera view is the _C<n>_ token of the file name.

Where things are looked for (the first that exists):
  JSONs:          ROOT/realiad_jsons/realiad_jsons/, ROOT/realiad_jsons/, ROOT/ (ADer keeps <cls>.json there)
  class folders:  ROOT/<cls>/, ROOT/realiad_1024/<cls>/, realiad_512, realiad_256, realiad_raw
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mambaad_cli.data.errors import DataError
from mambaad_cli.data.formats_tree import existing_root
from mambaad_cli.data.manifest import Meta, Record, select_classes
from mambaad_cli.data.problems import CLASS_SKIPPED, SKIPPED, ProblemLog

JSON_DIRS = ("realiad_jsons/realiad_jsons", "realiad_jsons", ".")
IMAGE_DIRS = (".", "realiad_1024", "realiad_512", "realiad_256", "realiad_raw")
NORMAL_CLASS = "OK"
VIEWS = (1, 2, 3, 4, 5)
_VIEW = re.compile(r"_C(\d+)_")


def view_of(path: str) -> int | None:
    """The camera view of a Real-IAD file name (its _C<n>_ token), None if it has none."""
    m = _VIEW.search(Path(path).name)
    return int(m.group(1)) if m else None


def parse_views(views) -> list[int]:
    """[1, 3] from [1, 3], "1,3" or "C1,C3"; empty: all views."""
    if views is None or views == "":
        return []
    items = views.split(",") if isinstance(views, str) else list(views)
    try:
        out = sorted({int(str(v).strip().upper().removeprefix("C")) for v in items if str(v).strip()})
    except ValueError:
        raise DataError(f"--views {views}: expected view numbers such as 1,3,5") from None
    bad = [v for v in out if v not in VIEWS]
    if bad:
        raise DataError(f"--views: Real-IAD has views 1-5, not {bad[0]}")
    return out


def _json_dir(root: Path) -> Path:
    for sub in JSON_DIRS:
        folder = root / sub
        if folder.is_dir() and any(p.name != "meta.json" for p in folder.glob("*.json")):
            return folder
    raise DataError(
        f"no Real-IAD class JSONs found in {root} (looked in {', '.join(JSON_DIRS[:2])} and the root)"
    )


def _class_dir(root: Path, cls: str) -> Path | None:
    for sub in IMAGE_DIRS:
        folder = root / sub / cls
        if folder.is_dir():
            return folder
    return None


def _load_class_json(path: Path, log: ProblemLog) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.add(path, f"not a readable JSON file ({e})", CLASS_SKIPPED)
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("train", "test")):
        log.add(path, "not a Real-IAD class JSON (expected 'train' and 'test' lists)", CLASS_SKIPPED)
        return None
    return data


def _record(
    root: Path, cls_dir: Path, cls: str, entry, split: str, log: ProblemLog, where: Path
) -> Record | None:
    if not isinstance(entry, dict) or not entry.get("image_path") or "anomaly_class" not in entry:
        log.add(where, f"{split} entry without image_path/anomaly_class: {str(entry)[:80]}", SKIPPED)
        return None
    image = cls_dir / entry["image_path"]
    anomaly = int(entry["anomaly_class"] != NORMAL_CLASS)
    if not image.is_file():
        log.add(image, f"image listed in {where.name} not found", SKIPPED)
        return None
    if anomaly and split == "train":
        log.add(image, "defective image in the training split", SKIPPED)
        return None
    mask = cls_dir / entry["mask_path"] if anomaly and entry.get("mask_path") else None
    if anomaly and mask is None:
        log.add(image, f"defective image has no mask_path in {where.name}", SKIPPED)
        return None
    if mask is not None and not mask.is_file():
        log.add(mask, f"mask listed in {where.name} not found", SKIPPED)
        return None
    return {
        "img_path": image.relative_to(root).as_posix(),
        "mask_path": mask.relative_to(root).as_posix() if mask is not None else "",
        "cls_name": cls,
        "specie_name": "" if not anomaly else str(entry["anomaly_class"]),
        "anomaly": anomaly,
    }


def scan_realiad(root, classes: list[str] | None, log: ProblemLog, views=None) -> Meta:
    """Manifest of a Real-IAD root; `views` keeps only those camera views (default: all 5)."""
    root = existing_root(root)
    wanted_views = set(parse_views(views))
    json_dir = _json_dir(root)
    found = sorted(p.stem for p in json_dir.glob("*.json") if p.name != "meta.json")
    meta: Meta = {"train": {}, "test": {}}
    for cls in select_classes(found, classes, json_dir):
        path = json_dir / f"{cls}.json"
        cls_dir = _class_dir(root, cls)
        if cls_dir is None:
            log.add(root / cls, f"class folder not found (looked in {', '.join(IMAGE_DIRS)})", CLASS_SKIPPED)
            continue
        data = _load_class_json(path, log)
        if data is None:
            continue
        for split in ("train", "test"):
            entries = data[split]
            if wanted_views:
                entries = [
                    e
                    for e in entries
                    if isinstance(e, dict) and view_of(e.get("image_path") or "") in wanted_views
                ]
            records = (_record(root, cls_dir, cls, e, split, log, path) for e in entries)
            meta[split][cls] = [r for r in records if r is not None]
    return meta

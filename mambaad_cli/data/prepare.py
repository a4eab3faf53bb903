"""`prepare-data`: scan a dataset folder as its authors distribute it and write ADer's meta.json.

This covers the MVTec-style layouts (MVTec-AD, MVTec-3D RGB, Uni-Medical, a user's own folder); the
converters for VisA, Real-IAD and COCO-AD come with the datasets issue.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from mambaad_cli.data.build import FOLDER_LAYOUTS
from mambaad_cli.data.errors import DataError
from mambaad_cli.data.manifest import Meta, write_meta


def meta_counts(meta: Meta) -> dict[str, dict[str, int]]:
    """{class: {"train": n, "test good": n, "test defective": n}} of a manifest."""
    counts: dict[str, Counter] = {}
    for split, per_class in meta.items():
        for cls_name, records in per_class.items():
            c = counts.setdefault(cls_name, Counter())
            for r in records:
                if split == "test":
                    c["test defective" if r["anomaly"] else "test good"] += 1
                else:
                    c["train"] += 1
    return {
        k: {col: v.get(col, 0) for col in ("train", "test good", "test defective")} for k, v in counts.items()
    }


def prepare_data(
    dataset: str,
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    classes: list[str] | None = None,
) -> tuple[Path, dict[str, dict[str, int]]]:
    """Scan `root`, write the manifest (root/meta.json unless `out` is given); return its path and counts."""
    scan = FOLDER_LAYOUTS.get(dataset)
    if scan is None:
        raise DataError(f"--dataset {dataset}: prepare-data handles {', '.join(FOLDER_LAYOUTS)} so far")
    meta = scan(root, classes)
    path = Path(out) if out else Path(root) / "meta.json"
    if not out and not os.access(path.parent, os.W_OK):
        raise DataError(f"--root {root} is read-only: give --out PATH for meta.json")
    write_meta(meta, path)
    return path, meta_counts(meta)

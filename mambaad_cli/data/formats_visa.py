"""VisA as distributed (VisA_20220922.tar): the split comes from the dataset's own split_csv/1cls.csv.

Columns object, split, label, image, mask; label "normal" or "anomaly"; paths relative to the root,
e.g. candle/Data/Images/Anomaly/000.JPG and candle/Data/Masks/Anomaly/000.png. The masks hold
instance ids (1, 2, ...): the loader binarises them with > 0, as the reference does. specie_name is
"" as in the reference manifest (reference/mambaad_spec.md 6.2).
"""

from __future__ import annotations

import csv
from pathlib import Path

from mambaad_cli.data.errors import DataError
from mambaad_cli.data.formats_tree import existing_root
from mambaad_cli.data.manifest import Meta, Record, select_classes
from mambaad_cli.data.problems import SKIPPED, ProblemLog

SPLIT_CSV = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
LABELS = {"normal": 0, "anomaly": 1}


def read_split_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"VisA split file not found: {path} (the dataset's split_csv/1cls.csv)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise DataError(
                    f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(COLUMNS)})"
                )
            reader.fieldnames = header
            return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def _record(root: Path, row: dict[str, str], log: ProblemLog, where: str) -> Record | None:
    """The manifest record of one CSV row, or None (logged) when its files are unusable."""
    anomaly = LABELS.get(row["label"].lower())
    if anomaly is None:
        log.add(
            root / row["image"],
            f"{where}: unknown label '{row['label']}' (expected normal or anomaly)",
            SKIPPED,
        )
        return None
    if not (root / row["image"]).is_file():
        log.add(root / row["image"], f"image listed in {where} not found", SKIPPED)
        return None
    mask = row["mask"] if anomaly else ""
    if anomaly and not mask:
        log.add(root / row["image"], f"defective image has no mask in {where}", SKIPPED)
        return None
    if mask and not (root / mask).is_file():
        log.add(root / mask, f"mask listed in {where} not found", SKIPPED)
        return None
    return {
        "img_path": Path(row["image"]).as_posix(),
        "mask_path": Path(mask).as_posix() if mask else "",
        "cls_name": row["object"],
        "specie_name": "",
        "anomaly": anomaly,
    }


def scan_visa(root, classes: list[str] | None, log: ProblemLog) -> Meta:
    """Manifest of a VisA root from its split_csv/1cls.csv (rows kept in the CSV's order)."""
    root = existing_root(root)
    rows = read_split_csv(root / SPLIT_CSV)
    wanted = select_classes(sorted({r["object"] for r in rows if r["object"]}), classes, root / SPLIT_CSV)
    meta: Meta = {"train": {c: [] for c in wanted}, "test": {c: [] for c in wanted}}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        if row["object"] not in meta["train"]:
            continue
        if row["split"] not in meta:
            log.add(
                root / SPLIT_CSV,
                f"line {line}: unknown split '{row['split']}' (expected train or test)",
                SKIPPED,
            )
            continue
        record = _record(root, row, log, f"{SPLIT_CSV.as_posix()} line {line}")
        if record is not None:
            meta[row["split"]][row["object"]].append(record)
    return meta

"""`prepare-data`: read a dataset as its authors distribute it, check every file, write ADer's meta.json.

Steps: scan the layout (formats_*), decode every image and mask the manifest would name (validate),
drop what fails and classes left without training images, write the manifest atomically. Each
problem is skipped and reported, or raises on the first one with strict=True. The output depends
only on the files, so a re-run writes the same bytes.

Output: ROOT/meta.json (COCO-AD: ROOT/meta_20_<k>.json and the masks ROOT/val2017_mask_ad_20_<k>/),
or under `out` when ROOT is read-only: `out` is a .json file name, or a folder to write into.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mambaad_cli.data.errors import DataError
from mambaad_cli.data.formats_coco import SPLITS, build_coco_splits, check_split, meta_name
from mambaad_cli.data.formats_realiad import scan_realiad
from mambaad_cli.data.formats_tree import existing_root, scan_mvtec3d_tree, scan_mvtec_tree, scan_user_folder
from mambaad_cli.data.formats_visa import scan_visa
from mambaad_cli.data.manifest import Meta, write_meta
from mambaad_cli.data.problems import Problem, ProblemLog
from mambaad_cli.data.validate import check_files, drop_untrainable_classes

SCANNERS = {
    "mvtec": scan_mvtec_tree,
    "mvtec3d": scan_mvtec3d_tree,
    "uni_medical": scan_mvtec_tree,
    "folder": scan_user_folder,
    "visa": scan_visa,
    "realiad": scan_realiad,
}
PREPARABLE = (*SCANNERS, "coco_ad")
COUNT_COLUMNS = ("train", "test good", "test defective")


@dataclass
class PrepareResult:
    manifests: list[Path]  # the manifest file(s) written
    counts: dict[str, dict[str, int]]  # {row (class, or "coco split k"): {column: images}}
    problems: list[Problem] = field(default_factory=list)  # what was skipped or ignored, in order found

    @property
    def path(self) -> Path:
        return self.manifests[0]


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
    return {k: {col: v.get(col, 0) for col in COUNT_COLUMNS} for k, v in counts.items()}


def _is_writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


def output_folder(root: Path, out: str | os.PathLike | None) -> tuple[Path, str | None]:
    """(folder to write into, manifest file name if `out` names one). Refuses a read-only root."""
    if out is None:
        if not _is_writable(root):
            raise DataError(f"--root {root} is read-only: give --out PATH for the manifest")
        return root, None
    out = Path(out).expanduser()
    if out.suffix.lower() == ".json":
        return out.parent, out.name
    return out, None


def _finish(meta: Meta, log: ProblemLog, root: Path) -> Meta:
    meta = drop_untrainable_classes(meta, log, root)
    if not any(meta.get("train", {}).values()):
        raise DataError(
            f"no class with usable training images in {root}"
            + (
                f" ({len(log.problems)} problems, the first: {log.problems[0].path}: {log.problems[0].issue})"
                if log.problems
                else ""
            )
        )
    return meta


def _prepare_coco(
    root: Path,
    folder: Path,
    file_name: str | None,
    split: int,
    log: ProblemLog,
    check: bool,
    workers: int | None,
    show_progress: bool,
) -> PrepareResult:
    splits = list(SPLITS) if split == -1 else [split]
    if file_name and len(splits) > 1:
        raise DataError("--out: COCO-AD writes one manifest per split; give a folder (or --split K)")
    metas = build_coco_splits(root, folder, splits)
    checked = list(metas.values())
    if check:
        checked = check_files(root, checked, log, workers, show_progress)
    manifests, counts = [], {}
    for k, meta in zip(splits, checked, strict=True):
        meta = _finish(meta, log, root)
        path = folder / (file_name or meta_name(k))
        write_meta(meta, path)
        manifests.append(path)
        counts[f"coco split {k}"] = meta_counts(meta)["coco"]
    return PrepareResult(manifests, counts, log.problems)


def prepare_data(
    dataset: str,
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    classes: list[str] | None = None,
    *,
    views=None,
    split: int = -1,
    strict: bool = False,
    check: bool = True,
    workers: int | None = None,
    show_progress: bool = False,
) -> PrepareResult:
    """Scan `root` as `dataset` (one of PREPARABLE), check its files and write the manifest(s).

    views: Real-IAD camera views to keep ([1, 3] or "1,3"; default all 5). split: COCO-AD split 0-3,
    -1 for all four. strict: raise DataError on the first problem instead of skipping. check: decode
    every image and mask (False: only check that the files exist). workers: checking processes."""
    dataset = dataset.lower()
    if dataset not in PREPARABLE:
        raise DataError(f"--dataset {dataset}: choose from {', '.join(PREPARABLE)}")
    if views and dataset != "realiad":
        raise DataError("--views applies to --dataset realiad only")
    if split != -1:
        if dataset != "coco_ad":
            raise DataError("--split applies to --dataset coco_ad only")
        check_split(split)
    root = existing_root(root)
    folder, file_name = output_folder(root, out)
    log = ProblemLog(root, strict)
    if dataset == "coco_ad":
        return _prepare_coco(root, folder, file_name, split, log, check, workers, show_progress)
    if dataset == "realiad":
        meta = scan_realiad(root, classes, log, views)
    else:
        meta = SCANNERS[dataset](root, classes, log)
    if check:
        (meta,) = check_files(root, [meta], log, workers, show_progress)
    meta = _finish(meta, log, root)
    path = folder / (file_name or "meta.json")
    write_meta(meta, path)
    return PrepareResult([path], meta_counts(meta), log.problems)

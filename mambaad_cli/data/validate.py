"""Checks every file a manifest names, the way the loader will read it, and drops what fails.

Each image is decoded with read_image (so grayscale, RGBA, 16-bit and float files pass as the loader
converts them) and each mask with read_mask; a mask must have its image's height and width. The work
is spread over worker processes; only one decoded image per worker is held at a time, so memory stays
bounded on Real-IAD-sized sets. A class left without training images is dropped as a whole.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from pathlib import Path

import cv2

from mambaad_cli.data.errors import DataError
from mambaad_cli.data.imageio import read_image, read_mask
from mambaad_cli.data.manifest import Meta
from mambaad_cli.data.problems import CLASS_SKIPPED, SKIPPED, ProblemLog

INLINE_BELOW = 64  # fewer files than this are checked in-process: starting workers costs more
Task = tuple[str, str]  # (image path, mask path or "")


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _reason(error: DataError, path: str) -> str:
    """The loader's message without the path the problem table already shows."""
    text = str(error)
    return text[: -len(path) - 2] if text.endswith(f": {path}") else text


def check_pair(task: Task) -> tuple[str, str] | None:
    """None when the image (and its mask) load as the dataset will load them; else (bad file, why)."""
    image_path, mask_path = task
    try:
        height, width = read_image(image_path).shape[:2]
    except DataError as e:
        return image_path, _reason(e, image_path)
    if not mask_path:
        return None
    try:
        mask = read_mask(mask_path)
    except DataError as e:
        return mask_path, _reason(e, mask_path)
    if mask.shape != (height, width):
        return mask_path, f"mask is {mask.shape[1]}x{mask.shape[0]} pixels, its image {width}x{height}"
    return None


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe


def _task(root: Path, record: dict) -> Task:
    return str(root / record["img_path"]), str(root / record["mask_path"]) if record["mask_path"] else ""


def _tasks(root: Path, metas: list[Meta]) -> list[Task]:
    """Each distinct (image, mask) pair once, in manifest order (so --strict stops at a stable file)."""
    seen: dict[Task, None] = {}
    for meta in metas:
        for per_class in meta.values():
            for records in per_class.values():
                for r in records:
                    seen.setdefault(_task(root, r))
    return list(seen)


def _run(tasks: list[Task], workers: int, show_progress: bool):
    """(task, result) in task order."""
    if workers <= 1 or len(tasks) < INLINE_BELOW:
        results = map(check_pair, tasks)
        pool = None
    else:
        # spawn, not fork: a forked child inherits OpenCV's and OpenMP's thread pools half-initialised
        # and can hang in them (seen here after torch and cv2 had run threads in the parent)
        spawn = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, mp_context=spawn)
        results = pool.map(check_pair, tasks, chunksize=max(1, min(64, len(tasks) // (8 * workers))))
    try:
        if show_progress:
            from rich.progress import track

            results = track(results, total=len(tasks), description="checking images", transient=True)
        yield from zip(tasks, results, strict=True)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def check_files(
    root: Path, metas: list[Meta], log: ProblemLog, workers: int | None = None, show_progress: bool = False
) -> list[Meta]:
    """The manifests without the records whose image or mask fails check_pair (each failure logged once)."""
    bad: set[Task] = set()
    with closing(_run(_tasks(root, metas), workers or default_workers(), show_progress)) as results:
        for task, result in results:  # strict logs raise here; closing() stops the workers
            if result is not None:
                bad_file, why = result
                log.add(bad_file, why, SKIPPED)
                bad.add(task)
    if not bad:
        return metas
    out = []
    for meta in metas:
        kept: Meta = {}
        for split, per_class in meta.items():
            kept[split] = {
                cls: [r for r in records if _task(root, r) not in bad] for cls, records in per_class.items()
            }
        out.append(kept)
    return out


def drop_untrainable_classes(meta: Meta, log: ProblemLog, root: Path) -> Meta:
    """Remove the classes that have no training image left (train + validation), logging each."""
    classes = sorted({c for per_class in meta.values() for c in per_class})
    empty = [c for c in classes if not any(meta.get(p, {}).get(c) for p in ("train", "validation"))]
    for cls in empty:
        where = root / cls if (root / cls).is_dir() else root
        log.add(where, f"class '{cls}' has no usable training images", CLASS_SKIPPED)
    if not empty:
        return meta
    return {
        split: {c: rs for c, rs in per_class.items() if c not in empty} for split, per_class in meta.items()
    }

"""The embedded demo dataset: procedural images in MVTec-AD layout, generated once into a cache.

Every image is seeded by (generator version, category, split, index), so any single image can be
regenerated identically (`demo_image`) and smaller counts give a prefix of the larger set.
The dataset is built in a temporary folder next to its destination and renamed into place, so
a killed run never leaves half a dataset; `demo.json` records the version and the counts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
import zlib
from pathlib import Path

import numpy as np

from mambaad_cli.data.cache_dir import user_cache_dir
from mambaad_cli.data.demo_scenes import CATEGORIES, SIZE, render
from mambaad_cli.data.errors import DataError
from mambaad_cli.data.imageio import write_png

DEMO_VERSION = 1
DEMO_NAME = f"demo-v{DEMO_VERSION}"
MARKER = "demo.json"
SPLITS = ("train", "test_good", "test_bad")
DEMO_CLASSES = tuple(sorted(CATEGORIES))


def default_demo_root() -> Path:
    return user_cache_dir() / DEMO_NAME


def _seeds(category: str, split: str, index: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    key = [DEMO_VERSION, zlib.crc32(category.encode()), SPLITS.index(split), index]
    return np.random.SeedSequence(key + [0]), np.random.SeedSequence(key + [1])


def defect_of(category: str, index: int) -> str:
    """Defect type of the index-th defective test image (the category's types in turn)."""
    kinds = CATEGORIES[category].defects
    return kinds[index % len(kinds)]


def demo_image(
    category: str, split: str, index: int, with_defect: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 (S, S, 3) RGB image, bool mask or None) of one demo image. For split "test_bad",
    with_defect=False gives the same scene without its defect."""
    scene_seed, defect_seed = _seeds(category, split, index)
    defect = defect_of(category, index) if split == "test_bad" and with_defect else None
    return render(category, scene_seed, defect, defect_seed)


def demo_relative_paths(category: str, split: str, index: int) -> tuple[str, str]:
    """(image path, mask path or "") of one demo image, relative to the dataset root."""
    if split == "train":
        return f"{category}/train/good/{index:03d}.png", ""
    if split == "test_good":
        return f"{category}/test/good/{index:03d}.png", ""
    defect = defect_of(category, index)
    name = f"{index // len(CATEGORIES[category].defects):03d}"
    return f"{category}/test/{defect}/{name}.png", f"{category}/ground_truth/{defect}/{name}_mask.png"


def _marker(n_train: int, n_test_good: int, n_test_bad: int) -> dict:
    return {
        "generator": "mambaad demo",
        "version": DEMO_VERSION,
        "image_size": SIZE,
        "classes": list(DEMO_CLASSES),
        "counts": {"train": n_train, "test_good": n_test_good, "test_bad": n_test_bad},
    }


def _is_complete(root: Path, marker: dict) -> bool:
    try:
        return json.loads((root / MARKER).read_text()) == marker
    except (OSError, ValueError):
        return False


def generate_demo(root: str | os.PathLike, n_train: int, n_test_good: int, n_test_bad: int) -> None:
    """Write every image, mask and the marker under root (no atomicity: see ensure_demo_dataset)."""
    root = Path(root)
    counts = {"train": n_train, "test_good": n_test_good, "test_bad": n_test_bad}
    for category in DEMO_CLASSES:
        for split, count in counts.items():
            for index in range(count):
                image, mask = demo_image(category, split, index)
                image_path, mask_path = demo_relative_paths(category, split, index)
                write_png(root / image_path, image)
                if mask is not None:
                    write_png(root / mask_path, mask)
    (root / MARKER).write_text(json.dumps(_marker(n_train, n_test_good, n_test_bad), indent=2) + "\n")


def _install(built: Path, target: Path, marker: dict) -> None:
    """Rename the finished folder into place, replacing a stale demo set; a concurrent winner is kept."""
    stale = None
    if target.exists():
        stale = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
        os.replace(target, stale)
    try:
        os.replace(built, target)
    except OSError:
        if not _is_complete(target, marker):  # nobody else installed it either: a real failure
            raise
    finally:
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)


def ensure_demo_dataset(
    root: str | os.PathLike | None = None, n_train: int = 60, n_test_good: int = 12, n_test_bad: int = 18
) -> Path:
    """The demo dataset's root folder, generating it first if it is missing or was made with other
    counts/version. root None: $MAMBAAD_CACHE/demo-v1, else ~/.cache/mambaad/demo-v1."""
    if min(n_train, n_test_good, n_test_bad) < 0 or n_train == 0:
        raise DataError(
            f"demo dataset: invalid counts train={n_train} test_good={n_test_good} test_bad={n_test_bad}"
        )
    target = Path(root).expanduser() if root else default_demo_root()
    marker = _marker(n_train, n_test_good, n_test_bad)
    if _is_complete(target, marker):
        return target
    foreign = target.exists() and (
        not target.is_dir() or (any(target.iterdir()) and not (target / MARKER).exists())
    )
    if foreign:  # never overwrite what we did not make
        raise DataError(
            f"{target} is not a demo dataset (it has no {MARKER}): remove it or pick another root"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        built = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
        os.chmod(built, 0o755)  # mkdtemp makes it private; the dataset is not
    except OSError as e:
        raise DataError(
            f"cannot create the demo dataset in {target.parent}: {e.strerror or e} "
            f"(set MAMBAAD_CACHE to a writable folder)"
        ) from None
    try:
        generate_demo(built, n_train, n_test_good, n_test_bad)
        _install(built, target, marker)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    return target

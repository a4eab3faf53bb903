"""The procedural demo dataset: determinism, layout, and masks that are exactly the defect."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mambaad_cli.data import DataError, ensure_demo_dataset, read_image, read_mask, scan_mvtec
from mambaad_cli.data.demo import DEMO_CLASSES, MARKER, default_demo_root, demo_image, generate_demo
from mambaad_cli.data.demo_scenes import CATEGORIES, SIZE

COUNTS = {"n_train": 3, "n_test_good": 1, "n_test_bad": 3}  # one defect of each type per category


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    return ensure_demo_dataset(tmp_path_factory.mktemp("cache") / "demo", **COUNTS)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_deterministic(demo_root, tmp_path):
    other = ensure_demo_dataset(tmp_path / "again", **COUNTS)
    assert _files(demo_root) == _files(other)


def test_layout_scans_as_mvtec(demo_root):
    meta = scan_mvtec(demo_root)
    assert sorted(meta["train"]) == list(DEMO_CLASSES) and len(DEMO_CLASSES) == 4
    for cls in DEMO_CLASSES:
        assert len(meta["train"][cls]) == COUNTS["n_train"]
        test = meta["test"][cls]
        assert sum(r["anomaly"] == 0 for r in test) == COUNTS["n_test_good"]
        assert sorted(r["specie_name"] for r in test if r["anomaly"]) == sorted(CATEGORIES[cls].defects)
    assert read_image(demo_root / meta["train"]["pcb"][0]["img_path"]).shape == (SIZE, SIZE, 3)


def test_masks_are_binary_and_every_defect_has_one(demo_root):
    meta = scan_mvtec(demo_root)
    defective = [r for rs in meta["test"].values() for r in rs if r["anomaly"]]
    assert len(defective) == len(DEMO_CLASSES) * COUNTS["n_test_bad"]
    for r in defective:
        raw = cv2.imread(str(demo_root / r["mask_path"]), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint8 and raw.shape == (SIZE, SIZE)
        assert set(np.unique(raw)) == {0, 255}


def test_mask_is_exactly_the_pixels_the_defect_changed(demo_root):
    """Regenerate each defective image's scene without its defect: the pixels that differ are the mask."""
    meta = scan_mvtec(demo_root)
    for cls in DEMO_CLASSES:
        bad = sorted((r for r in meta["test"][cls] if r["anomaly"]), key=lambda r: r["img_path"])
        assert len(bad) == COUNTS["n_test_bad"]
        for index in range(COUNTS["n_test_bad"]):
            clean, no_mask = demo_image(cls, "test_bad", index, with_defect=False)
            image, mask = demo_image(cls, "test_bad", index)
            assert no_mask is None
            saved = [r for r in bad if read_image(demo_root / r["img_path"]).tobytes() == image.tobytes()]
            assert len(saved) == 1  # the file on disk is this regenerated image
            assert np.array_equal(read_mask(demo_root / saved[0]["mask_path"]), mask)
            changed = (image.astype(int) != clean.astype(int)).any(axis=2)
            assert np.array_equal(changed, mask)
            # visible: the mean change over the mask is well above the sensor noise
            assert np.abs(image.astype(int) - clean.astype(int))[mask].max(axis=1).mean() >= 15


def test_normal_images_differ(demo_root):
    for cls in DEMO_CLASSES:
        good = [p.read_bytes() for p in sorted((demo_root / cls).glob("*/good/*.png"))]
        assert len(good) == COUNTS["n_train"] + COUNTS["n_test_good"]
        assert len(set(good)) == len(good)
        a, b = demo_image(cls, "train", 0)[0], demo_image(cls, "train", 1)[0]
        assert np.abs(a.astype(int) - b.astype(int)).mean() > 5  # not just different noise


def test_ensure_reuses_regenerates_and_protects(demo_root, tmp_path, monkeypatch):
    marker = (demo_root / MARKER).stat().st_mtime_ns
    assert ensure_demo_dataset(demo_root, **COUNTS) == demo_root
    assert (demo_root / MARKER).stat().st_mtime_ns == marker  # reused, not rebuilt

    root = tmp_path / "cache" / "demo"
    ensure_demo_dataset(root, n_train=1, n_test_good=1, n_test_bad=1)
    ensure_demo_dataset(root, n_train=2, n_test_good=1, n_test_bad=1)  # other counts: rebuilt
    assert len(list((root / "wood" / "train" / "good").iterdir())) == 2
    assert sorted(p.name for p in root.parent.iterdir()) == ["demo"]  # no build or stale folders left

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep")
    with pytest.raises(DataError, match="mine"):
        ensure_demo_dataset(foreign, **COUNTS)
    assert (foreign / "precious.txt").read_text() == "keep"

    monkeypatch.setenv("MAMBAAD_CACHE", str(tmp_path / "env"))
    assert default_demo_root() == tmp_path / "env" / "demo-v1"


def test_smaller_counts_give_a_prefix_of_the_set(demo_root, tmp_path):
    generate_demo(tmp_path, n_train=1, n_test_good=0, n_test_bad=0)
    for cls in DEMO_CLASSES:
        path = f"{cls}/train/good/000.png"
        assert (tmp_path / path).read_bytes() == (demo_root / path).read_bytes()

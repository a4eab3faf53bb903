"""The data package: image decoding, manifests (ADer meta.json), folder scanners, the dataset."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mambaad_cli.config import DataConfig
from mambaad_cli.data import (
    AnomalyDataset,
    DataError,
    build_datasets,
    collate_samples,
    read_image,
    read_mask,
    read_meta,
    scan_mvtec,
    scan_mvtec3d,
    write_meta,
    write_png,
)
from mambaad_cli.data.manifest import split_records
from mambaad_cli.errors import UserError

PIL = pytest.importorskip("PIL.Image")


def _rgb(seed: int, h: int = 20, w: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(h: int = 20, w: int = 24, box=(3, 4, 9, 12)) -> np.ndarray:
    m = np.zeros((h, w), bool)
    y0, x0, y1, x1 = box
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture()
def mvtec_root(tmp_path: Path) -> Path:
    """Two classes. Defect images 'a' and 'a_b' sort in one order, their masks in the other, and
    an orphan mask sits between them: pairing by sorted position would go wrong."""
    root = tmp_path / "mvtec"
    for k, cls in enumerate(["bottle", "cable"]):
        for i in range(3):
            write_png(root / cls / "train" / "good" / f"{i:03d}.png", _rgb(10 * k + i))
        for i in range(2):
            write_png(root / cls / "test" / "good" / f"{i:03d}.png", _rgb(100 + 10 * k + i))
        write_png(root / cls / "test" / "crack" / "a.png", _rgb(200 + k))
        write_png(root / cls / "test" / "crack" / "a_b.png", _rgb(300 + k))
        write_png(root / cls / "ground_truth" / "crack" / "a_mask.png", _mask(box=(0, 0, 2, 2)))
        write_png(root / cls / "ground_truth" / "crack" / "a_b_mask.png", _mask(box=(5, 5, 15, 15)))
        write_png(root / cls / "ground_truth" / "crack" / "a_a_mask.png", _mask())
        (root / cls / "test" / "crack" / "notes.txt").write_text("not an image")
        (root / cls / "test" / "crack" / ".DS_Store").write_bytes(b"\0")
    cv2.imwrite(str(root / "cable" / "test" / "crack" / "upper.JPG"), _rgb(7))
    write_png(root / "cable" / "ground_truth" / "crack" / "upper_mask.png", _mask())
    (root / ".hidden" / "train" / "good").mkdir(parents=True)
    (root / "not_a_class").mkdir()
    (root / "readme.txt").write_text("hello")
    return root


# --------------------------------------------------------------------------- scanning


def test_scan_mvtec_counts_pairing_and_good_masks(mvtec_root):
    meta = scan_mvtec(mvtec_root)
    assert sorted(meta["train"]) == ["bottle", "cable"] == sorted(meta["test"])
    assert len(meta["train"]["bottle"]) == 3 and len(meta["test"]["bottle"]) == 4
    assert len(meta["test"]["cable"]) == 5  # the upper-case .JPG counts
    for cls, records in meta["test"].items():
        for r in records:
            assert (mvtec_root / r["img_path"]).is_file() and r["cls_name"] == cls
            if r["specie_name"] == "good":
                assert r["anomaly"] == 0 and r["mask_path"] == ""
            else:
                stem = Path(r["img_path"]).stem
                assert r["anomaly"] == 1
                assert r["mask_path"] == f"{cls}/ground_truth/crack/{stem}_mask.png"
    assert all(r["anomaly"] == 0 and r["mask_path"] == "" for rs in meta["train"].values() for r in rs)
    assert meta["train"]["bottle"][0]["img_path"] == "bottle/train/good/000.png"


def test_scan_mvtec_class_filter_and_errors(mvtec_root, tmp_path):
    assert list(scan_mvtec(mvtec_root, ["cable"])["train"]) == ["cable"]
    with pytest.raises(DataError, match="unknown class 'zipper'"):
        scan_mvtec(mvtec_root, ["zipper"])
    with pytest.raises(DataError, match="not_a_class"):
        scan_mvtec(mvtec_root, ["not_a_class"])
    with pytest.raises(DataError, match="dataset root not found: .*nowhere"):
        scan_mvtec(tmp_path / "nowhere")
    (mvtec_root / "empty" / "train" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match="empty"):
        scan_mvtec(mvtec_root)


def test_defective_image_without_mask_is_an_error(mvtec_root):
    (mvtec_root / "bottle" / "ground_truth" / "crack" / "a_b_mask.png").unlink()
    with pytest.raises(DataError, match=r"a_b\.png has no mask"):
        scan_mvtec(mvtec_root)


def test_meta_json_round_trip(mvtec_root, tmp_path):
    meta = scan_mvtec(mvtec_root)
    path = tmp_path / "out" / "meta.json"
    write_meta(meta, path)
    assert read_meta(path) == meta
    assert json.loads(path.read_text()) == meta
    assert [p.name for p in path.parent.iterdir()] == ["meta.json"]  # no temporary file left


def test_read_meta_fills_defaults_and_rejects_bad_files(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({"train": {"x": [{"img_path": "x/1.png", "anomaly": 0}]}, "test": {"x": []}}))
    record = read_meta(path)["train"]["x"][0]
    assert record == {
        "img_path": "x/1.png",
        "anomaly": 0,
        "mask_path": "",
        "specie_name": "",
        "cls_name": "x",
    }
    path.write_text("{not json")
    with pytest.raises(DataError, match="meta.json"):
        read_meta(path)
    path.write_text(json.dumps({"train": []}))
    with pytest.raises(DataError, match="meta.json"):
        read_meta(path)


def test_mvtec3d_training_is_train_plus_validation(tmp_path):
    root = tmp_path / "mvtec3d"
    for i in range(2):
        write_png(root / "tire" / "train" / "good" / "rgb" / f"{i:03d}.png", _rgb(i))
    write_png(root / "tire" / "validation" / "good" / "rgb" / "000.png", _rgb(5))
    write_png(root / "tire" / "test" / "good" / "rgb" / "000.png", _rgb(6))
    write_png(root / "tire" / "test" / "good" / "gt" / "000.png", _mask() & False)
    for i in range(2):
        write_png(root / "tire" / "test" / "cut" / "rgb" / f"{i:03d}.png", _rgb(7 + i))
        write_png(root / "tire" / "test" / "cut" / "gt" / f"{i:03d}.png", _mask())
    (root / "tire" / "test" / "cut" / "xyz").mkdir()
    meta = scan_mvtec3d(root)
    train = split_records(meta, "train", ["tire"])
    assert sorted(r["img_path"] for r in train) == [
        "tire/train/good/rgb/000.png",
        "tire/train/good/rgb/001.png",
        "tire/validation/good/rgb/000.png",
    ]
    test = split_records(meta, "test", ["tire"])
    assert [(r["anomaly"], r["mask_path"]) for r in test] == [
        (1, "tire/test/cut/gt/000.png"),
        (1, "tire/test/cut/gt/001.png"),
        (0, ""),
    ]
    train_ds, test_ds, classes = build_datasets(DataConfig(dataset="mvtec3d", root=str(root), image_size=16))
    assert (len(train_ds), len(test_ds), classes) == (3, 3, ["tire"])


# --------------------------------------------------------------------------- image files


def test_read_image_converts_every_format_to_rgb8(tmp_path):
    gray = np.random.default_rng(0).integers(0, 256, (9, 11), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    assert np.array_equal(read_image(tmp_path / "gray.png"), np.repeat(gray[..., None], 3, axis=2))

    rgba = np.random.default_rng(1).integers(0, 256, (9, 11, 4), dtype=np.uint8)
    PIL.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")  # PIL writes RGBA order: an independent check
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgba[..., :3])

    rgb16 = np.random.default_rng(2).integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    assert np.array_equal(read_image(tmp_path / "deep.png"), (rgb16 // 256).astype(np.uint8))

    flat = np.full((16, 16), 77, np.uint8)  # a constant image survives JPEG coding
    cv2.imwrite(str(tmp_path / "gray.jpg"), flat)
    out = read_image(tmp_path / "gray.jpg")
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - 77).max() <= 1
    reference = np.asarray(PIL.open(tmp_path / "gray.jpg").convert("RGB"))
    assert np.abs(out.astype(int) - reference).max() <= 1


@pytest.mark.parametrize("kind", ["empty", "text", "missing"])
def test_unreadable_files_raise_data_error_naming_them(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a PNG")
    with pytest.raises(DataError) as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, UserError)
    with pytest.raises(DataError, match=f"bad_{kind}"):
        read_mask(path)


def test_read_mask_any_channel_counts_alpha_does_not(tmp_path):
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[1, 2, 0] = 1  # only one channel, a small instance id
    rgb[3, 4, 2] = 200
    cv2.imwrite(str(tmp_path / "m.png"), rgb)
    expected = np.zeros((5, 6), bool)
    expected[1, 2] = expected[3, 4] = True
    assert np.array_equal(read_mask(tmp_path / "m.png"), expected)
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 3] = 255
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    assert not read_mask(tmp_path / "a.png").any()


def test_write_png_round_trip_and_leaves_no_temp(tmp_path):
    image = _rgb(3)
    write_png(tmp_path / "sub" / "x.png", image)
    write_png(tmp_path / "sub" / "m.png", _mask())
    assert np.array_equal(read_image(tmp_path / "sub" / "x.png"), image)
    assert set(np.unique(cv2.imread(str(tmp_path / "sub" / "m.png"), cv2.IMREAD_UNCHANGED))) == {0, 255}
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["m.png", "x.png"]


# --------------------------------------------------------------------------- dataset


def test_dataset_item_matches_the_reference_resize(tmp_path):
    """Reference: the paper's pipeline, PIL bilinear Resize((S, S)) + ToTensor, mask (L) -> > 0.5."""
    h, w, size = 45, 70, 32
    image = np.random.default_rng(4).integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.random.default_rng(5).random((h, w)) > 0.55  # fine structure: resampling details matter
    write_png(tmp_path / "img.png", image)
    write_png(tmp_path / "img_mask.png", mask)
    records = [
        {
            "img_path": "img.png",
            "mask_path": "img_mask.png",
            "cls_name": "c",
            "specie_name": "dent",
            "anomaly": 1,
        },
        {"img_path": "img.png", "mask_path": "", "cls_name": "c", "specie_name": "good", "anomaly": 0},
    ]
    ds = AnomalyDataset(tmp_path, records, size)
    bad, good = ds[0], ds[1]
    assert bad.image.shape == (3, size, size) and bad.image.dtype == torch.float32
    assert bad.mask.shape == (1, size, size) and bad.mask.dtype == torch.float32
    ref_image = np.asarray(PIL.fromarray(image).resize((size, size), PIL.BILINEAR), np.float32) / 255
    assert np.abs(bad.image.permute(1, 2, 0).numpy() - ref_image).max() <= 1.01 / 255
    grey = PIL.fromarray(mask.astype(np.uint8) * 255, "L").resize((size, size), PIL.BILINEAR)
    ref_mask = np.asarray(grey, np.float32) / 255 > 0.5
    assert set(bad.mask.unique().tolist()) <= {0.0, 1.0}
    assert (bad.mask[0].numpy().astype(bool) != ref_mask).sum() <= 2  # PIL vs torch rounding at 0.5
    assert (bad.label, bad.defect, bad.cls_name, bad.path) == (1, "dent", "c", str(tmp_path / "img.png"))
    assert good.label == 0 and good.defect == "good" and good.mask.sum() == 0
    assert torch.equal(good.image, bad.image)


def test_dataset_read_error_names_the_file(tmp_path):
    record = {"img_path": "gone.png", "mask_path": "", "cls_name": "c", "specie_name": "good", "anomaly": 0}
    with pytest.raises(DataError, match="gone.png"):
        AnomalyDataset(tmp_path, [record], 8)[0]


def test_collate_samples_batches_and_pickles(mvtec_root):
    train, test, classes = build_datasets(DataConfig(dataset="mvtec", root=str(mvtec_root), image_size=16))
    batch = collate_samples([test[i] for i in range(len(test))])
    assert batch["image"].shape == (len(test), 3, 16, 16) and batch["mask"].shape == (len(test), 1, 16, 16)
    assert batch["label"].dtype == torch.long
    assert batch["label"].tolist() == [r["anomaly"] for r in test.records]
    assert batch["cls_name"] == [r["cls_name"] for r in test.records]
    assert all(isinstance(p, str) for p in batch["path"]) and len(batch["defect"]) == len(test)
    assert pickle.loads(pickle.dumps(collate_samples)) is collate_samples
    assert classes == ["bottle", "cable"] and len(train) == 6


# --------------------------------------------------------------------------- build_datasets


def test_build_datasets_manifest_datasets(mvtec_root):
    cfg = DataConfig(dataset="visa", root=str(mvtec_root), image_size=16)
    with pytest.raises(DataError, match="mambaad prepare-data --dataset visa"):
        build_datasets(cfg)
    meta = scan_mvtec(mvtec_root)
    del meta["test"]["cable"]
    write_meta(meta, mvtec_root / "meta.json")
    train, test, classes = build_datasets(cfg)
    assert classes == ["bottle", "cable"] and len(train) == 6 and len(test) == 4
    cfg.classes = ["bottle"]
    assert build_datasets(cfg)[2] == ["bottle"]
    cfg.classes = ["nope"]
    with pytest.raises(DataError, match="unknown class 'nope'"):
        build_datasets(cfg)


def test_build_datasets_rejects_manifest_naming_missing_files(mvtec_root):
    meta = scan_mvtec(mvtec_root)
    (mvtec_root / "bottle" / "train" / "good" / "001.png").unlink()
    write_meta(meta, mvtec_root / "custom.json")
    with pytest.raises(DataError, match="001.png"):
        build_datasets(DataConfig(dataset="mvtec", root=str(mvtec_root), meta="custom.json"))


def test_build_datasets_unknown_dataset():
    with pytest.raises(DataError, match="data.dataset 'imagenet'"):
        build_datasets(DataConfig(dataset="imagenet"))

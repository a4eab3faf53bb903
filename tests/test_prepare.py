"""prepare-data: miniature copies of each benchmark's real layout, and every kind of bad input.

Each dataset test builds a few generated images with the original's folder and file naming, checks
the manifest against the layout it built, re-runs prepare-data (same bytes) and passes the datasets
through a DataLoader. The bad-input tests inject one broken file each into a small MVTec tree.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mambaad_cli.cli import main
from mambaad_cli.config import DataConfig
from mambaad_cli.data import DataError, build_datasets, collate_samples, read_meta, scan_mvtec
from mambaad_cli.data import prepare as prepare_module
from mambaad_cli.data import validate as validate_module
from mambaad_cli.data.build import coco_split_metas, split_data_configs
from mambaad_cli.data.manifest import split_records
from mambaad_cli.data.prepare import prepare_data
from mambaad_cli.errors import UserError

H, W = 16, 20


def rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def box_mask(box=(2, 3, 9, 12), h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    y0, x0, y1, x1 = box
    m[y0:y1, x0:x1] = True
    return m


def save(path: Path, array: np.ndarray) -> Path:
    """Any format by extension (OpenCV writes BGR; arrays here are RGB or gray)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3 and array.shape[2] == 3:
        array = array[..., ::-1]
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[..., [2, 1, 0, 3]]
    ok, data = cv2.imencode(path.suffix.lower(), np.ascontiguousarray(array))
    assert ok
    path.write_bytes(data.tobytes())
    return path


def loader_pass(cfg: DataConfig, workers: int = 0) -> tuple[list[dict], list[str]]:
    """Every test batch through a DataLoader; checks labels and masks against the records."""
    train, test, classes = build_datasets(cfg)
    assert len(train) > 0
    next(iter(DataLoader(train, batch_size=4, num_workers=workers, collate_fn=collate_samples)))
    seen = 0
    for batch in DataLoader(test, batch_size=3, num_workers=workers, collate_fn=collate_samples):
        assert batch["image"].shape[1:] == (3, cfg.image_size, cfg.image_size)
        for label, mask in zip(batch["label"].tolist(), batch["mask"], strict=True):
            assert (mask.sum() > 0) == bool(label)
        seen += len(batch["label"])
    assert seen == len(test)
    return test.records, classes


def prepare_twice(*args, **kwargs):
    """prepare-data, then again: the manifest(s) must come out byte for byte the same."""
    first = prepare_data(*args, **kwargs)
    before = [p.read_bytes() for p in first.manifests]
    second = prepare_data(*args, **kwargs)
    assert second.manifests == first.manifests
    assert [p.read_bytes() for p in second.manifests] == before
    assert second.problems == first.problems and second.counts == first.counts
    return first


# --------------------------------------------------------------------------- MVTec-AD, Uni-Medical


def make_mvtec(root: Path, classes=("bottle", "cable"), defect="broken_large", mask_suffix="_mask") -> Path:
    for k, cls in enumerate(classes):
        for i in range(3):
            save(root / cls / "train" / "good" / f"{i:03d}.png", rgb(10 * k + i))
        save(root / cls / "test" / "good" / "000.png", rgb(100 + k))
        save(root / cls / "test" / defect / "000.png", rgb(200 + k))
        save(
            root / cls / "ground_truth" / defect / f"000{mask_suffix}.png", box_mask().astype(np.uint8) * 255
        )
    (root / "license.txt").write_text("CC BY-NC-SA 4.0")
    return root


def test_mvtec_manifest_matches_the_layout_and_loads(tmp_path):
    root = make_mvtec(tmp_path / "mvtec")
    result = prepare_twice("mvtec", root)
    assert result.manifests == [root / "meta.json"] and result.problems == []
    meta = read_meta(root / "meta.json")
    assert meta == scan_mvtec(root)  # the strict scanner agrees on a clean tree
    assert [r["img_path"] for r in meta["train"]["bottle"]] == [
        f"bottle/train/good/{i:03d}.png" for i in range(3)
    ]
    defective = [r for r in meta["test"]["cable"] if r["anomaly"]]
    assert defective == [
        {
            "img_path": "cable/test/broken_large/000.png",
            "mask_path": "cable/ground_truth/broken_large/000_mask.png",
            "cls_name": "cable",
            "specie_name": "broken_large",
            "anomaly": 1,
        }
    ]
    assert result.counts == {
        c: {"train": 3, "test good": 1, "test defective": 1} for c in ("bottle", "cable")
    }
    records, classes = loader_pass(DataConfig(dataset="mvtec", root=str(root), image_size=16), workers=2)
    assert classes == ["bottle", "cable"] and len(records) == 4


def test_uni_medical_masks_share_the_image_name(tmp_path):
    root = make_mvtec(
        tmp_path / "medical", classes=("brain", "liver", "retinal"), defect="ungood", mask_suffix=""
    )
    result = prepare_twice("uni_medical", root)
    meta = read_meta(result.path)
    assert sorted(meta["test"]) == ["brain", "liver", "retinal"]
    bad = [r for r in meta["test"]["liver"] if r["anomaly"]]
    assert [(r["img_path"], r["mask_path"]) for r in bad] == [
        ("liver/test/ungood/000.png", "liver/ground_truth/ungood/000.png")
    ]
    loader_pass(DataConfig(dataset="uni_medical", root=str(root), image_size=16))


# --------------------------------------------------------------------------- MVTec-3D


def test_mvtec3d_rgb_only_and_training_includes_validation(tmp_path):
    root = tmp_path / "mvtec3d"
    cls = root / "cable_gland"
    for i in range(2):
        save(cls / "train" / "good" / "rgb" / f"{i:03d}.png", rgb(i))
        (cls / "train" / "good" / "xyz").mkdir(parents=True, exist_ok=True)
        (cls / "train" / "good" / "xyz" / f"{i:03d}.tiff").write_bytes(b"II*\0 point cloud, not read")
    save(cls / "validation" / "good" / "rgb" / "000.png", rgb(5))
    save(cls / "test" / "good" / "rgb" / "000.png", rgb(6))
    save(cls / "test" / "good" / "gt" / "000.png", np.zeros((H, W), np.uint8))
    save(cls / "test" / "bent" / "rgb" / "000.png", rgb(7))
    save(cls / "test" / "bent" / "gt" / "000.png", box_mask().astype(np.uint8) * 255)
    result = prepare_twice("mvtec3d", root)
    meta = read_meta(result.path)
    assert result.problems == []
    assert [r["img_path"] for r in split_records(meta, "train", ["cable_gland"])] == [
        "cable_gland/train/good/rgb/000.png",
        "cable_gland/train/good/rgb/001.png",
        "cable_gland/validation/good/rgb/000.png",
    ]
    assert [(r["img_path"], r["mask_path"]) for r in meta["test"]["cable_gland"]] == [
        ("cable_gland/test/bent/rgb/000.png", "cable_gland/test/bent/gt/000.png"),
        ("cable_gland/test/good/rgb/000.png", ""),
    ]
    assert result.counts == {"cable_gland": {"train": 3, "test good": 1, "test defective": 1}}
    loader_pass(DataConfig(dataset="mvtec3d", root=str(root), image_size=16))


# --------------------------------------------------------------------------- VisA


def make_visa(root: Path) -> Path:
    rows = ["object,split,label,image,mask"]
    for k, cls in enumerate(["candle", "pcb1"]):
        data = root / cls / "Data"
        for i in range(3):
            save(data / "Images" / "Normal" / f"{i:04d}.JPG", rgb(k * 10 + i, H, H))
            rows.append(f"{cls},{'train' if i < 2 else 'test'},normal,{cls}/Data/Images/Normal/{i:04d}.JPG,")
        save(data / "Images" / "Anomaly" / "000.JPG", rgb(50 + k, H, H))
        instances = np.zeros((H, H), np.uint8)
        instances[1:4, 1:5] = 1  # two defects, stored as instance ids 1 and 2 (as VisA does)
        instances[8:12, 10:15] = 2
        save(data / "Masks" / "Anomaly" / "000.png", instances)
        rows.append(f"{cls},test,anomaly,{cls}/Data/Images/Anomaly/000.JPG,{cls}/Data/Masks/Anomaly/000.png")
        (root / cls / "image_anno.csv").write_text("image,label,mask\n")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    (root / "split_csv" / "2cls_highshot.csv").write_text("object,split,label,image,mask\n")
    return root


def test_visa_from_split_csv_with_instance_masks_binarised(tmp_path):
    root = make_visa(tmp_path / "visa")
    result = prepare_twice("visa", root)
    meta = read_meta(result.path)
    assert result.problems == []
    assert [r["img_path"] for r in meta["train"]["candle"]] == [
        "candle/Data/Images/Normal/0000.JPG",
        "candle/Data/Images/Normal/0001.JPG",
    ]
    assert [
        (r["img_path"], r["mask_path"], r["anomaly"], r["specie_name"]) for r in meta["test"]["pcb1"]
    ] == [
        ("pcb1/Data/Images/Normal/0002.JPG", "", 0, ""),
        ("pcb1/Data/Images/Anomaly/000.JPG", "pcb1/Data/Masks/Anomaly/000.png", 1, ""),
    ]
    _, test, _ = build_datasets(DataConfig(dataset="visa", root=str(root), meta="meta.json", image_size=H))
    (sample,) = [
        test[i]
        for i in range(len(test))
        if test.records[i]["img_path"] == "candle/Data/Images/Anomaly/000.JPG"
    ]
    expected = np.zeros((H, H), bool)  # square images at image_size: no resizing, the mask is exact
    expected[1:4, 1:5] = expected[8:12, 10:15] = True
    assert torch.equal(sample.mask[0], torch.from_numpy(expected).float())
    loader_pass(DataConfig(dataset="visa", root=str(root), image_size=16))


def test_visa_csv_problems_are_listed(tmp_path):
    root = make_visa(tmp_path / "visa")
    csv_path = root / "split_csv" / "1cls.csv"
    csv_path.write_text(
        csv_path.read_text()
        + "candle,test,anomaly,candle/Data/Images/Anomaly/999.JPG,candle/Data/Masks/Anomaly/999.png\n"
        + "candle,test,anomaly,candle/Data/Images/Normal/0002.JPG,\n"
    )
    result = prepare_data("visa", root)
    assert [(p.path, p.action) for p in result.problems] == [
        ("candle/Data/Images/Anomaly/999.JPG", "image skipped"),
        ("candle/Data/Images/Normal/0002.JPG", "image skipped"),
    ]
    assert "not found" in result.problems[0].issue and "no mask" in result.problems[1].issue
    csv_path.write_text("object,split,image\n")
    with pytest.raises(DataError, match="1cls.csv: missing column"):
        prepare_data("visa", root)


# --------------------------------------------------------------------------- Real-IAD


def make_realiad(root: Path, json_dir: str = "realiad_jsons") -> Path:
    stamp = "20230922093127"
    for cls in ("audiojack", "pcb"):
        cls_dir = root / "realiad_1024" / cls
        info = {"meta": {"prefix": "", "normal_class": "OK"}, "train": [], "test": []}
        for split, sample, kind in (("train", 1, "OK"), ("test", 2, "OK"), ("test", 3, "NG/AK")):
            for view in range(1, 6):
                code = kind.split("/")[-1]
                name = f"{cls}_{sample:04d}_{code}_C{view}_{stamp}"
                folder = f"{kind}/S{sample:04d}"
                save(cls_dir / folder / f"{name}.jpg", rgb(sample * 10 + view))
                mask = None
                if code != "OK":
                    mask = f"{folder}/{name}.png"
                    save(cls_dir / mask, box_mask().astype(np.uint8) * 255)
                info[split].append(
                    {
                        "category": cls,
                        "anomaly_class": code,
                        "image_path": f"{folder}/{name}.jpg",
                        "mask_path": mask,
                    }
                )
        (root / json_dir).mkdir(parents=True, exist_ok=True)
        (root / json_dir / f"{cls}.json").write_text(json.dumps(info))
    return root


def test_realiad_all_views_by_default_and_a_views_filter(tmp_path):
    root = make_realiad(tmp_path / "realiad")
    result = prepare_twice("realiad", root)
    assert result.problems == []
    assert result.counts == {
        c: {"train": 5, "test good": 5, "test defective": 5} for c in ("audiojack", "pcb")
    }
    meta = read_meta(result.path)
    ng = [r for r in meta["test"]["pcb"] if r["anomaly"]][0]
    assert ng == {
        "img_path": "realiad_1024/pcb/NG/AK/S0003/pcb_0003_AK_C1_20230922093127.jpg",
        "mask_path": "realiad_1024/pcb/NG/AK/S0003/pcb_0003_AK_C1_20230922093127.png",
        "cls_name": "pcb",
        "specie_name": "AK",
        "anomaly": 1,
    }
    records, _ = loader_pass(DataConfig(dataset="realiad", root=str(root), image_size=16, views=[2]))
    assert len(records) == 4 and all("_C2_" in r["img_path"] for r in records)

    out = tmp_path / "views13.json"
    some = prepare_data("realiad", root, out, views="1,3")
    assert some.counts["pcb"] == {"train": 2, "test good": 2, "test defective": 2}
    views = {Path(r["img_path"]).name.split("_")[3] for rs in read_meta(out)["test"].values() for r in rs}
    assert views == {"C1", "C3"}
    with pytest.raises(DataError, match="views 1-5"):
        prepare_data("realiad", root, out, views=[6])


def test_realiad_json_next_to_class_folders_as_ader_keeps_it(tmp_path):
    a = prepare_data("realiad", make_realiad(tmp_path / "a"))
    root = make_realiad(tmp_path / "b", json_dir=".")
    for cls in ("audiojack", "pcb"):  # ADer's layout: data/realiad/<cls>.json next to data/realiad/<cls>/
        shutil.move(root / "realiad_1024" / cls, root / cls)
    b = prepare_data("realiad", root)
    assert b.counts == a.counts and b.problems == []
    assert (
        read_meta(b.path)["train"]["pcb"][0]["img_path"] == "pcb/OK/S0001/pcb_0001_OK_C1_20230922093127.jpg"
    )


# --------------------------------------------------------------------------- COCO-AD

COCO_IDS = [*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83),
            *range(84, 91)]  # fmt: skip
PERSON, CAR, COW, ELEPHANT, TOOTHBRUSH = 1, 3, 21, 22, 90  # split 0 ends with cow, split 1 starts at elephant


def rect(x0, y0, x1, y1) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def filled(*boxes) -> np.ndarray:
    """What a filled axis-aligned polygon covers: both edges included, coordinates truncated."""
    m = np.zeros((H, W), bool)
    for x0, y0, x1, y1 in boxes:
        m[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1] = True
    return m


def write_instances(root: Path, part: str, images: dict[int, list[tuple[int, object]]]) -> None:
    """images: {image id: [(category id, segmentation), ...]}; categories listed in shuffled order."""
    cats = [{"id": c, "name": f"cat{c}", "supercategory": "x"} for c in COCO_IDS]
    np.random.default_rng(0).shuffle(cats)
    info = {"images": [], "annotations": [], "categories": cats}
    for image_id, anns in images.items():
        name = f"{image_id:012d}.jpg"
        save(root / f"{part}2017" / name, rgb(image_id))
        info["images"].append({"id": image_id, "file_name": name, "height": H, "width": W})
        for cat, seg in anns:
            info["annotations"].append(
                {
                    "id": len(info["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "segmentation": seg,
                    "iscrowd": int(isinstance(seg, dict)),
                }  # fmt: skip
            )
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{part}2017.json").write_text(json.dumps(info))


PERSON_BOX, ELEPHANT_BOX = (2.9, 1, 6, 5), (10, 8, 17, 14)
COW_BOXES = ((0, 0, 3, 3), (12, 10, 19, 15))


def make_coco(root: Path) -> Path:
    write_instances(
        root,
        "train",
        {9: [(PERSON, [rect(1, 1, 5, 5)])], 25: [(CAR, [rect(0, 0, 4, 4)]), (TOOTHBRUSH, [rect(5, 5, 9, 9)])],
         30: [(ELEPHANT, [rect(2, 2, 8, 8)])], 34: []},
    )  # fmt: skip
    write_instances(
        root,
        "val",
        {139: [(PERSON, [rect(*PERSON_BOX)]), (ELEPHANT, [rect(*ELEPHANT_BOX)])],
         285: [(TOOTHBRUSH, [rect(4, 4, 8, 8)])], 632: [],
         724: [(COW, [rect(*COW_BOXES[0]), rect(*COW_BOXES[1])])]},
    )  # fmt: skip
    return root


def test_coco_ad_four_splits_masks_and_manifests(tmp_path):
    root = make_coco(tmp_path / "coco")
    result = prepare_twice("coco_ad", root)
    assert result.manifests == [root / f"meta_20_{k}.json" for k in range(4)] and result.problems == []
    expected = {  # split: (train image ids, {val image id: mask or None})
        0: ([30], {139: filled(PERSON_BOX), 285: None, 724: filled(*COW_BOXES)}),
        1: ([9, 25], {139: filled(ELEPHANT_BOX), 285: None, 724: None}),
        2: ([9, 25, 30], {139: None, 285: None, 724: None}),
        3: ([9, 30], {139: None, 285: filled((4, 4, 8, 8)), 724: None}),
    }
    for k, (train_ids, test) in expected.items():
        meta = read_meta(root / f"meta_20_{k}.json")
        assert [r["img_path"] for r in meta["train"]["coco"]] == [
            f"train2017/{i:012d}.jpg" for i in train_ids
        ]
        assert [r["img_path"] for r in meta["test"]["coco"]] == [f"val2017/{i:012d}.jpg" for i in test]
        for r, (image_id, mask) in zip(meta["test"]["coco"], test.items(), strict=True):
            assert r["anomaly"] == int(mask is not None) and r["cls_name"] == "coco"
            if mask is not None:
                assert r["mask_path"] == f"val2017_mask_ad_20_{k}/{image_id:012d}.png"
                written = cv2.imread(str(root / r["mask_path"]), cv2.IMREAD_UNCHANGED)
                assert set(np.unique(written)) <= {0, 255} and np.array_equal(written > 0, mask)
        assert result.counts[f"coco split {k}"]["train"] == len(train_ids)
    assert sorted(coco_split_metas(root)) == [0, 1, 2, 3]

    cfgs = split_data_configs(DataConfig(dataset="coco_ad", root=str(root), image_size=16))
    assert [c.coco_split for c in cfgs] == [0, 1, 2, 3]
    records, classes = loader_pass(cfgs[1])
    assert classes == ["coco"] and [r["anomaly"] for r in records] == [1, 0, 0]
    with pytest.raises(DataError, match="coco_split"):
        build_datasets(DataConfig(dataset="coco_ad", root=str(root), coco_split=-1))


def test_coco_masks_are_not_rewritten_on_a_rerun(tmp_path):
    root = make_coco(tmp_path / "coco")
    prepare_data("coco_ad", root, split=0, check=False)
    masks = sorted((root / "val2017_mask_ad_20_0").iterdir())
    stamps = [p.stat().st_mtime_ns for p in masks]
    prepare_data("coco_ad", root, split=0, check=False)
    assert [p.stat().st_mtime_ns for p in masks] == stamps
    assert not (root / "meta_20_1.json").exists()


def test_coco_rle_needs_pycocotools_only_for_held_out_instances(tmp_path, monkeypatch):
    root = make_coco(tmp_path / "coco")
    rle = {"size": [H, W], "counts": [5, 10, H * W - 15]}  # uncompressed, column-major
    write_instances(root, "val", {139: [(PERSON, rle)], 285: [(ELEPHANT, [rect(1, 1, 3, 3)])]})
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # as on a machine without the extra
    prepare_data("coco_ad", root, split=1)  # the RLE instance is a normal category in split 1
    with pytest.raises(
        UserError, match=r"instances_val2017.json: annotation 1 has an RLE mask.*mambaad\[coco\]"
    ):
        prepare_data("coco_ad", root, split=0)
    monkeypatch.delitem(sys.modules, "pycocotools")
    pytest.importorskip("pycocotools")
    prepare_data("coco_ad", root, split=0)
    expected = np.zeros(H * W, bool)
    expected[5:15] = True
    written = cv2.imread(str(root / "val2017_mask_ad_20_0" / "000000000139.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(written > 0, expected.reshape(W, H).T)


def test_coco_to_an_out_folder_when_the_root_is_read_only(tmp_path, monkeypatch):
    root = make_coco(tmp_path / "coco")
    monkeypatch.setattr(prepare_module, "_is_writable", lambda folder: False)
    with pytest.raises(DataError, match="read-only: give --out"):
        prepare_data("coco_ad", root)
    out = tmp_path / "prepared"
    result = prepare_data("coco_ad", root, out, split=3)
    assert result.manifests == [out / "meta_20_3.json"] and not list(root.glob("meta*.json"))
    (mask_path,) = [r["mask_path"] for r in read_meta(result.path)["test"]["coco"] if r["anomaly"]]
    assert Path(mask_path) == out / "val2017_mask_ad_20_3" / "000000000285.png"
    loader_pass(DataConfig(dataset="coco_ad", root=str(root), meta=str(out), coco_split=3, image_size=16))


# --------------------------------------------------------------------------- a user's own folder


def test_folder_single_class_any_format_opencv_reads(tmp_path):
    root = tmp_path / "my_parts"
    gray = np.random.default_rng(3).integers(0, 256, (H, W), dtype=np.uint8)
    deep = np.random.default_rng(4).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    save(root / "train" / "good" / "a.jpg", rgb(1))
    save(root / "train" / "good" / "b.bmp", rgb(2))
    save(root / "train" / "good" / "c.tif", deep)
    save(root / "train" / "good" / "d.webp", rgb(5))
    save(root / "train" / "good" / "g.ppm", rgb(7))
    save(root / "test" / "good" / "e.jpg", gray)
    save(root / "test" / "scratch" / "f.png", rgb(6))
    save(root / "ground_truth" / "scratch" / "f_mask.bmp", box_mask().astype(np.uint8) * 255)
    result = prepare_twice("folder", root)
    assert result.problems == [] and result.counts == {
        "my_parts": {"train": 5, "test good": 1, "test defective": 1}
    }
    meta = read_meta(result.path)
    assert meta["test"]["my_parts"][1]["mask_path"] == "ground_truth/scratch/f_mask.bmp"
    records, classes = loader_pass(DataConfig(dataset="folder", root=str(root), image_size=16))
    assert classes == ["my_parts"] and len(records) == 2


# --------------------------------------------------------------------------- bad input


def _truncated_png(root):
    data = cv2.imencode(".png", rgb(9))[1].tobytes()
    (root / "bottle" / "train" / "good" / "003.png").write_bytes(data[: len(data) // 2])
    return "bottle/train/good/003.png", "not a readable image", "image skipped"


def _zero_bytes(root):
    (root / "bottle" / "train" / "good" / "003.png").write_bytes(b"")
    return "bottle/train/good/003.png", "empty file", "image skipped"


def _text_as_jpg(root):
    (root / "bottle" / "test" / "good" / "001.jpg").write_text("GIF89a? no: a note saved with the wrong name")
    return "bottle/test/good/001.jpg", "not a readable image", "image skipped"


def _mask_wrong_size(root):
    save(root / "bottle" / "ground_truth" / "broken_large" / "000_mask.png", np.full((8, 10), 255, np.uint8))
    return (
        "bottle/ground_truth/broken_large/000_mask.png",
        f"mask is 10x8 pixels, its image {W}x{H}",
        "image skipped",
    )


def _mask_without_image(root):
    save(
        root / "bottle" / "ground_truth" / "broken_large" / "007_mask.png", box_mask().astype(np.uint8) * 255
    )
    return "bottle/ground_truth/broken_large/007_mask.png", "mask without an image", "file ignored"


def _image_without_mask(root):
    save(root / "bottle" / "test" / "broken_large" / "001.png", rgb(77))
    return "bottle/test/broken_large/001.png", "has no mask", "image skipped"


def _class_without_training(root):
    for p in (root / "cable" / "train" / "good").iterdir():
        p.unlink()
    return "cable", "class 'cable' has no usable training images", "class skipped"


BAD = {
    "truncated PNG": (_truncated_png, {"bottle": (3, 1, 1)}),
    "zero-byte file": (_zero_bytes, {"bottle": (3, 1, 1)}),
    "non-image with an image extension": (_text_as_jpg, {"bottle": (3, 1, 1)}),
    "mask of the wrong size": (_mask_wrong_size, {"bottle": (3, 1, 0)}),
    "mask without an image": (_mask_without_image, {"bottle": (3, 1, 1)}),
    "defective image without a mask": (_image_without_mask, {"bottle": (3, 1, 1)}),
    "class folder with no training images": (_class_without_training, {"bottle": (3, 1, 1)}),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_file_is_skipped_and_listed_or_stops_a_strict_run(tmp_path, case):
    root = make_mvtec(tmp_path / "mvtec")
    inject, counts = BAD[case]
    path, issue, action = inject(root)
    result = prepare_data("mvtec", root)
    assert [(p.path, p.action) for p in result.problems] == [(path, action)]
    assert issue in result.problems[0].issue
    for cls, (train, good, bad) in counts.items():
        assert result.counts[cls] == {"train": train, "test good": good, "test defective": bad}
    assert ("cable" in result.counts) == (case != "class folder with no training images")
    loader_pass(DataConfig(dataset="mvtec", root=str(root), image_size=16))  # runs on what was kept
    with pytest.raises(DataError, match="--strict") as info:
        prepare_data("mvtec", root, tmp_path / "strict.json", strict=True)
    assert str(root / path) in str(info.value)
    assert not (tmp_path / "strict.json").exists()


@pytest.mark.parametrize("kind", ["16-bit TIFF", "RGBA PNG", "grayscale JPEG"])
def test_unusual_but_valid_images_are_kept_and_load_as_rgb8(tmp_path, kind):
    root = make_mvtec(tmp_path / "mvtec", classes=("bottle",))
    rng = np.random.default_rng(5)
    if kind == "16-bit TIFF":
        pixels = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
        path, expected = (
            save(root / "bottle" / "test" / "good" / "001.tif", pixels),
            (pixels >> 8).astype(np.uint8),
        )
    elif kind == "RGBA PNG":
        pixels = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
        path, expected = save(root / "bottle" / "test" / "good" / "001.png", pixels), pixels[..., :3]
    else:
        pixels = np.full((H, W), 90, np.uint8)  # flat: JPEG keeps it within a grey level
        path, expected = save(root / "bottle" / "test" / "good" / "001.jpg", pixels), np.full((H, W, 3), 90)
    result = prepare_data("mvtec", root, strict=True)
    assert result.problems == [] and result.counts["bottle"]["test good"] == 2
    _, test, _ = build_datasets(DataConfig(dataset="mvtec", root=str(root), image_size=H))
    (sample,) = [test[i] for i in range(len(test)) if test.records[i]["img_path"].endswith(path.name)]
    assert sample.image.shape == (3, H, H)
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(np.asarray(expected, np.uint8)).permute(2, 0, 1)[None].float(), (H, H),
        mode="bilinear", antialias=True, align_corners=False,
    )[0] / 255  # fmt: skip
    assert (sample.image - reference).abs().max() <= 1.5 / 255


def test_checks_in_worker_processes_find_the_same_problems(tmp_path, monkeypatch):
    root = make_mvtec(tmp_path / "mvtec")
    _truncated_png(root)
    _mask_wrong_size(root)
    inline = prepare_data("mvtec", root, workers=1)
    monkeypatch.setattr(validate_module, "INLINE_BELOW", 1)
    pooled = prepare_data("mvtec", root, workers=2)
    assert pooled.problems == inline.problems and len(pooled.problems) == 2
    with pytest.raises(DataError, match="003.png"):
        prepare_data("mvtec", root, workers=2, strict=True)


def test_no_usable_class_and_bad_options_are_user_errors(tmp_path):
    root = make_mvtec(tmp_path / "mvtec", classes=("bottle",))
    with pytest.raises(DataError, match="--dataset imagenet"):
        prepare_data("imagenet", root)
    with pytest.raises(DataError, match="--views applies to --dataset realiad"):
        prepare_data("mvtec", root, views=[1])
    with pytest.raises(DataError, match="--split"):
        prepare_data("mvtec", root, split=2)
    with pytest.raises(DataError, match="split 7"):
        prepare_data("coco_ad", root, split=7)
    with pytest.raises(DataError, match="unknown class 'zipper'"):
        prepare_data("mvtec", root, classes=["zipper"])
    for p in (root / "bottle" / "train" / "good").iterdir():
        p.write_bytes(b"")
    with pytest.raises(DataError, match="no class with usable training images"):
        prepare_data("mvtec", root)


def test_read_only_root_needs_out(tmp_path, monkeypatch):
    root = make_mvtec(tmp_path / "mvtec")
    monkeypatch.setattr(prepare_module, "_is_writable", lambda folder: False)
    with pytest.raises(DataError, match="read-only: give --out"):
        prepare_data("mvtec", root)
    out = tmp_path / "manifests" / "mvtec.json"
    assert prepare_data("mvtec", root, out).manifests == [out] and not (root / "meta.json").exists()
    loader_pass(DataConfig(dataset="mvtec", root=str(root), meta=str(out), image_size=16))


# --------------------------------------------------------------------------- command line


def test_cli_lists_problems_and_strict_is_one_line(tmp_path, capsys):
    root = make_mvtec(tmp_path / "mvtec")
    _zero_bytes(root)
    assert main(["prepare-data", "--dataset", "mvtec", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "bottle/train/good/003.png" in out and "empty file" in out and "image skipped: 1" in out
    assert "total" in out and str(root / "meta.json") in out
    assert main(["prepare-data", "--dataset", "mvtec", "--root", str(root), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "003.png" in err and "Traceback" not in err


def test_cli_realiad_views_and_coco_split(tmp_path, capsys):
    root = make_realiad(tmp_path / "realiad")
    out = tmp_path / "sv.json"
    assert (
        main(["prepare-data", "--dataset", "realiad", "--root", str(root), "--views", "2", "--out", str(out)])
        == 0
    )
    assert all("_C2_" in r["img_path"] for rs in read_meta(out)["train"].values() for r in rs)
    assert f"--set data.meta={out}" in capsys.readouterr().out
    coco = make_coco(tmp_path / "coco")
    assert main(["prepare-data", "--dataset", "coco_ad", "--root", str(coco), "--split", "1"]) == 0
    assert "coco split 1" in capsys.readouterr().out and (coco / "meta_20_1.json").is_file()

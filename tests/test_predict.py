"""predict: same score as eval, outputs at the original image size, thresholds, inputs, errors."""

import csv
import importlib
import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from tiny_data import SIZE, make_dataset

from mambaad_cli.cli import main
from mambaad_cli.config import load_preset
from mambaad_cli.data import build_datasets, write_png
from mambaad_cli.engine import train
from mambaad_cli.engine.checkpoint import load_model
from mambaad_cli.engine.predict import CSV_COLUMNS, Calibration, collect_images, predict
from mambaad_cli.errors import UserError
from mambaad_cli.model import anomaly_map, image_scores
from mambaad_cli.viz.colormap import colorize, to_levels
from mambaad_cli.viz.overlay import heat_overlay


def train_tiny_run(tmp_path):
    """A 64x64 model with random encoder weights, 2 epochs: seconds on a CPU."""
    data_root = make_dataset(tmp_path / "data", n_train=6, seed=3)
    overrides = {
        "data.dataset": "folder",
        "data.root": str(data_root),
        "data.image_size": SIZE,
        "data.num_workers": 0,
        "data.val_fraction": 0.2,
        "model.encoder.name": "tf_efficientnet_lite0",
        "model.encoder.weights": "none",
        "model.decoder.depths": [2, 2, 2, 2],
        "train.epochs": 2,
        "train.batch_size": 4,
        "train.device": "cpu",
        "eval.batch_size": 3,
        "eval.sigma": 1.0,
        "output_dir": str(tmp_path / "runs"),
        "run_name": "tiny",
    }
    cfg = load_preset("folder", overrides)
    return data_root, cfg, train(cfg, show_progress=False).run_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("predict")
    return train_tiny_run(tmp_path)


def read_rows(out_dir):
    with (out_dir / "scores.csv").open() as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == CSV_COLUMNS
        return list(reader)


def test_predict_gives_the_score_of_the_evaluate_path(tiny, tmp_path):
    data_root, cfg, run_dir = tiny
    # the evaluate path: the dataset's sample (its preprocessing), the model, anomaly_map, image_scores
    model, _, _ = load_model(run_dir)
    _, test_ds, _ = build_datasets(cfg.data)
    expected = {}
    with torch.no_grad():
        for i in range(len(test_ds)):
            sample = test_ds[i]
            enc, dec = model(sample.image[None])
            expected[sample.path] = float(image_scores(anomaly_map(enc, dec, SIZE, sigma=cfg.eval.sigma))[0])
    result = predict(
        [data_root / "disc" / "test", data_root / "stripes" / "test"],
        tmp_path / "out",
        run=run_dir,
        batch_size=2,
        device="cpu",  # the reference ran on the CPU (on a GPU machine auto would pick cuDNN's TF32 convs)
        show_progress=False,
    )
    rows = read_rows(tmp_path / "out")
    assert len(rows) == len(expected) == len(result.predictions)
    for row in rows:
        assert float(row["score"]) == pytest.approx(expected[row["path"]], rel=1e-5, abs=1e-6)
    # the class comes from the data root's class folder, the threshold from model.json
    info = json.loads((run_dir / "model.json").read_text())
    for row in rows:
        cls_name = "disc" if "/disc/" in row["path"] else "stripes"
        assert row["class"] == cls_name
        assert float(row["threshold"]) == pytest.approx(info["thresholds"][cls_name], abs=1e-6)
        assert row["verdict"] == ("anomalous" if float(row["score"]) >= float(row["threshold"]) else "normal")


def test_outputs_have_the_original_image_size(tiny, tmp_path):
    _, _, run_dir = tiny
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)  # 100 wide, 80 high, for a 64x64 model
    write_png(tmp_path / "in" / "odd.png", image)
    result = predict(
        [tmp_path / "in" / "odd.png"], tmp_path / "out", run=run_dir, save_maps=True, show_progress=False
    )
    (pred,) = result.predictions
    out = tmp_path / "out"
    overlay = cv2.imread(str(out / pred.overlay), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(out / pred.mask), cv2.IMREAD_UNCHANGED)
    amap = np.load(out / pred.map)
    assert overlay.shape == (80, 100, 3) and mask.shape == (80, 100) and amap.shape == (80, 100)
    assert amap.dtype == np.float16 and set(np.unique(mask)) <= {0, 255}
    # an image outside the data root has no class: the mean of the per-class thresholds
    info = json.loads((run_dir / "model.json").read_text())
    assert pred.cls_name == "" and pred.threshold == pytest.approx(np.mean(list(info["thresholds"].values())))
    # the upsampled map never exceeds the model-resolution maximum (the score) and comes close to it
    full = amap.astype(np.float32)
    assert full.max() <= pred.score * (1 + 1e-3) and full.max() >= 0.8 * pred.score
    # the mask is the map at the threshold (float16 rounding aside)
    near = np.abs(full - pred.threshold) <= 2e-3 * max(pred.threshold, 1.0)
    assert np.array_equal((mask > 0)[~near], (full >= pred.threshold)[~near])


def test_fixed_threshold_decides_verdicts_and_masks(tiny, tmp_path):
    data_root, _, run_dir = tiny
    for value, verdict, mask_value in (("0", "anomalous", 255), ("1e9", "normal", 0)):
        out = tmp_path / value
        assert (
            main(
                [
                    "predict",
                    str(data_root / "disc" / "test"),
                    "--out",
                    str(out),
                    "--model",
                    str(run_dir),
                    "--threshold",
                    value,
                    "--no-progress",
                ]
            )
            == 0
        )
        rows = read_rows(out)
        assert {r["verdict"] for r in rows} == {verdict}
        assert {float(r["threshold"]) for r in rows} == {float(value)}
        for r in rows:
            assert np.all(cv2.imread(str(out / r["mask"]), cv2.IMREAD_UNCHANGED) == mask_value)


def test_class_option_and_globs(tiny, tmp_path, monkeypatch):
    data_root, _, run_dir = tiny
    monkeypatch.chdir(data_root)
    result = predict(
        ["stripes/test/**/*.png"], tmp_path / "out", run=run_dir, class_name="disc", show_progress=False
    )
    assert len(result.predictions) == 4 and {p.cls_name for p in result.predictions} == {"disc"}
    # names mirror the folders under the glob's fixed part, so equal file names do not collide
    assert sorted(p.overlay for p in result.predictions) == [
        "blob/000_overlay.png",
        "blob/001_overlay.png",
        "good/000_overlay.png",
        "good/001_overlay.png",
    ]


def test_collect_images_recursive_dedup_and_collisions(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    for rel in ("a/x.png", "a/deep/er/y.JPG", "b/x.png", "a/.hidden.png"):
        write_png(tmp_path / rel, img)  # PNG bytes under any extension: still an image
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    found = collect_images([tmp_path / "a"])
    assert [i.path.name for i in found] == ["y.JPG", "x.png"]  # sorted walk; no text, no hidden file
    assert [str(i.name) for i in found] == ["deep/er/y", "x"]
    # the same file twice (folder and name) counts once; two x.png given by name get distinct names
    both = collect_images([tmp_path / "a", tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"])
    assert [str(i.name) for i in both] == ["deep/er/y", "x", "x-2"]
    # the output folder inside an input folder is not read back
    kept = collect_images([tmp_path], exclude=tmp_path / "b")
    assert [i.path for i in kept] == [i.path for i in collect_images([tmp_path / "a"])]
    assert [i.path.name for i in collect_images([str(tmp_path / "**" / "*.png")])] == ["x.png", "x.png"]


def test_unreadable_image_is_skipped_and_reported(tiny, tmp_path, capsys):
    data_root, _, run_dir = tiny
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(data_root / "disc" / "test" / "good" / "000.png", folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    assert (
        main(
            ["predict", str(folder), "--out", str(tmp_path / "out"), "--model", str(run_dir), "--no-progress"]
        )
        == 0
    )
    rows = read_rows(tmp_path / "out")
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["good.png"]
    skipped = list(csv.DictReader((tmp_path / "out" / "skipped.csv").open()))
    assert len(skipped) == 1 and skipped[0]["path"].endswith("broken.png")
    assert "broken.png" in capsys.readouterr().err


def test_an_image_whose_map_is_not_finite_gets_no_verdict(tiny, tmp_path, monkeypatch):
    """A NaN map (a 16-bit overflow, say) would read as "normal" (NaN >= threshold is False): the image is
    skipped with the reason, the others are scored."""
    import importlib

    predict_module = importlib.import_module("mambaad_cli.engine.predict")  # the package exports the function
    data_root, _, run_dir = tiny
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("a", "b"):
        shutil.copy(data_root / "disc" / "test" / "good" / "000.png", folder / f"{name}.png")
    real = predict_module.make_scorer

    def first_map_nan(*args, **kwargs):
        scorer = real(*args, **kwargs)

        def scored(images):
            maps = scorer(images).clone()
            maps[0, 0, 0] = float("nan")
            return maps

        return scored

    monkeypatch.setattr(predict_module, "make_scorer", first_map_nan)
    result = predict([folder], tmp_path / "out", run_dir, batch_size=2, show_progress=False)
    assert [p.path.rsplit("/", 1)[1] for p in result.predictions] == ["b.png"]
    skipped = list(csv.DictReader((tmp_path / "out" / "skipped.csv").open()))
    assert [r["path"].rsplit("/", 1)[1] for r in skipped] == ["a.png"]
    assert "not finite" in skipped[0]["reason"] and "--precision fp32" in skipped[0]["reason"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_run", "run folder not found"),
        ("no_weights", "no model.safetensors"),
        ("no_images", "no images found"),
        ("only_broken", "no readable images"),
        ("bad_threshold", "--threshold abc"),
        ("bad_class", "--class nope"),
        ("missing_input", "input not found"),
        ("bad_precision", "--precision fp16"),
        ("bad_writers", "--writers 0"),
    ],
)
def test_user_errors_are_one_line_exit_2(tiny, tmp_path, capsys, case, message):
    data_root, _, run_dir = tiny
    images, run, extra = str(data_root / "disc" / "test"), str(run_dir), []
    if case == "missing_run":
        run = str(tmp_path / "nowhere")
    elif case == "no_weights":
        (tmp_path / "run").mkdir()
        shutil.copy(run_dir / "model.json", tmp_path / "run" / "model.json")
        run = str(tmp_path / "run")
    elif case == "no_images":
        (tmp_path / "empty").mkdir()
        images = str(tmp_path / "empty")
    elif case == "only_broken":
        (tmp_path / "b.png").write_bytes(b"junk")
        images = str(tmp_path / "b.png")
    elif case == "bad_threshold":
        extra = ["--threshold", "abc"]
    elif case == "bad_class":
        extra = ["--class", "nope"]
    elif case == "missing_input":
        images = str(tmp_path / "no_such.png")
    elif case == "bad_precision":
        extra = ["--precision", "fp16"]
    elif case == "bad_writers":
        extra = ["--writers", "0"]
    code = main(["predict", images, "--out", str(tmp_path / "out"), "--model", run, "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_writer_threads_write_what_the_loop_writes_in_input_order(tiny, tmp_path, monkeypatch):
    """4 writer threads against none: the same scores.csv (input order) and the same PNG bytes; the writes
    really ran on other threads (a batch of 3 leaves several images in flight)."""
    import threading

    data_root, _, run_dir = tiny
    predict_module = importlib.import_module("mambaad_cli.engine.predict")
    write = predict_module._write_outputs
    threads = set()

    def recording(*args):
        threads.add(threading.current_thread().name)
        return write(*args)

    monkeypatch.setattr(predict_module, "_write_outputs", recording)
    inputs = [str(data_root / "disc" / "test"), str(data_root / "stripes" / "test")]
    serial = predict(inputs, tmp_path / "one", run=run_dir, writers=1, show_progress=False, save_maps=True)
    assert threads == {threading.current_thread().name}
    threads.clear()
    pooled = predict(inputs, tmp_path / "four", run=run_dir, writers=4, show_progress=False, save_maps=True)
    assert threads and all(name.startswith("predict-writer") for name in threads)
    assert (tmp_path / "one" / "scores.csv").read_text() == (tmp_path / "four" / "scores.csv").read_text()
    assert [p.path for p in pooled.predictions] == [p.path for p in serial.predictions]
    files = sorted(f.relative_to(tmp_path / "one") for f in (tmp_path / "one").rglob("*") if f.is_file())
    assert len(files) == 1 + 3 * len(serial.predictions)  # scores.csv, and overlay, mask and map per image
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "four" / f).read_bytes(), f


@pytest.mark.parametrize(("option", "expected"), [([], "auto"), (["--no-cuda-graphs"], False),
                                                  (["--cuda-graphs"], True)])
def test_scoring_takes_the_runs_graph_setting_unless_the_option_names_one(tiny, tmp_path, monkeypatch, option,
                                                                          expected):
    """predict scores as eval does: the run's eval.cuda_graphs (auto, which graphs on a GPU only), or the
    option's choice (recorded at make_scorer: no GPU here)."""
    data_root, _, run_dir = tiny
    predict_module = importlib.import_module("mambaad_cli.engine.predict")
    real, seen = predict_module.make_scorer, []

    def recording(model, cfg, device):
        seen.append(cfg.eval.cuda_graphs)
        return real(model, cfg, device)

    monkeypatch.setattr(predict_module, "make_scorer", recording)
    code = main(["predict", str(data_root / "disc" / "test"), "--out", str(tmp_path / "out"), "--model",
                 str(run_dir), "--no-progress", "--device", "cpu", *option])
    assert code == 0 and seen == [expected]


def test_calibration_falls_back_for_runs_without_thresholds():
    info = {
        "class_names": ["a", "b", "c"],
        "thresholds": {"a": 0.5},
        "threshold_info": {"a": {"source": "validation", "rule": "99% quantile"}},
        "map_range": {"a": [0.1, 0.8]},
        "score_stats": {
            "b": {"f1max_threshold": 0.3},
            "c": {"normal_mean": 0.2, "normal_std": 0.05, "f1max_threshold": None},
        },
    }
    calib = Calibration.from_model_json(info)
    assert calib.threshold("a") == 0.5 and calib.sources["a"] == "99% quantile"
    assert calib.threshold("b") == 0.3 and calib.threshold("c") == pytest.approx(0.35)
    assert calib.threshold("") == pytest.approx((0.5 + 0.3 + 0.35) / 3)
    assert calib.map_range("a") == (0.1, 0.8) and calib.map_range("b") == (0.0, pytest.approx(0.45))
    assert calib.map_range("") == (0.0, 0.8)
    with pytest.raises(UserError, match="--threshold"):
        Calibration.from_model_json({"class_names": ["a"]}).threshold("a")


def test_colour_scale_is_fixed_not_stretched_per_image():
    lo, hi = 0.2, 1.2
    a = colorize(np.array([[0.7, 0.21]], np.float32), lo, hi)
    b = colorize(np.array([[0.7, 5.0]], np.float32), lo, hi)
    assert np.array_equal(a[0, 0], b[0, 0])  # the same value, the same colour, whatever else is there
    ends = colorize(np.array([[-3.0, lo, hi, 9.0]], np.float32), lo, hi)
    assert np.array_equal(ends[0, 0], ends[0, 1]) and np.array_equal(ends[0, 2], ends[0, 3])
    assert to_levels(np.array([0.7]), lo, hi)[0] == round(0.5 * 255)


def test_overlay_blends_image_and_heat():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    amap = rng.random((12, 10)).astype(np.float32)
    got = heat_overlay(image, amap, 0.0, 1.0, alpha=0.4).astype(np.float64)
    expect = 0.6 * image + 0.4 * colorize(amap, 0.0, 1.0)
    assert np.abs(got - expect).max() <= 1.0


def test_default_model_is_the_newest_latest_run(tiny, tmp_path, monkeypatch):
    data_root, _, run_dir = tiny
    monkeypatch.chdir(run_dir.parents[2])  # the folder holding runs/folder/latest
    result = predict([data_root / "disc" / "test" / "good"], tmp_path / "out", show_progress=False)
    assert result.run_dir == run_dir.resolve() and len(result.predictions) == 2


def test_bf16_precision_scores_close_to_fp32(tiny, tmp_path):
    data_root, _, run_dir = tiny
    inputs = [data_root / "disc" / "test"]
    fp32 = predict(inputs, tmp_path / "fp32", run=run_dir, show_progress=False)
    bf16 = predict(inputs, tmp_path / "bf16", run=run_dir, show_progress=False, precision="bf16")
    a = {p.path: p.score for p in fp32.predictions}
    b = {p.path: p.score for p in bf16.predictions}
    assert a.keys() == b.keys()
    assert all(np.isfinite(v) for v in b.values())
    assert any(a[k] != b[k] for k in a)  # bf16 really ran
    assert np.allclose([b[k] for k in a], [a[k] for k in a], rtol=0.1, atol=1e-3)

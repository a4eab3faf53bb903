"""End to end on a tiny generated dataset: train -> run folder files -> eval -> resume; CLI wiring."""

import csv
import json

import numpy as np
import pytest
import safetensors.torch
import torch
import yaml
from sklearn.metrics import roc_auc_score
from tiny_data import SIZE, make_dataset

from mambaad_cli.cli import main
from mambaad_cli.config import load_preset
from mambaad_cli.engine import train
from mambaad_cli.engine.checkpoint import load_model
from mambaad_cli.engine.device import seed_everything
from mambaad_cli.engine.train import deterministic_notice, kernel_compile_notice, param_groups, step_schedule
from mambaad_cli.metrics import METRIC_KEYS


def tiny_overrides(tmp_path, data_root, **extra):
    base = {
        "data.dataset": "folder",
        "data.root": str(data_root),
        "data.image_size": SIZE,
        "data.num_workers": 0,
        "model.encoder.name": "tf_efficientnet_lite0",
        "model.encoder.weights": "none",
        "model.decoder.depths": [2, 2, 2, 2],
        "model.decoder.scan": "hilbert",
        "train.epochs": 2,
        "train.batch_size": 4,
        "train.log_every": 1,
        "train.device": "cpu",
        "data.val_fraction": 0.25,
        "eval.batch_size": 3,
        "eval.sigma": 1.0,
        "output_dir": str(tmp_path / "runs"),
        "run_name": "t1",
    }
    base.update(extra)
    return base


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("e2e")
    data_root = make_dataset(tmp_path / "data")
    cfg = load_preset("folder", tiny_overrides(tmp_path, data_root))
    result = train(cfg, show_progress=False)
    return tmp_path, data_root, cfg, result


def test_run_folder_has_every_file(trained):
    _, _, cfg, result = trained
    run = result.run_dir
    for name in (
        "config.yaml",
        "model.safetensors",
        "model.json",
        "train_state.pt",
        "log.csv",
        "metrics.json",
        "metrics.csv",
    ):
        assert (run / name).is_file(), name
    assert (run.parent / "latest").resolve() == run.resolve()
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2
    info = json.loads((run / "model.json").read_text())
    assert info["class_names"] == ["disc", "stripes"] and info["config"]["data"]["image_size"] == SIZE
    # 16 training images less 2 held out per class = 12, batch 4, drop_last -> 3 steps per epoch, 2 epochs
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 7)) and result.steps == 6
    assert all(float(r["loss"]) > 0 and float(r["images_per_s"]) > 0 for r in rows)
    # no temporary files left behind by the atomic writes
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_metrics_files_match_an_independent_computation(trained):
    _, data_root, cfg, result = trained
    run = result.run_dir
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["classes"]) == {"disc", "stripes"}
    for key in METRIC_KEYS:
        vals = [metrics["classes"][c][key] for c in metrics["classes"]]
        assert metrics["mean"][key] == pytest.approx(np.mean(vals), abs=1e-9)
        assert all(0.0 <= v <= 1.0 for v in vals)
    assert metrics["protocol"]["sigma"] == 1.0 and "AUPRO" in metrics["protocol"]
    # image AUROC recomputed from the model's own maps with scikit-learn
    from mambaad_cli.data import build_datasets
    from mambaad_cli.model import anomaly_map, image_scores

    model, _, _ = load_model(run)
    _, test_ds, _ = build_datasets(cfg.data)
    scores, labels, classes = [], [], []
    with torch.no_grad():
        for i in range(len(test_ds)):
            s = test_ds[i]
            enc, dec = model(s.image[None])
            scores.append(float(image_scores(anomaly_map(enc, dec, (SIZE, SIZE), sigma=1.0))[0]))
            labels.append(int(s.mask.max() > 0.5))
            classes.append(s.cls_name)
    for cls in ("disc", "stripes"):
        idx = [i for i, c in enumerate(classes) if c == cls]
        expect = roc_auc_score([labels[i] for i in idx], [scores[i] for i in idx])
        assert metrics["classes"][cls]["I-AUROC"] == pytest.approx(expect, abs=1e-6)
    rows = list(csv.reader((run / "metrics.csv").open()))
    assert rows[0][:8] == ["class", *METRIC_KEYS] and rows[-1][0] == "mean"


def test_saved_weights_reload_identically(trained):
    _, _, _, result = trained
    model, _, _ = load_model(result.run_dir)
    saved = safetensors.torch.load_file(str(result.run_dir / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_eval_command_rewrites_metrics(trained, capsys):
    _, _, _, result = trained
    before = json.loads((result.run_dir / "metrics.json").read_text())
    assert main(["eval", str(result.run_dir.parent / "latest"), "--no-progress"]) == 0
    after = json.loads((result.run_dir / "metrics.json").read_text())
    for key in METRIC_KEYS:
        assert after["mean"][key] == pytest.approx(before["mean"][key], abs=1e-6)
    assert "I-AUROC" in capsys.readouterr().out


def test_resume_continues_to_more_epochs(trained):
    _, _, cfg, result = trained
    from mambaad_cli.engine.evaluate import load_run_config

    cfg2 = load_run_config(result.run_dir)
    cfg2.train.epochs = 3
    cfg2.train.eval_at_end = False
    res2 = train(cfg2, resume=result.run_dir, show_progress=False)
    assert res2.steps == 9
    rows = list(csv.DictReader((result.run_dir / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 10))


def test_resume_is_exact(tmp_path):
    """2 epochs straight == interrupted after epoch 1 and resumed: same weights."""
    data_root = make_dataset(tmp_path / "data", classes=("disc",), n_train=8)
    common = {
        "model.decoder.drop_path_rate": 0.0,
        "train.deterministic": True,
        "train.eval_at_end": False,
        "data.val_fraction": 0.0,
    }
    straight = train(
        load_preset("folder", tiny_overrides(tmp_path, data_root, run_name="a", **common)),
        show_progress=False,
    )
    cfg_b = load_preset("folder", tiny_overrides(tmp_path, data_root, run_name="b", **common))
    cfg_b.train.max_steps = 2  # stands for a run killed after its first epoch's checkpoint
    assert train(cfg_b, show_progress=False).steps == 2
    cfg_b.train.max_steps = 0
    resumed = train(cfg_b, resume=tmp_path / "runs" / "folder" / "b", show_progress=False)
    a = safetensors.torch.load_file(str(straight.run_dir / "model.safetensors"))
    b = safetensors.torch.load_file(str(resumed.run_dir / "model.safetensors"))
    assert straight.steps == resumed.steps == 4
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    torch.use_deterministic_algorithms(False)


def test_param_groups_follow_the_weight_decay_rules():
    cfg = load_preset(
        "mvtec",
        {
            "model.encoder.weights": "none",
            "model.encoder.name": "tf_efficientnet_lite0",
            "model.decoder.depths": [2, 2, 2, 2],
        },
    )
    from mambaad_cli.model import build_model

    model = build_model(cfg)
    decay, no_decay = param_groups(model, 1e-4)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    plain = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert any(n.endswith("A_logs") for n in decayed) and any(n.endswith("dt_projs_bias") for n in decayed)
    assert any(n.endswith("Ds") for n in plain) and all(not n.endswith(".bias") for n in decayed)
    assert not any(n.startswith("encoder.") for n in decayed | plain)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decayed | plain == trainable


def test_step_schedule():
    f = step_schedule(100, 0.8, 0.1)
    assert [f(s) for s in (0, 79, 80, 99)] == [1.0, 1.0, 0.1, 0.1]


def test_existing_run_name_is_refused(trained, capsys):
    tmp_path, data_root, _, _ = trained
    args = ["train", "--preset", "folder", "--no-progress"]
    for k, v in tiny_overrides(tmp_path, data_root).items():
        args += ["--set", f"{k}={v}"]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err


def test_thresholds_come_from_held_out_normal_images(trained):
    _, _, cfg, result = trained
    info = json.loads((result.run_dir / "model.json").read_text())
    assert set(info["thresholds"]) == {"disc", "stripes"}
    for cls in ("disc", "stripes"):
        meta = info["threshold_info"][cls]
        assert meta["source"] == "validation" and meta["n_normal"] == 2 and meta["n_defective"] == 0
        lo, hi = info["map_range"][cls]
        assert lo < info["thresholds"][cls] < hi
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    for cls in ("disc", "stripes"):
        assert 0.0 <= metrics["classes"][cls]["I-Recall@thr"] <= 1.0


def test_threshold_equals_quantile_of_held_out_scores(trained):
    """Recompute the held-out images' scores independently: the threshold is their 99 % quantile."""
    from mambaad_cli.data import build_datasets
    from mambaad_cli.engine.calibrate import NORMAL_QUANTILE, split_validation
    from mambaad_cli.model import anomaly_map, image_scores

    _, _, cfg, result = trained
    train_ds, _, _ = build_datasets(cfg.data)
    kept, held = split_validation(train_ds, cfg.data.val_fraction, cfg.train.seed)
    assert len(kept) + len(held) == len(train_ds) == 16 and len(held) == 4
    assert not {r["img_path"] for r in kept.records} & {r["img_path"] for r in held.records}
    model, _, info = load_model(result.run_dir)
    with torch.no_grad():
        for cls in ("disc", "stripes"):
            samples = [s for s in (held[i] for i in range(len(held))) if s.cls_name == cls]
            enc, dec = model(torch.stack([s.image for s in samples]))
            scores = image_scores(anomaly_map(enc, dec, (SIZE, SIZE), sigma=cfg.eval.sigma)).numpy()
            assert info["thresholds"][cls] == pytest.approx(np.quantile(scores, NORMAL_QUANTILE), rel=1e-5)


def test_no_validation_split_falls_back_to_training_scores(tmp_path):
    data_root = make_dataset(tmp_path / "data", classes=("disc",))
    cfg = load_preset(
        "folder", tiny_overrides(tmp_path, data_root, **{"data.val_fraction": 0.0, "train.epochs": 1})
    )
    result = train(cfg, show_progress=False)
    info = json.loads((result.run_dir / "model.json").read_text())
    assert info["threshold_info"]["disc"]["source"] == "training"
    assert info["threshold_info"]["disc"]["n_normal"] == 8


def test_at_threshold_counts():
    from mambaad_cli.engine.evaluate import at_threshold

    scores = np.array([0.1, 0.4, 0.5, 0.9, 0.2])
    labels = np.array([False, True, False, True, False])
    got = at_threshold(scores, labels, 0.4)  # predicted: 0.4, 0.5, 0.9 -> tp 2, fp 1, fn 0
    assert got["I-Precision@thr"] == pytest.approx(2 / 3) and got["I-Recall@thr"] == 1.0
    assert got["I-F1@thr"] == pytest.approx(0.8)


def test_undefined_metrics_are_null_in_json_and_na_in_tables(tmp_path):
    from rich.console import Console

    from mambaad_cli.engine.evaluate import EvalResult, write_metrics
    from mambaad_cli.metrics import mean_metrics
    from mambaad_cli.viz.tables import metrics_table

    per_class = {
        "only_good": {k: float("nan") for k in METRIC_KEYS},
        "mixed": {k: 0.5 for k in METRIC_KEYS},
    }
    result = EvalResult(per_class=per_class, mean=mean_metrics(per_class), counts={})
    write_metrics(tmp_path, result, load_preset("mvtec"))

    def reject(token):
        raise AssertionError(f"metrics.json holds {token}, which is not JSON")

    data = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=reject)
    assert data["classes"]["only_good"]["I-AUROC"] is None
    assert data["mean"]["I-AUROC"] == 0.5  # the undefined class is left out of the mean
    assert "nan" in (tmp_path / "metrics.csv").read_text()
    console = Console(width=200, record=True)
    console.print(metrics_table(result))
    assert "n/a" in console.export_text()


def test_coco_ad_trains_each_split_and_reports_their_mean(tmp_path, capsys):
    from mambaad_cli.data import scan_mvtec, write_meta

    data_root = make_dataset(tmp_path / "data", classes=("coco",), n_train=4, n_good=1, n_bad=1)
    meta = scan_mvtec(data_root)
    for k in range(4):
        write_meta(meta, data_root / f"meta_20_{k}.json")
    over = tiny_overrides(
        tmp_path,
        data_root,
        **{"data.dataset": "coco_ad", "data.coco_split": -1, "train.epochs": 1, "data.val_fraction": 0.0},
    )
    result = train(load_preset("coco_ad", over), show_progress=False)
    base = result.run_dir
    assert sorted(p.name for p in base.iterdir() if p.is_dir()) == ["split0", "split1", "split2", "split3"]
    assert (base.parent / "latest").resolve() == base.resolve()
    summary = json.loads((base / "metrics.json").read_text())
    assert sorted(summary["classes"]) == ["split0", "split1", "split2", "split3"]
    for key in METRIC_KEYS:
        per_split = [
            json.loads((base / f"split{k}" / "metrics.json").read_text())["mean"][key] for k in range(4)
        ]
        assert summary["mean"][key] == pytest.approx(np.mean(per_split), abs=1e-9)
    assert main(["eval", str(base), "--no-progress"]) == 0
    assert "split3" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("backend", "device", "notice"),
    [("triton", "cuda", True), ("triton-fused", "cuda", True), ("torch", "cuda", False),
     ("cuda", "cuda", False), ("triton", "cpu", False), ("auto", "cpu", False)],
)
def test_first_step_notice_only_when_the_triton_scan_compiles(backend, device, notice):
    message = kernel_compile_notice(backend, torch.device(device))
    assert (message is not None) == notice
    if notice:
        assert "Triton" in message


@pytest.mark.parametrize(
    ("backend", "deterministic", "device", "expected"),
    [("auto", True, "cuda", "runs in PyTorch"), ("triton", True, "cuda", "scan_backend=triton sums"),
     ("triton-fused", True, "cuda", "not bitwise repeatable"), ("torch", True, "cuda", None),
     ("auto", False, "cuda", None), ("auto", True, "cpu", None)],
)
def test_deterministic_notice_says_what_the_scan_does_on_a_gpu(backend, deterministic, device, expected):
    message = deterministic_notice(backend, deterministic, torch.device(device))
    assert message is None if expected is None else expected in message and "--deterministic" in message


def test_a_non_deterministic_run_turns_the_deterministic_mode_off_again():
    """A process that trained with --deterministic and trains again without: the second run's config
    decides (else auto would keep the slow torch scan on GPUs). conftest restores both modes afterwards."""
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark


def test_training_with_the_image_cache_matches_decoding(tmp_path, monkeypatch):
    """data.cache_images changes where the pixels come from, not what they are: same losses, same metrics."""
    monkeypatch.setenv("MAMBAAD_CACHE", str(tmp_path / "cache"))
    data_root = make_dataset(tmp_path / "data", classes=("disc",), n_train=8)
    common = {"train.epochs": 1, "train.deterministic": True, "model.decoder.drop_path_rate": 0.0}
    runs = [
        train(load_preset("folder", tiny_overrides(tmp_path, data_root, run_name=name,
                                                   **{**common, "data.cache_images": cached})),
              show_progress=False)
        for name, cached in (("plain", False), ("cached", True))
    ]
    logs = [[row["loss"] for row in csv.DictReader((r.run_dir / "log.csv").open())] for r in runs]
    assert logs[0] == logs[1] and len(logs[0]) > 0
    metrics = [json.loads((r.run_dir / "metrics.json").read_text())["mean"] for r in runs]
    assert metrics[0] == metrics[1]
    assert list((tmp_path / "cache" / "images").glob("*.json"))  # the cached run built its files


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU path of --deterministic")
def test_deterministic_runs_on_a_gpu_end_with_the_same_weights(tmp_path):
    """--deterministic on CUDA (auto scan backend: PyTorch's scan under deterministic algorithms, graphs
    on): two runs from one seed end bit for bit alike."""
    data_root = make_dataset(tmp_path / "data", classes=("disc",), n_train=8)
    runs, losses = [], []
    for name in ("a", "b"):
        cfg = load_preset("folder", tiny_overrides(
            tmp_path, data_root, run_name=name, **{"train.device": "cuda", "train.deterministic": True,
                                                  "train.eval_at_end": False, "train.epochs": 3}))
        run_dir = train(cfg, show_progress=False).run_dir
        runs.append(safetensors.torch.load_file(str(run_dir / "model.safetensors")))
        losses.append([r["loss"] for r in csv.DictReader((run_dir / "log.csv").open())])
    torch.use_deterministic_algorithms(False)
    assert len(losses[0]) >= 3 and len(set(losses[0])) > 1 and losses[0] == losses[1]
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k


def test_stop_workers_ends_a_persistent_loaders_workers_and_a_new_epoch_starts_new_ones():
    # train stops the training loader's persistent workers when it ends: left to the interpreter's exit,
    # PyTorch joins each for up to 5 s where pin_memory is on too (pytorch/pytorch#81794)
    from torch.utils.data import DataLoader

    from mambaad_cli.engine.train import stop_workers

    loader = DataLoader(list(range(8)), batch_size=2, num_workers=1, persistent_workers=True)
    assert next(iter(loader)).tolist() == [0, 1]  # mid-epoch, as a run that stops at max_steps leaves it
    workers = list(loader._iterator._workers)
    assert workers and all(w.is_alive() for w in workers)
    stop_workers(loader)
    assert loader._iterator is None and not any(w.is_alive() for w in workers)
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3], [4, 5], [6, 7]]  # new workers, a whole epoch
    stop_workers(loader)
    stop_workers(DataLoader(list(range(4))))  # no workers: nothing to stop

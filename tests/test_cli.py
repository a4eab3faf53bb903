"""The command line: exit codes, one-line errors, and the commands that need no trained model."""

import json

import numpy as np
import pytest
import yaml

from mambaad_cli.cli import main
from mambaad_cli.data import write_png


def make_mvtec(root, classes=("alpha", "beta"), n_train=3):
    rng = np.random.default_rng(0)
    for cls in classes:
        for i in range(n_train):
            write_png(
                root / cls / "train" / "good" / f"{i:03d}.png", rng.integers(0, 255, (40, 40, 3), np.uint8)
            )
        write_png(root / cls / "test" / "good" / "000.png", rng.integers(0, 255, (40, 40, 3), np.uint8))
        write_png(root / cls / "test" / "crack" / "000.png", rng.integers(0, 255, (40, 40, 3), np.uint8))
        mask = np.zeros((40, 40), bool)
        mask[5:15, 5:15] = True
        write_png(root / cls / "ground_truth" / "crack" / "000_mask.png", mask)
    return root


def test_unknown_preset_is_one_line_and_exit_2(capsys):
    assert main(["train", "--preset", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'nosuch'" in err and "Traceback" not in err


def test_bad_set_names_the_key(capsys):
    assert main(["config", "--preset", "mvtec", "--set", "train.epochz=3"]) == 2
    assert "train.epochz" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(capsys):
    assert main(["train", "--no-such-option"]) == 2


def test_config_prints_resolved_yaml(capsys):
    assert main(["config", "--preset", "visa", "--set", "train.epochs=3"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["train"]["epochs"] == 3 and data["data"]["dataset"] == "visa"


def test_presets_lists_all(capsys):
    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    for name in ("mvtec", "visa", "realiad", "uni_medical", "coco_ad", "mvtec3d", "demo", "folder"):
        assert name in text


def test_prepare_data_writes_meta_and_counts(tmp_path, capsys):
    root = make_mvtec(tmp_path / "ds")
    assert main(["prepare-data", "--dataset", "mvtec", "--root", str(root)]) == 0
    meta = json.loads((root / "meta.json").read_text())
    assert sorted(meta["train"]) == ["alpha", "beta"]
    assert len(meta["train"]["alpha"]) == 3 and len(meta["test"]["beta"]) == 2
    crack = [r for r in meta["test"]["alpha"] if r["anomaly"] == 1]
    assert crack[0]["mask_path"] == "alpha/ground_truth/crack/000_mask.png"
    out = capsys.readouterr().out
    assert "alpha" in out and "total" in out
    # idempotent: a second run writes the same manifest
    before = (root / "meta.json").read_bytes()
    assert main(["prepare-data", "--dataset", "mvtec", "--root", str(root)]) == 0
    assert (root / "meta.json").read_bytes() == before


def test_prepare_data_missing_root(tmp_path, capsys):
    assert main(["prepare-data", "--dataset", "mvtec", "--root", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_eval_of_missing_run(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "runs" / "x")]) == 2
    assert "run folder not found" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["cuda:0", "tpu"])
def test_bad_device(tmp_path, capsys, device):
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from mambaad_cli.engine.device import resolve_device
    from mambaad_cli.errors import UserError

    with pytest.raises(UserError, match="--device"):
        resolve_device(device)


@pytest.mark.parametrize("backend", ["cuda", "triton", "triton-fused"])
def test_a_scan_backend_that_cannot_run_here_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, backend):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "runs"
    code = main(["train", "--preset", "demo", "--data-root", str(tmp_path / "data"), "--output-dir", str(out),
                 "--device", "cpu", "--no-progress", "--set", f"model.decoder.scan_backend={backend}"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"model.decoder.scan_backend={backend}" in err and "scan backend" in err
    assert not any(out.rglob("model.safetensors"))  # nothing trained or written as a model

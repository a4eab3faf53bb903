"""Checkpoints written in the background (engine/checkpoint_writer.py): the files hold the state at the moment
of save() whatever training does meanwhile, match a synchronous save's, and a failed write is raised."""

import threading

import pytest
import safetensors.torch
import torch

from mambaad_cli.config import load_preset
from mambaad_cli.engine import checkpoint_writer
from mambaad_cli.engine.checkpoint import MODEL_FILE, TRAIN_STATE, save_model, save_train_state
from mambaad_cli.engine.checkpoint_writer import CheckpointWriter


def _tiny_run():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model(torch.rand(5, 4)).sum().backward()
    opt.step()
    return model, opt, sched


def _load(folder):
    weights = safetensors.torch.load_file(str(folder / MODEL_FILE))
    state = torch.load(folder / TRAIN_STATE, map_location="cpu", weights_only=True)
    return weights, state


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def test_the_files_hold_the_state_at_save_time_while_training_changes_it(tmp_path, monkeypatch):
    """The write is held back until the model and the optimizer's moments have been changed in place (as the
    next steps do): the files must still equal a synchronous save taken before the change."""
    cfg = load_preset("demo")
    model, opt, sched = _tiny_run()
    save_train_state(tmp_path / "sync", model, opt, sched, 7, 2)
    save_model(tmp_path / "sync", model, cfg, ["a"], extra={"step": 7, "epoch": 2})
    changed = threading.Event()
    write = checkpoint_writer.write_train_state

    def held_back(run_dir, state):
        assert changed.wait(30)
        write(run_dir, state)

    monkeypatch.setattr(checkpoint_writer, "write_train_state", held_back)
    writer = CheckpointWriter()
    (tmp_path / "bg").mkdir()
    writer.save(tmp_path / "bg", model, opt, sched, cfg, ["a"], 7, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        for s in opt.state.values():
            s["exp_avg"].add_(1.0)
    changed.set()
    writer.wait()
    sync, background = _load(tmp_path / "sync"), _load(tmp_path / "bg")
    _assert_same(sync[0], background[0])
    _assert_same(sync[1], background[1])
    assert not torch.equal(background[0]["0.weight"], model[0].weight.detach())  # the live model moved on


def test_a_failed_write_is_raised_by_wait_and_by_the_next_save(tmp_path, monkeypatch):
    cfg = load_preset("demo")
    model, opt, sched = _tiny_run()

    def full_disk(run_dir, state):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_writer, "write_train_state", full_disk)
    writer = CheckpointWriter()
    writer.save(tmp_path, model, opt, sched, cfg, ["a"], 1, 1)
    writer.join()  # waits without raising (training already failing)
    with pytest.raises(OSError, match="No space left"):
        writer.wait()
    writer.wait()  # reported once
    writer.save(tmp_path, model, opt, sched, cfg, ["a"], 2, 2)
    with pytest.raises(OSError, match="No space left"):
        writer.save(tmp_path, model, opt, sched, cfg, ["a"], 3, 3)  # the previous epoch's failure
    assert not (tmp_path / MODEL_FILE).exists()  # the model file follows the train state: never written


def test_in_the_foreground_the_save_has_landed_when_it_returns(tmp_path):
    cfg = load_preset("demo")
    model, opt, sched = _tiny_run()
    CheckpointWriter(background=False).save(tmp_path, model, opt, sched, cfg, ["a"], 3, 1)
    weights, state = _load(tmp_path)
    assert torch.equal(weights["0.weight"], model[0].weight.detach()) and state["step"] == 3

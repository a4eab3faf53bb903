"""Model files of a run: model.safetensors (all weights), model.json (what predict needs), train_state.pt."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from mambaad_cli import __version__
from mambaad_cli.atomic import write_text, write_with
from mambaad_cli.config import Config, config_from_dict
from mambaad_cli.errors import UserError
from mambaad_cli.model import build_model

MODEL_FILE = "model.safetensors"
MODEL_JSON = "model.json"
TRAIN_STATE = "train_state.pt"


def save_model(
    run_dir: Path,
    model: torch.nn.Module,
    cfg: Config,
    class_names: list[str],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the weights (the frozen encoder included, so predict needs no download) and model.json."""
    write_model(run_dir, model_snapshot(model), cfg, class_names, extra)


def model_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight and buffer copied to the CPU, contiguous: what model.safetensors holds."""
    return {k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
            for k, v in model.state_dict().items()}


def write_model(
    run_dir: Path,
    state: dict[str, torch.Tensor],
    cfg: Config,
    class_names: list[str],
    extra: dict[str, Any] | None = None,
) -> None:
    write_with(run_dir / MODEL_FILE, lambda tmp: safetensors.torch.save_file(state, str(tmp)))
    update_model_json(run_dir, cfg=cfg, class_names=class_names, **(extra or {}))


def update_model_json(
    run_dir: Path, cfg: Config | None = None, class_names: list[str] | None = None, **fields: Any
) -> dict[str, Any]:
    path = run_dir / MODEL_JSON
    info: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    info["version"] = __version__
    if cfg is not None:
        info["config"] = cfg.to_dict()
    if class_names is not None:
        info["class_names"] = list(class_names)
    info.update(fields)
    info.setdefault("thresholds", {})
    info.setdefault("score_stats", {})
    write_text(path, json.dumps(info, indent=2, sort_keys=False, default=_json_default) + "\n")
    return info


def load_run_info(run_dir: Path) -> tuple[Config, dict[str, Any]]:
    """The config and model.json of a run."""
    info_path = run_dir / MODEL_JSON
    if not info_path.is_file():
        raise UserError(f"{run_dir}: no {MODEL_JSON} (not a run folder)")
    try:
        info = json.loads(info_path.read_text())
        return config_from_dict(info["config"]), info
    except (json.JSONDecodeError, KeyError) as e:
        raise UserError(f"{info_path}: unreadable ({e})") from None


def load_model(
    run_dir: Path, device: torch.device | str = "cpu", cfg: Config | None = None
) -> tuple[torch.nn.Module, Config, dict]:
    """Rebuild the model of a run from model.json and load model.safetensors (no network access).
    `cfg` replaces the saved config (for evaluation overrides); the model fields must be unchanged."""
    saved_cfg, info = load_run_info(run_dir)
    cfg = cfg or saved_cfg
    weights_path = run_dir / MODEL_FILE
    if not weights_path.is_file():
        raise UserError(f"{run_dir}: no {MODEL_FILE} (training has not saved a checkpoint yet)")
    # The weights file holds the encoder too: build it without fetching pretrained weights.
    build_cfg = replace(cfg, model=replace(cfg.model, encoder=replace(cfg.model.encoder, weights="none")))
    model = build_model(build_cfg)
    state = safetensors.torch.load_file(str(weights_path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(
            f"{weights_path}: does not match the model in {MODEL_JSON} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.to(device).eval(), cfg, info


# --------------------------------------------------------------------------- training state


def save_train_state(
    run_dir: Path, model: torch.nn.Module, optimizer, scheduler, step: int, epoch: int
) -> None:
    """Everything --resume needs, in one file: trainable weights, optimizer, scheduler, RNG, counters."""
    state = train_state_snapshot(model, model_snapshot(model), optimizer, scheduler, step, epoch)
    write_train_state(run_dir, state)


def train_state_snapshot(
    model: torch.nn.Module, weights: dict[str, torch.Tensor], optimizer, scheduler, step: int, epoch: int
) -> dict[str, Any]:
    """train_state.pt's contents with every tensor copied to the CPU: later steps cannot change it. `weights`
    is model_snapshot(model), already copied: the trainable weights and the buffers outside the frozen
    encoder are taken from it rather than copied a second time."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {
        "model": {k: v for k, v in weights.items() if k in trainable or not k.startswith("encoder.")},
        **cpu_copy({
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "epoch": epoch,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": _numpy_rng_to_tensor(),
                "python": list(random.getstate()[1]),
            },
        }),
    }


def write_train_state(run_dir: Path, state: dict[str, Any]) -> None:
    write_with(run_dir / TRAIN_STATE, lambda tmp: torch.save(state, tmp))


def cpu_copy(obj: Any) -> Any:
    """`obj` with every tensor in its dicts, lists and tuples replaced by a copy on the CPU (a state_dict
    holds the live tensors: the optimizer's moments change in place at the next step)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def load_train_state(run_dir: Path, model: torch.nn.Module, optimizer, scheduler) -> tuple[int, int]:
    path = run_dir / TRAIN_STATE
    if not path.is_file():
        raise UserError(f"--resume: {path} not found (the run saved no training state yet)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(
        ("MT19937", rng["numpy"][:-1].numpy().astype(np.uint32), int(rng["numpy"][-1]), 0, 0.0)
    )
    random.setstate((3, tuple(rng["python"]), None))
    return int(state["step"]), int(state["epoch"])


def _numpy_rng_to_tensor() -> torch.Tensor:
    _, keys, pos, *_ = np.random.get_state()
    return torch.from_numpy(np.concatenate([keys.astype(np.int64), [pos]]))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")

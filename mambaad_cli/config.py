"""Presets, typed configuration and dotted overrides.

A config is a tree of dataclasses whose defaults are the paper's MVTec-AD recipe
(reference/mambaad_spec.md sections 1 and 4). A preset YAML overrides a subset of the
fields; `--set key=value` and the CLI options override the preset. Unknown keys and values
of the wrong type are user errors (ConfigError), reported with the key that caused them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mambaad_cli.errors import UserError


class ConfigError(UserError):
    """A preset or an override is invalid."""


PRECISIONS = ("fp32", "tf32", "bf16")
# String fields restricted to a few values, checked wherever a value is set (preset, --set, options).
# kernels/dispatch.py and kernels/directions.py
SCAN_BACKENDS = ("auto", "torch", "triton", "cuda", "triton-fused")
GRAPHS = ("auto", True, False)  # train.cuda_graphs / eval.cuda_graphs (engine/graphs.py)
CHOICES: dict[str, tuple[str | bool, ...]] = {
    "train.precision": PRECISIONS, "eval.precision": PRECISIONS, "model.decoder.scan_backend": SCAN_BACKENDS,
    "train.cuda_graphs": GRAPHS, "eval.cuda_graphs": GRAPHS,
}


@dataclass
class EncoderConfig:
    # any timm model with features_only support; resnet34.bt_in1k is timm's tag for resnet34-43635321.pth,
    # the checkpoint MambaAD was trained with (plain "resnet34" now resolves to a different one, a1_in1k)
    name: str = "resnet34.bt_in1k"
    weights: str = "timm"  # timm | bundled | none | <path to a state dict>
    out_indices: list[int] = field(default_factory=lambda: [1, 2, 3])
    # Input normalisation; empty means "take it from timm's pretrained_cfg".
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)


@dataclass
class DecoderConfig:
    depths: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    d_state: int = 16
    expand: int = 2
    d_conv: int = 3
    drop_path_rate: float = 0.2
    scan: str = "hilbert"  # sweep | scan | zorder | zigzag | hilbert
    directions: int = 8  # 2 | 4 | 8
    scan_backend: str = "auto"  # auto | torch | triton | cuda | triton-fused (kernels/directions.py)


@dataclass
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)


@dataclass
class DataConfig:
    dataset: str = "mvtec"  # layout: mvtec | mvtec3d | visa | realiad | uni_medical | coco_ad | folder | demo
    root: str = "data/mvtec"
    meta: str = ""  # meta.json (relative to root or absolute); empty: read the folder layout
    classes: list[str] = field(default_factory=list)  # empty: every class found
    image_size: int = 256
    num_workers: int = 2
    # Decoded, resized images kept on disk ($MAMBAAD_CACHE/images, else ~/.cache/mambaad/images): the first
    # run decodes each image once, later epochs and runs read them back (data/image_cache.py)
    cache_images: bool = False
    # Normal training images held out per class to choose deployable thresholds (engine/calibrate.py).
    # 0 keeps the paper's training set; thresholds then come from in-sample training scores.
    val_fraction: float = 0.0
    views: list[int] = field(default_factory=list)  # Real-IAD camera views; empty: all 5
    coco_split: int = -1  # COCO-AD split 0-3; -1: all four, averaged


@dataclass
class TrainConfig:
    epochs: int = 1000
    batch_size: int = 16
    lr: float = 5e-3  # at batch 16; scaled linearly with batch_size as in ADer
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    lr_decay_at: float = 0.8  # fraction of all iterations after which lr is multiplied by lr_decay
    lr_decay: float = 0.1
    grad_clip: float = 5.0
    loss_weight: float = 5.0
    seed: int = 42
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 10  # iterations between log.csv rows
    checkpoint_every: int = 1  # epochs between checkpoints
    checkpoint_in_background: bool = True  # written by a thread while training goes on (checkpoint_writer.py)
    eval_at_end: bool = True
    max_steps: int = 0  # stop after this many iterations (0: no limit); for smoke runs
    # Speed options (engine/acceleration.py). fp32 is the paper's recipe; bf16 runs the forward passes under
    # torch.autocast(bfloat16) on CUDA or CPU, the loss stays fp32.
    precision: str = "fp32"  # fp32 | tf32 | bf16
    channels_last: bool = False  # NHWC images and conv weights (faster convolutions on tensor cores)
    compile: bool = False  # torch.compile the trainable fusion and decoder
    # replay each training step as one CUDA graph (engine/graphs.py). auto: wherever it applies (CUDA, one
    # process or data-parallel, no compile), falling back to eager steps if the capture fails; true: insist;
    # false: eager
    cuda_graphs: bool | str = "auto"


@dataclass
class EvalConfig:
    batch_size: int = 16
    sigma: float = 4.0  # Gaussian smoothing of the anomaly map (pixels)
    score: str = "max"  # image score = max of the smoothed map (the paper's choice)
    precision: str = "fp32"  # fp32 | tf32 | bf16: forward passes of evaluate / calibrate (fp32: exact)
    cuda_graphs: bool | str = "auto"  # replay the scoring as one CUDA graph (engine/graphs.py); as train's


@dataclass
class Config:
    preset: str = "mvtec"
    output_dir: str = "runs"
    run_name: str = ""  # empty: a timestamp
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --------------------------------------------------------------------------- presets


def _presets_folder():
    """The presets shipped in the wheel; in a source tree that shadows the installed package
    (python -m ... from the repository root), the top-level presets/ folder."""
    try:
        return resources.files("mambaad_cli.presets")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in _presets_folder().iterdir() if p.name.endswith(".yaml"))


def _read_preset(name: str) -> dict[str, Any]:
    """A preset is either a shipped name (mvtec, demo, ...) or a path to a YAML file."""
    path = Path(name)
    if name.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise ConfigError(f"preset file not found: {name}")
        text = path.read_text()
    else:
        res = _presets_folder() / f"{name}.yaml"
        if not res.is_file():
            raise ConfigError(f"unknown preset '{name}' (choose from: {', '.join(preset_names())})")
        text = res.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"preset {name}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {name}: top level must be a mapping")
    return data


def load_preset(name: str = "demo", overrides: dict[str, Any] | None = None) -> Config:
    """Defaults <- preset YAML <- overrides (dotted keys, e.g. {"train.epochs": 5})."""
    data = _read_preset(name)
    data.setdefault("preset", Path(name).stem if name.endswith((".yaml", ".yml")) else name)
    cfg = _build(Config, data, "")
    for key, value in (overrides or {}).items():
        set_field(cfg, key, value)
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from its to_dict() form (model.json, config.yaml)."""
    return _build(Config, data, "")


def parse_override(text: str) -> tuple[str, Any]:
    """'train.epochs=5' -> ('train.epochs', 5); values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def set_field(cfg: Config, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    obj: Any = cfg
    for i, part in enumerate(parts[:-1]):
        if not dataclasses.is_dataclass(obj) or part not in _field_types(type(obj)):
            raise ConfigError(f"unknown config key '{'.'.join(parts[: i + 1])}' in '{dotted}'")
        obj = getattr(obj, part)
    last = parts[-1]
    types_ = _field_types(type(obj)) if dataclasses.is_dataclass(obj) else {}
    if last not in types_:
        raise ConfigError(f"unknown config key '{dotted}'")
    setattr(obj, last, _coerce(types_[last], value, dotted))


# --------------------------------------------------------------------------- typing helpers


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.')}' must be a mapping")
    types_ = _field_types(cls)
    unknown = [k for k in data if k not in types_]
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'")
    kwargs = {}
    for name, tp in types_.items():
        if name not in data:
            continue
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data[name], f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(tp, data[name], prefix + name)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    result = _coerce_type(tp, value, key)
    if key in CHOICES and result not in CHOICES[key]:
        names = ", ".join(str(c).lower() for c in CHOICES[key])
        raise ConfigError(f"config key '{key}': {value!r} is not one of {names}")
    return result


def _coerce_type(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce_type(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': cannot use {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value] if not isinstance(value, str) or "," not in value else value.split(",")
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return [_coerce_type(item, v, key) for v in value]
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key '{key}': expected null")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return "" if value is None else str(value)
    return value

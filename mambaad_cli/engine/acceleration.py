"""Speed options of training and scoring: mixed precision, channels-last memory, torch.compile.

- precision "fp32" (the default, the paper's recipe) runs everything in float32 (convolutions on TF32
  tensor cores, PyTorch's default, as in the official code). "tf32" keeps float32 tensors and lets the
  matrix products use TF32 too (10-bit mantissa inputs, float32 sums). "bf16" runs the model's forward
  passes under torch.autocast(bfloat16) (CUDA or CPU: convolutions and matrix products in bfloat16,
  reductions and normalisations as autocast decides). bfloat16 has float32's range, so no
  loss scaling is needed. The loss and the anomaly maps are computed from features cast back to float32.
- channels_last stores the images and the convolution weights NHWC, the layout tensor cores want.
- compile torch.compile's the trainable fusion and decoder in place (nn.Module.compile: the state dict
  keeps its names). The frozen encoder is left eager. A compile failure stops the run with one line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from mambaad_cli.config import TrainConfig
from mambaad_cli.errors import UserError


@contextlib.contextmanager
def tf32_matmuls(enabled: bool = True) -> Iterator[None]:
    """TF32 tensor cores for float32 matrix products while inside (a process-wide switch, restored after).
    Training wraps forward and backward in it: the backward's products run outside the forward context."""
    if not enabled:
        yield
        return
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved)


@contextlib.contextmanager
def autocast(device: torch.device, precision: str, option: str = "--precision") -> Iterator[None]:
    """The forward-pass context of a precision: nothing for fp32, TF32 products for tf32, bfloat16
    autocast for bf16."""
    if precision == "fp32":
        yield
        return
    if precision == "tf32":
        with tf32_matmuls():
            yield
        return
    if precision != "bf16":
        raise UserError(f"{option} {precision}: expected fp32, tf32 or bf16")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"{option} bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support")
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield


def as_fp32(features: list[torch.Tensor]) -> list[torch.Tensor]:
    """Features back in float32 (the same tensors when they already are) for the loss."""
    return [f.float() for f in features]


def to_model_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    fmt = torch.channels_last if channels_last else torch.preserve_format
    return images.to(device, non_blocking=True, memory_format=fmt)


def apply_speed_options(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """channels_last and compile on a built model (in place; returned for chaining)."""
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.compile:
        for part in trainable_parts(model):
            part.compile()
    return model


def trainable_parts(model: nn.Module) -> list[nn.Module]:
    """The submodules that learn (MambaAD: fusion and decoder); the model itself for other modules."""
    parts = [getattr(model, name) for name in ("fusion", "decoder") if hasattr(model, name)]
    return parts or [model]


def is_compile_error(error: BaseException) -> bool:
    """True for the errors torch.compile raises (TorchDynamo, and Inductor's wrapped into them)."""
    try:
        from torch._dynamo.exc import TorchDynamoException
    except ImportError:  # pragma: no cover - torch without dynamo
        return False
    return isinstance(error, TorchDynamoException)


def compile_error(error: BaseException) -> UserError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UserError(f"--compile: torch.compile failed ({first}); train without --compile")

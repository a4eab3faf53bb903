"""``cosine_distance``: 1 - cosine similarity of two (B, C, H, W) feature maps along channels, fp32 (B, H, W).

The anomaly map's per-scale term (model/anomaly_map.py). Backends: ``torch`` (the reference: both maps cast
to fp32, then F.cosine_similarity; any device) and ``triton`` (one kernel that reads the maps in their own
dtype and layout and does the fp32 arithmetic in registers: under bf16 autocast the torch path writes an
fp32 copy of every encoder and decoder map first, then reads them in several passes). Knob
MAMBAAD_COSINE_BACKEND:
- auto (the default since v1.13): Triton on CUDA maps that do not require grad of which at least one is
  16-bit (bf16 / fp16 autocast: the encoder's features are 16-bit, the decoder's fp32, its residual
  stream), where it was timed: graphed bf16 inference on an H200 1549.95 -> 1573.6 img/s at batch 64,
  1273.4 -> 1295.6 at batch 16, in one run with the kernel forced (kernels/NOTES.md v1.13). Until v1.23
  auto asked for both maps 16-bit, which the model never hands it, so the kernel had not run by default.
  Two fp32 maps keep the torch path (untimed there; the paper's fp32 recipe stays as it was);
- torch (v1.12's default), or triton (any dtype; an error where it cannot run).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .dispatch import use_triton_kernel
from .launch import cdiv, next_power_of_2

EPS = 1e-8  # F.cosine_similarity's default, as the anomaly map has always used


def cosine_distance_torch(e: torch.Tensor, d: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(e.float(), d.float(), dim=1, eps=eps)


def _cosine_distance_triton(e: torch.Tensor, d: torch.Tensor, eps: float) -> torch.Tensor:
    from .triton_cosine import _cosine_distance_kernel

    batch, channels, h, w = e.shape
    out = torch.empty((batch, h, w), device=e.device, dtype=torch.float32)
    block_p = 64
    block_c = min(32, next_power_of_2(channels))
    grid = (cdiv(h * w, block_p), batch)
    _cosine_distance_kernel[grid](e, d, out, channels, w, h * w, *e.stride(), *d.stride(), eps,
                                  BLOCK_P=block_p, BLOCK_C=block_c, num_warps=4)
    return out


def _use_triton(e: torch.Tensor, d: torch.Tensor, backend: str) -> bool:
    fits = (e.dim() == 4 and e.shape == d.shape and e.device == d.device and not e.requires_grad
            and not d.requires_grad and e.numel() > 0)
    half = e.element_size() == 2 or d.element_size() == 2  # autocast's: 16-bit encoder, fp32 decoder maps
    return use_triton_kernel(
        "cosine_distance", backend, fits, e.is_cuda, half,
        "two (B, C, H, W) maps of one shape on a CUDA device (or TRITON_INTERPRET=1), without autograd")


def cosine_distance(e: torch.Tensor, d: torch.Tensor, eps: float = EPS,
                    backend: str | None = None) -> torch.Tensor:
    """1 - cos(e, d) along dim 1 in fp32: (B, C, H, W) maps -> (B, H, W). backend None reads
    MAMBAAD_COSINE_BACKEND (default auto)."""
    backend = backend or os.environ.get("MAMBAAD_COSINE_BACKEND", "auto")
    if not torch.compiler.is_compiling() and _use_triton(e, d, backend):
        return _cosine_distance_triton(e, d, eps)
    return cosine_distance_torch(e, d, eps)

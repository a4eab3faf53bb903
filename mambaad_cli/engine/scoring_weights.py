"""The scorer's 16-bit weight copies: on by default for graphed bf16 scoring on CUDA since v1.16
(MAMBAAD_SCORE_CAST_WEIGHTS=0 turns them off).

Under bf16 autocast every Linear / conv / matmul weight of the fusion and the decoder is cast again at each
forward: 219 small kernels per graphed scoring step at batch 16 on an H200 (0.38 ms of 11.9; kernels/NOTES.md
v1.15), though scoring never changes the weights. With the knob, a graphed scorer runs the model through
torch.func.functional_call with exactly those parameters replaced by copies in bf16, made at its first call.
autocast then has nothing to cast, and since its cast is the same rounding (to nearest even), the maps are
the same bits. Everything autocast keeps in float32 (norm weights, A_logs, D, the delta bias) stays as is;
the frozen encoder has its own path (model/encoder_fold.py).

Measured on the H200 (session 18, model_throughput.py, bf16 + channels-last + graphs, one process each):
inference 1623 img/s at batch 64 against 1610-1614 without, 1337 at batch 16 against 1306-1315; training is
untouched. On the GPU the graphed scorer with copies gives the eager maps (tests/test_scoring_weights.py).

Graphed scorers only: functional_call swaps a few hundred attributes per call on the host, which eager
scoring (predict, --no-cuda-graphs) would pay at every batch. A captured graph replays the copies it was
captured with; a scorer lives for one evaluation, whose weights do not change (an eager call refreshes the
copies in place if they did).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from mambaad_cli.model.encoder import FrozenEncoder
from mambaad_cli.model.encoder_fold import tensor_fingerprint
from mambaad_cli.model.hss import SS2D

KNOB = "MAMBAAD_SCORE_CAST_WEIGHTS"
LOW_PRECISION_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # autocast casts weight and bias
SS2D_MATMUL_WEIGHTS = ("x_proj_weight", "dt_projs_weight")  # SS2D's torch.matmul operands


def autocast_cast_parameters(model: nn.Module) -> list[str]:
    """Names of the parameters outside the frozen encoder that bf16 autocast casts at every forward: the
    weights and biases of Linear and conv modules, and SS2D's two projection weights (torch.matmul)."""
    names = []
    skip = tuple(f"{n}." for n, m in model.named_modules() if isinstance(m, FrozenEncoder))
    for prefix, module in model.named_modules():
        if prefix.startswith(skip) or isinstance(module, FrozenEncoder):
            continue
        if isinstance(module, LOW_PRECISION_MODULES):
            local = ["weight"] + (["bias"] if module.bias is not None else [])
        elif isinstance(module, SS2D):
            local = list(SS2D_MATMUL_WEIGHTS)
        else:
            continue
        names += [f"{prefix}.{n}" if prefix else n for n in local]
    return names


class CastWeights:
    """bf16 copies of `names` of `model`'s parameters, made at the first call of tensors(); an eager call
    (not a capture) copies the parameters in again if any changed since (their storage or version)."""

    def __init__(self, model: nn.Module, names: list[str], dtype: torch.dtype = torch.bfloat16):
        params = dict(model.named_parameters())
        self.params = {n: params[n] for n in names}
        self.dtype = dtype
        self.copies: dict[str, torch.Tensor] | None = None
        self.key: tuple | None = None

    def _key(self) -> tuple | None:
        return tensor_fingerprint(self.params.values())

    def tensors(self) -> dict[str, torch.Tensor]:
        device = next(iter(self.params.values())).device if self.params else None
        capturing = device is not None and device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        if self.copies is None:
            self.copies = {n: p.detach().to(self.dtype) for n, p in self.params.items()}
            self.key = self._key()
        elif not capturing and self._key() != self.key:
            with torch.no_grad():
                for n, p in self.params.items():
                    self.copies[n].copy_(p)  # in place: a captured graph reads these tensors
            self.key = self._key()
        return self.copies


def cast_weights_on(precision: str, device: torch.device, graphs: bool) -> bool:
    """bf16 scoring, on CUDA, as a graph, unless the knob is 0 (module docstring)."""
    wanted = os.environ.get(KNOB, "1").strip() != "0"
    return wanted and precision == "bf16" and device.type == "cuda" and graphs

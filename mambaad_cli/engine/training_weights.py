"""bf16 copies of the weights autocast casts, for a graphed bf16 training step (the default since v1.19;
MAMBAAD_TRAIN_CAST_WEIGHTS=0 turns it off).

Under bf16 autocast every Linear / conv / matmul weight and bias of the fusion and the decoder (the set
engine/scoring_weights.py copies for scoring) is cast to bf16 at each forward, one small kernel each, and its
gradient is cast back to float32 in the backward, another: with ResNet-34, 189 of each, kernels of a few
microseconds in a batch-16 step that is bound by its kernels (kernels/NOTES.md, v1.15). Here the step keeps
one bf16 copy of each such parameter, a leaf that takes the gradient:

1. at the start of a step, one multi-tensor copy refreshes the copies from the float32 weights;
2. the model runs through torch.func.functional_call with the copies in place of those weights, so autocast
   has nothing to cast, and the gradients land in the copies' .grad (bf16, as autocast's backward makes them
   before its cast);
3. one multi-tensor copy puts them into float32 gradient buffers of the weights, for clipping and AdamW.

Both casts round as autocast's do (to nearest even; bf16 -> float32 is exact), so the step trains to the same
bits (tests/test_training_weights.py, bf16 autocast on CPU). The float32 weights stay the model's parameters:
checkpoints, evaluation and resume see nothing of this.

One process only (DDP's hooks sit on the float32 parameters), and graphed steps only: functional_call swaps a
few hundred attributes on the host per call, which a replay does not run.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from mambaad_cli.engine.scoring_weights import autocast_cast_parameters

KNOB = "MAMBAAD_TRAIN_CAST_WEIGHTS"


def train_cast_weights_on(precision: str, device: torch.device, graphs: bool, data_parallel: bool) -> bool:
    """bf16 training on CUDA, graphed, one process (module docstring), unless the knob is 0. On the H200
    at batch 16 it trained 1.3-1.5 % faster, 415.5 -> 421.1 img/s (kernels/NOTES.md, v1.19)."""
    wanted = os.environ.get(KNOB, "1").strip() != "0"
    return wanted and precision == "bf16" and device.type == "cuda" and graphs and not data_parallel


class TrainingCastWeights:
    """bf16 leaf copies of the parameters autocast casts (autocast_cast_parameters), and float32 gradient
    buffers for them. Per step: refresh(), run the model with copies(), after the backward to_weights()."""

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16):
        params = dict(model.named_parameters())
        self.names = [n for n in autocast_cast_parameters(model) if params[n].requires_grad]
        self.weights = [params[n] for n in self.names]
        # empty_like keeps each weight's strides (channels-last convs), which the fast multi-tensor copy needs
        self.copies = [torch.empty_like(w, dtype=dtype).requires_grad_() for w in self.weights]
        self.grads = [torch.zeros_like(w) for w in self.weights]

    def refresh(self) -> dict[str, torch.Tensor]:
        """Copies of the current weights (one multi-tensor copy), gradients cleared: the tensors to hand to
        functional_call."""
        with torch.no_grad():
            torch._foreach_copy_(self.copies, self.weights)
        for c in self.copies:
            c.grad = None
        return dict(zip(self.names, self.copies, strict=True))

    def to_weights(self) -> None:
        """The copies' gradients, cast to float32 (one multi-tensor copy), become the weights' .grad. A copy
        without a gradient (its weight unused in the step) leaves its weight's .grad None, as autocast
        would."""
        used = [(g, c.grad) for g, c in zip(self.grads, self.copies, strict=True) if c.grad is not None]
        if used:
            with torch.no_grad():
                torch._foreach_copy_([g for g, _ in used], [cg for _, cg in used])
        for w, g, c in zip(self.weights, self.grads, self.copies, strict=True):
            w.grad = g if c.grad is not None else None

"""LayerNorm that keeps a 16-bit input 16-bit under autocast.

torch.autocast runs layer_norm in float32: a bfloat16 input is first copied to float32 and the float32 output
is copied back to bfloat16 by the next matrix product. SS2D's out_norm sits between two 16-bit tensors
(the merged scan output and out_proj), so under bf16 autocast it paid two full-size casts forwards, two
backwards, and normalised twice the bytes (kernels/NOTES.md, v1.6: the copies of a batch-64 step). PyTorch's
layer_norm kernels accumulate the statistics of a 16-bit input in float32 anyway, so this module runs the norm
in the input's dtype when the input already has autocast's dtype. Otherwise (float32 input, no autocast) it
is nn.LayerNorm, with the same parameters and state dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNormKeepDtype(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        if not torch.is_autocast_enabled(device) or x.dtype != torch.get_autocast_dtype(device):
            return super().forward(x)
        with torch.autocast(device, enabled=False):
            weight = self.weight.to(x.dtype) if self.weight is not None else None
            bias = self.bias.to(x.dtype) if self.bias is not None else None
            return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)

"""LSS module: Locality-enhanced State Space (spec 1.5).

Three parallel branches on the same input X (B, H, W, C), channels-last:
  global  M HSS blocks in series
  local5  ConvBlock(1x1) -> DWConvBlock(5x5) -> ConvBlock(1x1)
  local7  ConvBlock(1x1) -> DWConvBlock(7x7) -> ConvBlock(1x1)
concatenated in that order, fused by a 1x1 conv (3C -> C), plus X. While a CUDA graph is captured the
local branches run on streams of their own, beside the global one (model/branch_streams.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kernels.instance_norm import instance_norm_silu
from mambaad_cli.model.branch_streams import run_beside
from mambaad_cli.model.conv_bias import BiasBeforeNormConv2d, BiasGradConv2d
from mambaad_cli.model.hss import HSSBlock


class InstanceNormSiLU(nn.Module):
    """InstanceNorm2d (no affine) then SiLU, fused in Triton kernels (two forward, two backward) for
    channels-last CUDA maps (kernels/instance_norm.py: PyTorch's instance_norm copies those to NCHW and
    back); PyTorch's ops elsewhere."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm_silu(x, self.eps)


def conv_norm_silu(channels: int, kernel: int, depthwise: bool) -> nn.Sequential:
    """Conv (1x1 with bias, or depthwise k x k without) -> InstanceNorm2d (no affine) -> SiLU. The conv
    stays at index 0: the state dict's keys are those of Sequential(conv, InstanceNorm2d, SiLU). The norm
    cancels the 1x1 conv's bias (BiasBeforeNormConv2d)."""
    conv = BiasGradConv2d if depthwise else BiasBeforeNormConv2d
    return nn.Sequential(
        conv(
            channels,
            channels,
            kernel,
            padding=kernel // 2,
            groups=channels if depthwise else 1,
            bias=not depthwise,
        ),
        InstanceNormSiLU(),
    )


def local_branch(channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        conv_norm_silu(channels, 1, depthwise=False),
        conv_norm_silu(channels, kernel, depthwise=True),
        conv_norm_silu(channels, 1, depthwise=False),
    )


class LSSModule(nn.Module):
    def __init__(self, dim: int, num_blocks: int, drop_path: float = 0.0, **ss2d_kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(
            HSSBlock(dim, drop_path=drop_path, **ss2d_kwargs) for _ in range(num_blocks)
        )
        self.local5 = local_branch(dim, 5)
        self.local7 = local_branch(dim, 7)
        self.fuse = BiasGradConv2d(3 * dim, dim, 1, bias=True)
        self._init_convs()

    def _init_convs(self) -> None:
        # Every conv here, the SS2D depthwise convs included: N(0, sqrt(2 / fan_out)), bias 0,
        # fan_out = k*k*out_channels/groups.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                kh, kw = m.kernel_size
                fan_out = kh * kw * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        x_cf = x.permute(0, 3, 1, 2)
        g, (l5, l7) = run_beside(lambda: self._global(x), (self.local5, self.local7), x_cf)
        mixed = torch.cat([g.permute(0, 3, 1, 2), l5, l7], dim=1)
        return self.fuse(mixed).permute(0, 2, 3, 1) + x

    def _global(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

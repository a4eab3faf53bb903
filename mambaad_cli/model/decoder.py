"""MambaUPNet: the HS decoder (spec 1.4).

Four stages at widths dims = [2*c3, c3, c2, c1] (ResNet-34: [512, 256, 128, 64]). Stage 0 runs on
the fused bottleneck map; stages 1-3 first double the resolution with PatchExpand2D. Each stage
is a series of LSS modules; the outputs of stages 3, 2, 1 are the reconstructions of encoder
scales 1, 2, 3.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from kernels.layer_norm import layer_norm, layer_norm_pixel_shuffle, pixel_shuffle_2x2
from mambaad_cli.config import DecoderConfig
from mambaad_cli.errors import UserError
from mambaad_cli.model.lss import LSSModule


def _norm_mode() -> str:
    """MAMBAAD_LN_EXPAND: how PatchExpand2D shuffles and normalises.
    - `shuffle` (the default since v1.23, `auto`): kernels/layer_norm.py's layer_norm_pixel_shuffle, whose
      Triton kernels (bf16 autocast on CUDA) read the Linear's rows as they are and write each at its
      shuffled place (and read the gradient there): no shuffled copy; elsewhere as `kernels`. On an H200 at
      batch 16 (v1.23): 0.0-0.1 % inference, 0.0-0.4 % training alone; with the bias-free 1x1 GEMMs
      (model/conv_bias.py) +0.6-0.8 % inference.
    - `kernels` (v1.22's default): the pixel shuffle's copy, then kernels/layer_norm.py's layer_norm with an
      fp32 result, as PyTorch's. Under autocast PyTorch casts the bf16 map to fp32 first (a pass of its
      own), and its weight gradient kernel (GammaBetaBackward) averaged 98 us a call at batch 16 on an H200
      (v1.20's trace), where the map is a few MB. On the H200 the kernels gained 1.2-1.3 % training and
      1.2-1.7 % inference at batch 16, 0.8-1.0 % / 1.5-1.6 % at 64 (v1.22).
    - `torch`: the copy and nn.LayerNorm.
    """
    mode = os.environ.get("MAMBAAD_LN_EXPAND", "auto")
    return {"auto": "shuffle"}.get(mode, mode)


class PatchExpand2D(nn.Module):
    """(B, H, W, in_dim) -> (B, 2H, 2W, dim): Linear to 4*dim, pixel-shuffle (p1, p2, c) order, LayerNorm."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.dim = dim
        self.expand = nn.Linear(in_dim, 4 * dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.expand(x)  # channels split as (p1 p2 c)
        mode = _norm_mode()
        # the residual stream stays fp32 (what nn.LayerNorm gives under autocast)
        if mode == "shuffle":
            return layer_norm_pixel_shuffle(x, self.norm, out_dtype=torch.float32)
        x = pixel_shuffle_2x2(x)
        if mode == "torch":
            return self.norm(x)
        return layer_norm(x, self.norm, out_dtype=torch.float32)


def split_depth(depth: int) -> tuple[int, int]:
    """Stage depth -> (LSS modules, HSS blocks per module): multiples of 3 in threes, else of 2 in twos.

    The official code knows only those two cases; any other depth (1, 5, 7, ...) gets one block per module.
    """
    if depth < 1:
        raise UserError(f"model.decoder.depths: every stage needs at least 1 block, got {depth}")
    if depth % 3 == 0:
        return depth // 3, 3
    if depth % 2 == 0:
        return depth // 2, 2
    return depth, 1


def drop_path_schedule(depths: list[int], rate: float) -> list[list[float]]:
    """Per stage, per LSS module drop-path rate (spec 1.4).

    linspace(0, rate, sum(depths)) reversed; stage i owns the slice [sum(depths[:i]), sum(depths[:i+1]))
    and its module j takes element j of that slice (the official indexing).
    """
    dpr = torch.linspace(0, rate, sum(depths), dtype=torch.float64).flip(0).tolist()
    out, start = [], 0
    for depth in depths:
        modules, _ = split_depth(depth)
        out.append(dpr[start : start + modules])
        start += depth
    return out


class MambaUPNet(nn.Module):
    def __init__(self, dims: list[int], cfg: DecoderConfig):
        super().__init__()
        if len(cfg.depths) != 4:
            raise UserError(f"model.decoder.depths must list 4 stages, got {cfg.depths}")
        ss2d = dict(
            d_state=cfg.d_state,
            d_conv=cfg.d_conv,
            expand=cfg.expand,
            directions=cfg.directions,
            scan=cfg.scan,
            scan_backend=cfg.scan_backend,
        )
        self.dims = list(dims)
        rates = drop_path_schedule(cfg.depths, cfg.drop_path_rate)
        self.upsample = nn.ModuleList()
        self.stages = nn.ModuleList()
        for i, depth in enumerate(cfg.depths):
            _, per_module = split_depth(depth)
            self.upsample.append(PatchExpand2D(dims[i - 1], dims[i]) if i > 0 else nn.Identity())
            self.stages.append(
                nn.Sequential(*(LSSModule(dims[i], per_module, drop_path=r, **ss2d) for r in rates[i]))
            )
        self.apply(_init_linear_and_norm)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, dims[0], h, w) channels-first -> [D3, D2, D1] channels-first, highest resolution first."""
        x = x.permute(0, 2, 3, 1)
        outs = []
        for i, (up, stage) in enumerate(zip(self.upsample, self.stages, strict=True)):
            x = stage(up(x))
            if i > 0:
                outs.insert(0, x.permute(0, 3, 1, 2).contiguous())
        return outs


def _init_linear_and_norm(m: nn.Module) -> None:
    # Applied last (spec 1.7): overrides in_proj/out_proj/expand; raw SS2D parameters are untouched.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)

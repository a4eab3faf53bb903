"""SS2D and the HSS block (Hybrid State Space, spec 1.6 / 1.7 / 3.2).

SS2D reads the (H, W) map as K sequences (one scan curve under K geometric transforms, spec 2.4),
runs a Mamba-1 selective scan over each with direction-specific projections, and sums the K
outputs back on the grid. Index tables are built for the actual (H, W) of the input, so any
size works; they are cached per (method, H, W, K, device) and are not part of the state dict.
"""

from __future__ import annotations

import functools
import math
import os

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from kernels import selective_scan, selective_scan_directions
from kernels.bias_silu import bias_silu
from kernels.direction_glue import DirectionPlan, cross_merge, cross_scan, direction_plan
from kernels.directions import FUSED
from kernels.dispatch import resolve_backend
from kernels.launch import cdiv
from kernels.layer_norm import layer_norm
from mambaad_cli.model.conv_bias import BiasGradConv2d
from mambaad_cli.model.scans import direction_tables

# torch.compile fuses the glue around the scan but not the scan itself: the Triton/CUDA kernels are already
# fused, and tracing the torch path's loop would unroll it. A graph break at each scan is the cheap price.
_scan_directions = torch.compiler.disable(selective_scan_directions)
_scan = torch.compiler.disable(selective_scan)
_cross_scan = torch.compiler.disable(cross_scan)
_cross_merge = torch.compiler.disable(cross_merge)


@torch.compiler.disable  # built with numpy on the host: keep torch.compile out of it
@functools.lru_cache(maxsize=64)
def scan_indices(method: str, H: int, W: int, K: int, device: torch.device) -> torch.Tensor:
    """(K, H*W) int64 on `device`: step t of direction k visits natural position table[k, t]."""
    return direction_tables(method, H, W, K).to(device=device, dtype=torch.long)


@torch.compiler.disable
@functools.lru_cache(maxsize=64)
def scan_plan(method: str, H: int, W: int, K: int, device: torch.device) -> DirectionPlan:
    """The int32 tables of the cross-scan / cross-merge glue, cached like ``scan_indices``."""
    return direction_plan(scan_indices(method, H, W, K, device))


def _bc_views(backend: str, xs: torch.Tensor) -> bool:
    """The Triton scan reads B and C as slices of x_proj's output (its kernels take any strides) instead of
    contiguous copies: two copies fewer per block. The default since v1.20 (+0.5 % training, +2.4 % inference
    at batch 16 on an H200, kernels/NOTES.md v1.20); MAMBAAD_SCAN_BC_VIEWS=0 makes the copies."""
    return os.environ.get("MAMBAAD_SCAN_BC_VIEWS", "1") != "0" and resolve_backend(backend, xs) == "triton"


def _bias_silu_split(x: torch.Tensor) -> bool:
    """MAMBAAD_BIAS_SILU: auto (the default since v1.20) on CUDA, 1 on any device (the CPU tests), 0 never.
    Where it holds, SS2D runs its depthwise conv without the bias and bias_silu adds it with the SiLU."""
    mode = os.environ.get("MAMBAAD_BIAS_SILU", "auto")
    return x.is_cuda if mode == "auto" else mode == "1"


# The largest maps (H x W tokens) at which an SS2D on the Triton scan runs the fused core by default: the
# whole module's forward + backward timed per decoder stage on an H200, batch 16 (benchmarks/ss2d_module.py,
# kernels/NOTES.md v1.31), the fused core against the default order: bf16 -12 / -7 / -5 / +4 % at the 8 / 16
# / 32 / 64 maps, fp32 -19 / -12 / -11 / +3 %. With v1.32's kernels the 64 x 64 module is -1.7 % (bf16) and
# -0.7 % (fp32) with it, but the model was level there (+0.6 % training, -1.3 % inference), so 64 x 64 stays
# out (MAMBAAD_SS2D_FUSED_SIDES=8,16,32,64 takes it).
FUSED_MAX_TOKENS = 32 * 32


def _fused_core(backend: str, x: torch.Tensor) -> bool:
    """Whether SS2D runs the fused core for x (B, D, H, W): backend `triton-fused` always; a backend that
    resolves to `triton` on a GPU by map size (FUSED_MAX_TOKENS), or where the developer knob
    MAMBAAD_SS2D_FUSED_SIDES says: `auto` (the default), `none` (v1.30: never), or map sides, e.g. `8,16`
    (square maps of those sides, on any device), for timing per-stage choices in the model."""
    if backend == FUSED:
        return True
    if resolve_backend(backend, x) != "triton":
        return False
    H, W = x.shape[2:]
    knob = os.environ.get("MAMBAAD_SS2D_FUSED_SIDES", "auto").strip()
    if knob == "auto":
        return x.is_cuda and H * W <= FUSED_MAX_TOKENS
    items = [s.strip() for s in knob.split(",") if s.strip() and s.strip() != "none"]
    if not all(s.isdigit() for s in items):
        raise ValueError(f"MAMBAAD_SS2D_FUSED_SIDES must be auto, none or map sides like 8,16; got {knob!r}")
    return H == W and H in {int(s) for s in items}


def _dt_proj_way() -> str:
    """MAMBAAD_DT_PROJ (developer knob): `pad8` (the default since v1.21, _dt_proj) or `matmul` (v1.20: the
    rank's rows as they are). pad8 reads its padded rows as a second slice of x_proj's output, so autograd
    sums that slice's gradient (a zero-filled tensor of the output's size) into the split's in the backward;
    padding x_proj's weight rows instead, which avoids that, was level on an H200 (v1.22, kernels/NOTES.md)
    and was removed."""
    return os.environ.get("MAMBAAD_DT_PROJ", "pad8")


def _in_proj_halves() -> bool:
    """MAMBAAD_IN_PROJ (developer knob): `halves` writes in_proj's two halves (x for the depthwise conv, z for
    the gate) as two dense maps, one batched GEMM (SS2D._in_proj); `chunk` slices one (B, H, W, 2D) output,
    whose rows have stride 2D, so the channels-last conv copies x to a dense map first (16 copies a step
    with ResNet-34). `auto`, the default since v1.22, takes the halves where no gradient is taken (scoring):
    on an H200 they gained 1.2-1.9 % inference at batch 16 and 1.5-1.7 % at 64, but cost 0.5-0.8 % in
    training (1.5-1.9 % when each half's gradient went back by a select; kernels/NOTES.md v1.22)."""
    mode = os.environ.get("MAMBAAD_IN_PROJ", "auto")
    return mode == "halves" or (mode == "auto" and not torch.is_grad_enabled())


def _dt_proj(weight: torch.Tensor, dts: torch.Tensor, x_dbl: torch.Tensor, pad: bool) -> torch.Tensor:
    """dt_proj: (K, D, R) weights times dts, the first R rows of x_proj's output x_dbl (B, K, R+2N, L),
    the weights broadcast over the batch. At rank 4 (dim 64: the 64 x 64 maps) the weights' 8-byte rows get
    a cutlass `align2` GEMM from cuBLAS: 77 + 72 + 53 us forward + backward at batch 16 on an H200, against
    45 + 43 + 36 for cuBLAS's own kernels once the rank is a multiple of 8
    (benchmarks/lowrank_proj_bench.py). So with `pad` (MAMBAAD_DT_PROJ=pad8, _dt_proj_way) R is padded to a
    multiple of 8 where x_dbl has the rows: zero weight columns, times the next rows of x_dbl (B's first
    rows; were one infinite, delta would be NaN, but the scan's output with that B is not finite either)."""
    rank = dts.shape[2]
    padded = _padded_rank(rank, x_dbl.shape[2], pad)
    if padded != rank:
        return torch.matmul(F.pad(weight, (0, padded - rank)), x_dbl[:, :, :padded])
    return torch.matmul(weight, dts)


def _padded_rank(rank: int, rows: int, pad: bool) -> int:
    """dt_proj's rank as _dt_proj and _dt_proj_tokens multiply it: with `pad`, the next multiple of 8 where
    x_proj's output has that many rows, else the rank itself."""
    padded = cdiv(rank, 8) * 8
    return padded if pad and padded <= rows else rank


def _dt_proj_tokens_way() -> str:
    """MAMBAAD_DT_PROJ_TOKENS (developer knob): `batched` (the default since v1.31) or `einsum` (v1.28-v1.30),
    how _dt_proj_tokens multiplies."""
    return os.environ.get("MAMBAAD_DT_PROJ_TOKENS", "batched")


def _dt_proj_tokens(weight: torch.Tensor, dts: torch.Tensor, x_dbl: torch.Tensor, pad: bool) -> torch.Tensor:
    """_dt_proj on x_proj's output in token order, x_dbl (B, L, K, R+2N) and dts its first R columns: (B, L,
    K, D), (B, K, L, D) in memory, channels adjacent; the rank padded to a multiple of 8 as _dt_proj does
    (zero weight columns times B's first columns), for the same cuBLAS kernels. One product per (batch,
    direction), the weights broadcast over the batch as in _dt_proj: as one product per direction over all
    B x L tokens (an einsum, `einsum`), the weights' gradient was a reduction over B x L tokens (65536 at the
    64 x 64 maps, batch 16) in 8 products of 8 x D, for which cuBLAS took a cutlass wmma kernel at 0.96 ms a
    call, 21 % of the SS2D module's forward + backward there (H200, bf16: kernels/NOTES.md v1.31)."""
    rank = dts.shape[3]
    padded = _padded_rank(rank, x_dbl.shape[3], pad)
    rows, w = (x_dbl[..., :padded], F.pad(weight, (0, padded - rank))) if padded != rank else (dts, weight)
    if _dt_proj_tokens_way() == "einsum":
        return torch.einsum("blkr,kdr->blkd", rows, w)
    return torch.matmul(rows.transpose(1, 2), w.transpose(1, 2)).transpose(1, 2)


def _x_proj_split(H: int, W: int) -> bool:
    """MAMBAAD_X_PROJ_TOKENS (developer knob, the fused core only): `one` (the default) computes x_proj as one
    product and splits dt / B / C off its 36-column rows (R + 2N at the 64 x 64 maps), so that its backward
    writes their three gradients back into those rows: a `cat` of 0.128 ms a step at 64 x 64, batch 16,
    against 0.038 in the default order (H200, bf16, kernels/NOTES.md v1.32). `split`: three products, whose
    gradients go to the weights and to x as they come (two adds of x's gradient instead), or map sides such
    as `64`: three products at square maps of those sides only. The SS2D module with the fused core, bf16,
    batch 16 (H200, v1.33): 3.495 -> 3.426 ms at 64 x 64, 3-10 % slower at the smaller maps; untimed in the
    model."""
    mode = os.environ.get("MAMBAAD_X_PROJ_TOKENS", "one").strip()
    if mode in ("one", "split"):
        return mode == "split"
    sides = [s.strip() for s in mode.split(",") if s.strip()]
    if not sides or not all(s.isdigit() for s in sides):
        raise ValueError(f"MAMBAAD_X_PROJ_TOKENS must be one, split or map sides like 64, got {mode!r}")
    return H == W and H in {int(s) for s in sides}


class SS2D(nn.Module):
    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 3,
        expand: int = 2,
        directions: int = 8,
        scan: str = "hilbert",
        scan_backend: str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_floor: float = 1e-4,
    ):
        super().__init__()
        self.d_inner = D = expand * d_model
        self.d_state = N = d_state
        self.dt_rank = R = math.ceil(d_model / 16)
        self.K = K = directions
        self.scan = scan
        self.scan_backend = scan_backend

        self.in_proj = nn.Linear(d_model, 2 * D, bias=False)
        self.conv2d = BiasGradConv2d(D, D, d_conv, padding=(d_conv - 1) // 2, groups=D, bias=True)
        # Per-direction parameters, stacked along K (spec 1.6).
        self.x_proj_weight = nn.Parameter(torch.empty(K, R + 2 * N, D))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, D, R))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, D))
        self.A_logs = nn.Parameter(torch.empty(K * D, N))
        self.Ds = nn.Parameter(torch.empty(K * D))
        self.out_norm = nn.LayerNorm(D)
        self.out_proj = nn.Linear(D, d_model, bias=False)
        self._init_ssm(dt_min, dt_max, dt_floor)

    @torch.no_grad()
    def _init_ssm(self, dt_min: float, dt_max: float, dt_floor: float) -> None:
        D, R, N = self.d_inner, self.dt_rank, self.d_state
        # x_proj: PyTorch's default Linear(D -> R+2N) init, U(-1/sqrt(D), 1/sqrt(D)).
        nn.init.uniform_(self.x_proj_weight, -(D**-0.5), D**-0.5)
        nn.init.uniform_(self.dt_projs_weight, -(R**-0.5), R**-0.5)
        # dt log-uniform in [dt_min, dt_max]; the bias is its inverse softplus.
        dt = torch.exp(torch.rand(self.K, D) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real: A = -[1, 2, ..., N] for every channel and direction.
        self.A_logs.copy_(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(self.K * D, 1))
        self.Ds.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        B, H, W, _ = x.shape
        x, z = self._in_proj(x)
        x = self._conv_silu(x.permute(0, 3, 1, 2))
        y = self.scan_core(x)  # (B, D, H*W)
        # out_norm(y) * silu(z), in one kernel under bf16 autocast on GPUs (kernels/layer_norm.py)
        y = layer_norm(y.transpose(1, 2).reshape(B, H, W, self.d_inner), self.out_norm, gate=z)
        return self.out_proj(y)

    def _in_proj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """in_proj(x) as its halves (x, z), each (B, H, W, D): slices of one output, or with
        _in_proj_halves dense maps from one batched GEMM whose input is x's rows twice (batch stride 0)."""
        if not _in_proj_halves():
            return self.in_proj(x).chunk(2, dim=-1)
        B, H, W, C = x.shape
        rows = x.reshape(-1, C)
        weights = self.in_proj.weight.view(2, self.d_inner, C).transpose(1, 2)  # (2, C, D): views
        xz = torch.matmul(rows.expand(2, *rows.shape), weights)  # (2, B*H*W, D)
        # unbind: the halves' gradients go back as one stack, where two selects would zero-fill the whole
        # (2, B*H*W, D) output twice and add
        x, z = xz.view(2, B, H, W, -1).unbind(0)
        return x, z

    def _conv_silu(self, x: torch.Tensor) -> torch.Tensor:
        """silu(conv2d(x)): on GPUs the conv without its bias, then bias and SiLU in one pass
        (kernels/bias_silu.py) instead of PyTorch's unvectorised bias add and a SiLU (_bias_silu_split)."""
        conv = self.conv2d
        if conv.bias is not None and _bias_silu_split(x):
            # bias_silu's auto runs the reference where the map is not channels-last or not on CUDA
            return bias_silu(conv._conv_forward(x, conv.weight, None), conv.bias)
        return F.silu(conv(x))

    def scan_core(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W) -> (B, D, H*W): K directional scans, summed in natural row-major order (a view of a
        (B, H*W, D) tensor on the unfused path, the layout out_norm wants)."""
        if _fused_core(self.scan_backend, x):
            return self._scan_core_fused(x)
        Bsz, D, H, W = x.shape
        K, L, N, R = self.K, H * W, self.d_state, self.dt_rank
        # Official SS2D order: the K step-order copies of x first, then the per-direction projections on them,
        # so only x is gathered (not delta, B and C), and the merge writes channels-last for out_norm.
        plan = scan_plan(self.scan, H, W, K, x.device)
        xs = _cross_scan(x.reshape(Bsz, D, L), plan)  # (B, K, D, L)
        # matmul with the weights broadcast over the batch: (B*K) products on views of xs, where einsum
        # would first copy xs (and its gradient) into a K-major layout
        x_dbl = torch.matmul(self.x_proj_weight, xs)  # (B, K, R+2N, L)
        dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
        dts = _dt_proj(self.dt_projs_weight, dts, x_dbl, pad=_dt_proj_way() == "pad8")  # (B, K, D, L)
        if not _bc_views(self.scan_backend, xs):
            Bs, Cs = Bs.contiguous(), Cs.contiguous()
        ys = _scan(
            xs.view(Bsz, K * D, L),
            dts.reshape(Bsz, K * D, L),
            -torch.exp(self.A_logs),
            Bs,  # (B, K, N, L): direction k serves channels k*D..(k+1)*D-1
            Cs,
            D=self.Ds,
            delta_bias=self.dt_projs_bias.reshape(-1),
            delta_softplus=True,
            backend=self.scan_backend,
        )
        return _cross_merge(ys.view(Bsz, K, D, L), plan, channels_last=True)

    def _scan_core_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The fused kernel's path: projections in natural order (x_proj and dt_proj act on each token alone,
        so they commute with the scan orders), read by the kernel through the direction tables."""
        Bsz, D, H, W = x.shape
        K, L, N, R = self.K, H * W, self.d_state, self.dt_rank
        # the cached plan's int32 table: the kernels' own dtype, so that no call converts scan_indices' int64
        table = scan_plan(self.scan, H, W, K, x.device).table
        # tokens outermost (stride 1 over channels), the layout the lane kernels read through the table
        xs = x.contiguous(memory_format=torch.channels_last).reshape(Bsz, D, L)
        pad = _dt_proj_way() == "pad8"
        if _x_proj_split(H, W):  # dt's rows (zero rows up to dt_proj's padded rank), B and C: a product each
            w = self.x_proj_weight
            padded = _padded_rank(R, R + 2 * N, pad)
            x_dt = torch.einsum("bdl,kcd->blkc", xs, F.pad(w[:, :R], (0, 0, 0, padded - R)))
            Bs, Cs = (torch.einsum("bdl,kcd->blkc", xs, w[:, R + i * N:R + (i + 1) * N]) for i in (0, 1))
            dts = _dt_proj_tokens(self.dt_projs_weight, x_dt[..., :R], x_dt, pad)
        else:
            x_dbl = torch.einsum("bdl,kcd->blkc", xs, self.x_proj_weight)
            dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=3)
            dts = _dt_proj_tokens(self.dt_projs_weight, dts, x_dbl, pad)
        # dts: (B, L, K, D) as the kernel reads it, (B, K, L, D) in memory (with MAMBAAD_DT_PROJ_TOKENS=einsum
        # (K, B, L, D)), channels adjacent; its gradient comes back in that layout (kernels/triton_scan.py),
        # which the batched product's backward takes as it is
        dts = dts.permute(0, 2, 3, 1)
        Bs, Cs = Bs.permute(0, 2, 3, 1), Cs.permute(0, 2, 3, 1)  # (B, K, N, L) views
        return _scan_directions(
            xs,
            dts,
            -torch.exp(self.A_logs),
            Bs,
            Cs,
            self.Ds,
            self.dt_projs_bias.reshape(-1),
            table,
            delta_softplus=True,
            backend=FUSED,
        )


class HSSBlock(nn.Module):
    """out = x + DropPath(SS2D(LayerNorm(x))), channels-last."""

    def __init__(self, dim: int, drop_path: float = 0.0, **ss2d_kwargs):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ss2d = SS2D(dim, **ss2d_kwargs)
        self.drop_path = DropPath(drop_path)  # per-sample stochastic depth; identity at 0 or in eval

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in_proj reads the norm first: under bf16 autocast on GPUs one kernel writes its bf16 input
        return x + self.drop_path(self.ss2d(layer_norm(x, self.norm)))

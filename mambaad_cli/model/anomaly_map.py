"""Anomaly maps and image scores (spec 5.1), shared by evaluate and predict.

Per scale: 1 - cosine similarity of encoder and decoder features along channels; each map is
upsampled bilinearly (align_corners=True) to the output size and the scales are summed; the sum
is smoothed with a Gaussian that reproduces scipy.ndimage.gaussian_filter (truncate 4, 'reflect'
borders) in torch, so it runs on the GPU too. The image score is the map's maximum.

The official code divides the sum by 9 (number of scales times the sum of scale weights); a
positive constant changes no metric, so the plain sum is kept: a map value then reads as
"summed cosine distance", between 0 and 2 per scale.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from kernels.cosine_distance import cosine_distance


def anomaly_map(
    enc: list[torch.Tensor],
    dec: list[torch.Tensor],
    out_size: int | tuple[int, int],
    sigma: float = 4.0,
) -> torch.Tensor:
    """(B, Ci, Hi, Wi) lists -> (B, H, W) float32 anomaly maps."""
    if isinstance(out_size, int):
        out_size = (out_size, out_size)
    total = None
    for e, d in zip(enc, dec, strict=True):
        dist = cosine_distance(e, d)  # fp32; on a GPU, 16-bit maps are read in place by a Triton kernel
        dist = F.interpolate(dist.unsqueeze(1), size=tuple(out_size), mode="bilinear", align_corners=True)
        total = dist if total is None else total + dist
    return gaussian_blur(total.squeeze(1), sigma)


def image_scores(maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> (B,): the maximum of each map (the paper's image score)."""
    return maps.flatten(1).amax(dim=1)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, dtype=torch.float32, device=None) -> torch.Tensor:
    """scipy.ndimage's kernel: radius int(truncate*sigma + 0.5), normalised to sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _cached_kernel(sigma: float, truncate: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # built once per device: no host-to-device copy per batch (nor inside a captured CUDA graph)
    return gaussian_kernel1d(sigma, truncate, dtype, device)


def reflect_indices(n: int, radius: int, device=None) -> torch.Tensor:
    """Indices for scipy's 'reflect' padding (d c b a | a b c d | d c b a), any radius, even > n."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def gaussian_blur(maps: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian over the last two dims of (B, H, W) maps; sigma 0 returns the input."""
    if sigma <= 0:
        return maps
    kernel = _cached_kernel(float(sigma), float(truncate), maps.dtype, maps.device)
    radius = (kernel.numel() - 1) // 2
    B, H, W = maps.shape
    # Along W: pad by index, then a 1-channel conv1d over every row.
    x = maps.index_select(2, reflect_indices(W, radius, maps.device))
    x = F.conv1d(x.reshape(B * H, 1, -1), kernel.view(1, 1, -1)).view(B, H, W)
    # Along H, the same on the transposed maps.
    x = x.transpose(1, 2).index_select(2, reflect_indices(H, radius, maps.device))
    x = F.conv1d(x.reshape(B * W, 1, -1), kernel.view(1, 1, -1)).view(B, W, H)
    return x.transpose(1, 2).contiguous()

"""Resizing to the model's square input, as the reference pipeline does it.

The reference (ADer/MambaAD) resizes PIL images with torchvision `Resize((S, S))`, i.e. PIL's
bilinear filter, which is antialiased when shrinking (its support widens with the scale).
OpenCV's INTER_LINEAR is not: shrinking a 1024-pixel MVTec image to 256 with it samples only
some of the pixels and differs from PIL by up to 160 grey levels on fine texture. torch's
`interpolate(..., antialias=True)` on uint8 reproduces PIL to within one grey level, so it is
used for both images and masks. Aspect ratio is not kept (as in the paper).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_uint8(array: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (H, W, C) -> uint8 tensor (C, size, size), PIL-style bilinear."""
    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    if tensor.shape[1:] == (size, size):
        return tensor
    return F.interpolate(
        tensor[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0]


def image_to_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (3, size, size) in [0, 1] (the reference's Resize + ToTensor)."""
    return resize_uint8(image, size).float().div_(255.0)


def mask_to_binary(mask: np.ndarray, size: int) -> torch.Tensor:
    """bool (H, W) -> bool (1, size, size): resized as a 0/255 grey image, then > 0.5."""
    grey = mask.astype(np.uint8)[:, :, None] * 255
    return resize_uint8(grey, size).float() > 127.5


def mask_to_tensor(mask: np.ndarray, size: int) -> torch.Tensor:
    """bool (H, W) -> float32 (1, size, size) in {0, 1} (mask_to_binary)."""
    return mask_to_binary(mask, size).float()

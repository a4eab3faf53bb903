"""A heat map blended over its image, with optional region outlines."""

from __future__ import annotations

import cv2
import numpy as np

from mambaad_cli.viz.colormap import COLORMAP, colorize

PREDICTED_OUTLINE = (255, 255, 255)  # where the map reaches the threshold
TRUTH_OUTLINE = (0, 255, 0)  # the ground-truth defect


def heat_overlay(
    image: np.ndarray,
    amap: np.ndarray,
    lo: float,
    hi: float,
    alpha: float = 0.5,
    outlines: list[tuple[np.ndarray, tuple[int, int, int]]] | None = None,
    colormap: int = COLORMAP,
) -> np.ndarray:
    """uint8 (H, W, 3) RGB image and (H, W) float map -> uint8 RGB: (1 - alpha) image + alpha heat.

    `outlines`: (bool mask (H, W), RGB colour) pairs drawn as 1-pixel contours on top."""
    if image.shape[:2] != amap.shape:
        raise ValueError(f"image {image.shape[:2]} and map {amap.shape} differ in size")
    heat = colorize(amap, lo, hi, colormap)
    blended = cv2.addWeighted(image, 1.0 - alpha, heat, alpha, 0.0)
    for mask, color in outlines or []:
        if mask.any():
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(blended, contours, -1, color, thickness=1)
    return blended


def side_by_side(*images: np.ndarray, gap: int = 2, gap_value: int = 255) -> np.ndarray:
    """RGB images of one height placed left to right with a thin white gap."""
    height = images[0].shape[0]
    spacer = np.full((height, gap, 3), gap_value, np.uint8)
    parts: list[np.ndarray] = []
    for i, img in enumerate(images):
        if i:
            parts.append(spacer)
        parts.append(img)
    return np.concatenate(parts, axis=1)

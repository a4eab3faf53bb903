"""Anomaly maps to colours on a fixed scale.

The scale (lo, hi) comes from the model (one per class), never from the image: a normal image then
looks cool and a defect hot, and two images of a class can be compared by colour. Values outside
the scale are clipped to its ends. The colour map is OpenCV's Turbo (a smoother, perceptually
more even Jet).
"""

from __future__ import annotations

import cv2
import numpy as np

COLORMAP = cv2.COLORMAP_TURBO


def to_levels(amap: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float map -> uint8 levels: lo -> 0, hi -> 255, linear between, clipped outside."""
    span = max(float(hi) - float(lo), 1e-12)
    scaled = (np.asarray(amap, dtype=np.float32) - np.float32(lo)) / np.float32(span)
    return np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def colorize(amap: np.ndarray, lo: float, hi: float, colormap: int = COLORMAP) -> np.ndarray:
    """(H, W) float map -> (H, W, 3) uint8 RGB on the fixed scale [lo, hi]."""
    bgr = cv2.applyColorMap(to_levels(amap, lo, hi), colormap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def colorbar(width: int = 256, height: int = 12, colormap: int = COLORMAP) -> np.ndarray:
    """A horizontal (height, width, 3) RGB gradient from the scale's low end (left) to its high end."""
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :].repeat(height, axis=0)
    return colorize(ramp, 0.0, 1.0, colormap)

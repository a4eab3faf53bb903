"""Connected defect regions of a ground-truth mask (8-connectivity, as the MVTec AUPRO reference)."""

from __future__ import annotations

import cv2
import numpy as np


def defect_pixel_areas(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """For one (H, W) bool mask: the area of the region each defect pixel belongs to, in the row-major
    order of mask's True pixels (the order of maps[mask]), and the number of regions."""
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(
        np.ascontiguousarray(mask, dtype=np.uint8), connectivity=8, ltype=cv2.CV_32S)
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.int32)
    return areas[labels[mask]], n_labels - 1  # label 0 is the background

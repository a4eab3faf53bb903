"""Reading images and masks of any common format as 8-bit RGB / boolean, and atomic PNG writes.

OpenCV decodes; the conversions follow what PIL's `.convert("RGB")` / `.convert("L")` give the
reference code (ADer): grayscale is replicated, alpha dropped, 16-bit scaled down to 8-bit.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from mambaad_cli.atomic import write_bytes
from mambaad_cli.data.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: str | os.PathLike) -> bool:
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _decode(path: str | os.PathLike, what: str) -> np.ndarray:
    """The file's pixels as OpenCV gives them (BGR order, any depth), or DataError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} not found: {p}")
    try:
        # np.fromfile + imdecode (not imread) so that non-ASCII paths work on every OS.
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read {what} {p}: {e.strerror or e}") from None
    if data.size == 0:
        raise DataError(f"{what} is an empty file: {p}")
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        raise DataError(f"{what} is not a readable image: {p}")
    return array


def _to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if array.dtype in (np.float32, np.float64):  # float TIFFs: taken as intensities in [0, 1]
        return (np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise DataError(f"unsupported pixel type {array.dtype} in image: {path}")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Any image file as uint8 (H, W, 3) RGB."""
    array = _to_uint8(_decode(path, "image"), Path(path))
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    channels = array.shape[2]
    if channels == 1:
        return cv2.cvtColor(array[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(array[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    raise DataError(f"unsupported number of channels ({channels}) in image: {path}")


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A ground-truth mask as bool (H, W): a pixel is defective when any colour channel is > 0.

    Instance-id masks (VisA) and 0/255 masks alike binarise this way; an alpha channel is ignored.
    """
    array = _decode(path, "mask")
    if array.ndim == 3:
        keep = 1 if array.shape[2] in (1, 2) else 3  # drop alpha
        return (array[:, :, :keep] > 0).any(axis=2)
    return array > 0


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write uint8 (H, W) gray, (H, W, 3) RGB or bool (as 0/255) to a PNG atomically."""
    path = Path(path)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"write_png expects uint8 (H,W) or (H,W,3) or bool, got {array.dtype} {array.shape}")
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise DataError(f"could not encode PNG for {path}")
    write_bytes(path, encoded.tobytes())

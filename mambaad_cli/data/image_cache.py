"""Decoded, resized images kept on disk (`data.cache_images`), so that epochs after the first skip decoding.

A 1024x1024 MVTec-AD PNG takes about 19 ms of one core to decode and resize to 256x256; its cached row is a
copy. The first use decodes every image once (threads: OpenCV's decoder and torch's resize release the GIL)
into uint8 arrays at the model's input size, images (N, 3, S, S) and masks (N, S, S), exactly what
`image_to_tensor` / `mask_to_tensor` would give before their float conversion. They are read through
`np.load(mmap_mode="r")`, so the DataLoader's workers share one copy in the page cache.

The files' name hashes the dataset root, the size and every image's path, byte size and modification time
(masks' too): an edited, added or removed image gives a new cache instead of a stale one. Each file is
written atomically, the index last, so a killed build leaves no cache that looks complete.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mambaad_cli.atomic import atomic_path, write_text
from mambaad_cli.data.cache_dir import user_cache_dir
from mambaad_cli.data.errors import DataError
from mambaad_cli.data.imageio import read_image, read_mask
from mambaad_cli.data.resize import mask_to_binary, resize_uint8

VERSION = 1


def cache_root() -> Path:
    """$MAMBAAD_CACHE/images, else ~/.cache/mambaad/images (where the demo dataset lives too)."""
    return user_cache_dir() / "images"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def cache_key(root: Path, records: list[dict[str, Any]], image_size: int) -> str:
    items = []
    for r in records:
        mask = r.get("mask_path") or ""
        items.append([r["img_path"], _stamp(root / r["img_path"]), mask, _stamp(root / mask) if mask else []])
    text = json.dumps([VERSION, str(root.resolve()), int(image_size), items])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ImageCache:
    """Rows of resized images and masks by image path. Pickles as its file names (DataLoader workers
    started by spawn open the files themselves)."""

    def __init__(self, folder: Path, key: str):
        self.folder, self.key = Path(folder), key
        index = json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))
        self.rows = {path: i for i, path in enumerate(index["img_paths"])}
        self.image_size = int(index["image_size"])
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def _open(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = (np.load(self.folder / f"{self.key}.images.npy", mmap_mode="r"),
                            np.load(self.folder / f"{self.key}.masks.npy", mmap_mode="r"))
        return self._arrays

    def __contains__(self, img_path: str) -> bool:
        return img_path in self.rows

    def image(self, img_path: str) -> torch.Tensor:
        """float32 (3, S, S) in [0, 1], as `image_to_tensor` gives it."""
        row = np.array(self._open()[0][self.rows[img_path]])
        return torch.from_numpy(row).float().div_(255.0)

    def mask(self, img_path: str) -> torch.Tensor:
        """float32 (1, S, S) in {0, 1}, as `mask_to_tensor` gives it (zeros for a normal image)."""
        row = np.array(self._open()[1][self.rows[img_path]])
        return torch.from_numpy(row)[None].float()


def _decode(root: Path, record: dict[str, Any], size: int) -> tuple[np.ndarray, np.ndarray]:
    image = resize_uint8(read_image(root / record["img_path"]), size).numpy()
    if record.get("mask_path"):
        mask = mask_to_binary(read_mask(root / record["mask_path"]), size)[0].numpy().astype(np.uint8)
    else:
        mask = np.zeros((size, size), np.uint8)
    return image, mask


def open_or_build(
    root: Path, records: list[dict[str, Any]], image_size: int, workers: int = 4, folder: Path | None = None,
    on_build: Callable[[int, Path], None] | None = None,
) -> ImageCache:
    """The cache of these records at this size, decoding them first if no complete cache exists
    (`on_build(n_images, folder)` is called before that)."""
    folder = Path(folder) if folder is not None else cache_root()
    key = cache_key(root, records, image_size)
    if not (folder / f"{key}.json").is_file():
        if on_build is not None:
            on_build(len(records), folder)
        try:
            _build(folder, key, root, records, image_size, workers)
        except OSError as e:
            raise DataError(f"data.cache_images: cannot write the image cache in {folder}: {e.strerror or e} "
                            "(set MAMBAAD_CACHE to a writable folder, or turn the cache off)") from None
    return ImageCache(folder, key)


def _build(folder: Path, key: str, root: Path, records: list[dict[str, Any]], size: int,
           workers: int) -> None:
    n = len(records)
    with atomic_path(folder / f"{key}.images.npy") as images_tmp, \
            atomic_path(folder / f"{key}.masks.npy") as masks_tmp:
        images = np.lib.format.open_memmap(images_tmp, mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
        masks = np.lib.format.open_memmap(masks_tmp, mode="w+", dtype=np.uint8, shape=(n, size, size))
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for i, (image, mask) in enumerate(pool.map(lambda r: _decode(root, r, size), records)):
                images[i], masks[i] = image, mask
        images.flush()
        masks.flush()
        del images, masks
    # the index last: its presence means both arrays are complete
    write_text(folder / f"{key}.json", json.dumps({
        "version": VERSION, "root": str(root.resolve()), "image_size": size,
        "img_paths": [r["img_path"] for r in records],
    }))

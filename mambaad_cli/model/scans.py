"""Scan orders and the K scan directions of MambaAD's HSS blocks (spec section 2), for any (H, W) grid.

Convention everywhere: ``order[i]`` is the row-major index (row * W + col) of the i-th cell visited.

Curves:
- ``sweep``: raster, every row left to right.
- ``scan``: boustrophedon, even rows left to right, odd rows right to left.
- ``zigzag``: JPEG zig-zag over the anti-diagonals d = row + col; even d runs bottom-left to top-right,
  odd d top-right to bottom-left, each diagonal clipped to the grid (equals the official order on squares).
- ``zorder``: Morton order, column in the even bits and row in the odd bits of the code (the official
  pyzorder order on power-of-two squares). Other grids: the Morton order of the enclosing power-of-two
  square with the cells outside the grid skipped.
- ``hilbert``: power-of-two squares use ``numpy-hilbert-curve`` exactly as the official code does (locs[:, 1]
  is the row). Other grids use the generalised Hilbert curve "gilbert" (J. Cerveny's gilbert2d), which
  coincides with the official curve on power-of-two squares and is a 4-connected path except for at most one
  unavoidable diagonal step on some odd-sized grids.

Direction tables (spec 2.4) fold the geometric transforms into the index: ``table[k][i]`` is the row-major
index in the natural (H, W) grid of the i-th element of direction k, so a model encodes with
``x_flat[..., table[k]]`` and merges with ``out[..., table[k]] += y_k``.
"""

from __future__ import annotations

import functools
import operator

import hilbert
import numpy as np
import torch

from mambaad_cli.errors import UserError

SCAN_METHODS = ("sweep", "scan", "zorder", "zigzag", "hilbert")
NUM_DIRECTIONS = (2, 4, 8)


class ScanConfigError(UserError, ValueError):
    """An unknown scan method, direction count or grid size (a ValueError for library callers)."""


def _check_grid(H: int, W: int) -> tuple[int, int]:
    try:
        H, W = operator.index(H), operator.index(W)
    except TypeError:
        raise ScanConfigError(f"scan grid size must be integers, got H={H!r}, W={W!r}") from None
    if H < 1 or W < 1:
        raise ScanConfigError(f"scan grid size must be at least 1x1, got H={H}, W={W}")
    return H, W


def _check_method(method: str) -> None:
    if method not in SCAN_METHODS:
        raise ScanConfigError(f"unknown scan method {method!r}; choose one of {', '.join(SCAN_METHODS)}")


def _sweep(H: int, W: int) -> np.ndarray:
    return np.arange(H * W)


def _snake(H: int, W: int) -> np.ndarray:
    grid = np.arange(H * W).reshape(H, W)
    grid[1::2] = grid[1::2, ::-1]
    return grid.ravel()


def _zigzag(H: int, W: int) -> np.ndarray:
    rows, cols = np.divmod(np.arange(H * W), W)
    diagonal = rows + cols
    # Within an even diagonal the column grows (bottom-left -> top-right); within an odd one the row grows.
    position = np.where(diagonal % 2 == 0, cols, rows)
    return np.lexsort((position, diagonal))


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Move bit b of v to bit 2b (the Morton "part1by1"), for v < 2**32."""
    v = v.astype(np.uint64) & np.uint64(0xFFFFFFFF)
    for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F),
                        (2, 0x3333333333333333), (1, 0x5555555555555555)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def _zorder(H: int, W: int) -> np.ndarray:
    rows, cols = np.divmod(np.arange(H * W), W)
    # Codes do not depend on the grid size, so sorting the cells that exist is exactly the enclosing
    # power-of-two square's Morton order with the outside cells skipped.
    code = _spread_bits(cols) | (_spread_bits(rows) << np.uint64(1))
    return np.argsort(code, kind="stable")


def _sign(v: int) -> int:
    return (v > 0) - (v < 0)


def _gilbert_walk(x: int, y: int, ax: int, ay: int, bx: int, by: int, out: list[tuple[int, int]]) -> None:
    """Append the cells of the rectangle spanned by major axis (ax, ay) and minor axis (bx, by) from (x, y).

    Written by hand from J. Cerveny's gilbert2d (no package on PyPI); recursion depth is O(log(max(H, W))).
    """
    w, h = abs(ax + ay), abs(bx + by)
    dax, day = _sign(ax), _sign(ay)
    dbx, dby = _sign(bx), _sign(by)
    if h == 1:  # a single row along the major axis
        out.extend((x + i * dax, y + i * day) for i in range(w))
        return
    if w == 1:  # a single column along the minor axis
        out.extend((x + i * dbx, y + i * dby) for i in range(h))
        return
    ax2, ay2 = ax // 2, ay // 2
    bx2, by2 = bx // 2, by // 2
    w2, h2 = abs(ax2 + ay2), abs(bx2 + by2)
    if 2 * w > 3 * h:
        # Long rectangle: split the major axis in two, keeping the first half even where possible.
        if w2 % 2 and w > 2:
            ax2, ay2 = ax2 + dax, ay2 + day
        _gilbert_walk(x, y, ax2, ay2, bx, by, out)
        _gilbert_walk(x + ax2, y + ay2, ax - ax2, ay - ay2, bx, by, out)
    else:
        # Standard case: up the minor half, along the full major axis, back down the minor half.
        if h2 % 2 and h > 2:
            bx2, by2 = bx2 + dbx, by2 + dby
        _gilbert_walk(x, y, bx2, by2, ax2, ay2, out)
        _gilbert_walk(x + bx2, y + by2, ax, ay, bx - bx2, by - by2, out)
        _gilbert_walk(x + (ax - dax) + (bx2 - dbx), y + (ay - day) + (by2 - dby),
                      -bx2, -by2, -(ax - ax2), -(ay - ay2), out)


def _gilbert(H: int, W: int) -> np.ndarray:
    cells: list[tuple[int, int]] = []  # (x = column, y = row)
    if W >= H:
        _gilbert_walk(0, 0, W, 0, 0, H, cells)
    else:
        _gilbert_walk(0, 0, 0, H, W, 0, cells)
    xy = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    return xy[:, 1] * W + xy[:, 0]


def _hilbert(H: int, W: int) -> np.ndarray:
    if H == W and H >= 2 and H & (H - 1) == 0:  # power-of-two square: the official curve
        locs = hilbert.decode(np.arange(H * H), num_dims=2, num_bits=H.bit_length() - 1)
        return locs[:, 0] + locs[:, 1] * H  # the official flattening: locs[:, 1] is the row
    return _gilbert(H, W)


_CURVES = {"sweep": _sweep, "scan": _snake, "zorder": _zorder, "zigzag": _zigzag, "hilbert": _hilbert}


@functools.lru_cache(maxsize=256)
def _cached_order(method: str, H: int, W: int) -> np.ndarray:
    order = np.ascontiguousarray(_CURVES[method](H, W), dtype=np.int64)
    order.flags.writeable = False
    return order


def scan_order(method: str, H: int, W: int) -> torch.Tensor:
    """Visit order of ``method`` on an H x W grid: LongTensor (H*W,) of row-major cell indices."""
    _check_method(method)
    H, W = _check_grid(H, W)
    return torch.from_numpy(_cached_order(method, H, W).copy())


@functools.lru_cache(maxsize=256)
def _cached_tables(method: str, H: int, W: int, K: int) -> torch.Tensor:
    grid = np.arange(H * W).reshape(H, W)
    rotated = np.rot90(grid, 1)  # same as torch.rot90(x, 1, dims=(H, W)): counter-clockwise
    # d0: identity, d1: transpose, d2: rot90, d3: transpose(rot90) = horizontal flip.
    views = (grid, grid.T, rotated, rotated.T)
    forward = [view.ravel()[_cached_order(method, *view.shape)] for view in views[: K // 2]]
    tables = forward + [table[::-1] for table in forward]
    return torch.from_numpy(np.stack(tables).astype(np.int64))


def direction_tables(method: str, H: int, W: int, K: int) -> torch.Tensor:
    """The K direction tables (K, H*W) of spec 2.4, geometric transforms and reversals folded in.

    Rows: K=8 [d0, d1, d2, d3, rev d0, rev d1, rev d2, rev d3];
    K=4 [d0, d1, rev d0, rev d1]; K=2 [d0, rev d0].
    """
    _check_method(method)
    H, W = _check_grid(H, W)
    if K not in NUM_DIRECTIONS:
        raise ScanConfigError(f"number of scan directions must be one of {NUM_DIRECTIONS}, got {K!r}")
    return _cached_tables(method, H, W, int(K)).clone()

"""Scan orders and direction tables against independent constructions (spec section 2)."""

import hilbert
import numpy as np
import pytest
import torch
from pyzorder import ZOrderIndexer

from mambaad_cli.errors import UserError
from mambaad_cli.model import scans
from mambaad_cli.model.scans import direction_tables, scan_order

METHODS = ("sweep", "scan", "zorder", "zigzag", "hilbert")
SIZES = [(1, 1), (1, 7), (7, 1), (2, 3), (3, 2), (5, 5), (6, 6), (12, 12), (7, 10), (10, 7), (8, 8), (16, 16),
         (14, 14), (13, 17), (6, 10), (64, 64)]
POWER_OF_TWO_SIDES = (8, 16, 32, 64)


# ---- official orders, built the way the MambaAD code builds them (spec 2.2) --------------------------------

def official_order(method: str, S: int) -> torch.Tensor:
    if method == "sweep":
        return torch.arange(S * S)
    if method == "scan":
        return torch.tensor([r * S + (c if r % 2 == 0 else S - 1 - c) for r in range(S) for c in range(S)])
    if method == "zorder":
        indexer = ZOrderIndexer((0, S - 1), (0, S - 1))
        return torch.tensor([c * S + r for r, c in (indexer.rc(z) for z in range(S * S))])
    if method == "zigzag":
        order = []
        for d in range(2 * S - 1):
            for j in range(max(0, d - S + 1), min(d, S - 1) + 1):
                row, col = (d - j, j) if d % 2 == 0 else (j, d - j)
                order.append(row * S + col)
        return torch.tensor(order)
    locs = hilbert.decode(np.arange(S * S), num_dims=2, num_bits=int(np.log2(S)))
    return torch.from_numpy(locs[:, 0] + locs[:, 1] * S).long()


def tables_by_torch_transforms(order_of, H: int, W: int) -> torch.Tensor:
    """Spec 2.4 with torch ops on a grid of natural indices; order_of(h, w) scans an h x w grid."""
    grid = torch.arange(H * W).reshape(H, W)
    rotated = torch.rot90(grid, 1, dims=(0, 1))
    views = [grid, torch.transpose(grid, 0, 1), rotated, torch.transpose(rotated, 0, 1)]
    forward = [view.reshape(-1)[order_of(*view.shape)] for view in views]
    return torch.stack(forward + [torch.flip(t, dims=(0,)) for t in forward])


def steps(order: torch.Tensor, W: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.divmod(order.numpy(), W)
    return np.abs(np.diff(rows)), np.abs(np.diff(cols))


# ---- every table is a permutation --------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_every_table_is_a_permutation(method):
    for H, W in SIZES:
        order = scan_order(method, H, W)
        assert order.dtype == torch.long and order.shape == (H * W,)
        assert torch.equal(torch.sort(order).values, torch.arange(H * W)), (method, H, W)
        for K in (2, 4, 8):
            tables = direction_tables(method, H, W, K)
            assert tables.dtype == torch.long and tables.shape == (K, H * W)
            expected = torch.arange(H * W).expand(K, -1)
            assert torch.equal(torch.sort(tables, dim=1).values, expected), (method, H, W, K)


# ---- simple curves on non-square grids, from their definitions ---------------------------------------------

def test_sweep_scan_zigzag_on_a_non_square_grid():
    H, W = 3, 4
    assert scan_order("sweep", H, W).tolist() == list(range(12))
    assert scan_order("scan", H, W).tolist() == [0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11]
    zigzag = []
    for d in range(H + W - 1):
        if d % 2 == 0:  # bottom-left to top-right
            cells = [(d - j, j) for j in range(W) if 0 <= d - j < H]
        else:  # top-right to bottom-left
            cells = [(j, d - j) for j in range(H) if 0 <= d - j < W]
        zigzag += [r * W + c for r, c in cells]
    assert scan_order("zigzag", H, W).tolist() == zigzag


@pytest.mark.parametrize("H, W", [(5, 7), (6, 10), (12, 12), (1, 9)])
def test_zorder_on_other_grids_is_the_enclosing_square_order_with_outside_cells_skipped(H, W):
    side = 1 << max(H - 1, W - 1, 1).bit_length()
    full = official_order("zorder", side)
    rows, cols = full // side, full % side
    inside = (rows < H) & (cols < W)
    assert torch.equal(scan_order("zorder", H, W), rows[inside] * W + cols[inside])


# ---- hilbert / gilbert adjacency ---------------------------------------------------------------------------

def test_hilbert_is_four_connected_on_even_grids_and_has_at_most_one_diagonal_elsewhere():
    sizes = SIZES + [(H, W) for H in range(1, 20) for W in range(1, 20)]
    for H, W in sizes:
        dr, dc = steps(scan_order("hilbert", H, W), W)
        diagonal = (dr == 1) & (dc == 1)
        assert np.all((dr + dc == 1) | diagonal), (H, W)  # no jumps
        assert diagonal.sum() <= 1, (H, W)
        if H % 2 == 0 and W % 2 == 0:
            assert not diagonal.any(), (H, W)


@pytest.mark.parametrize("S", (2, 4, 8, 16, 32, 64))
def test_gilbert_coincides_with_the_official_hilbert_on_power_of_two_squares(S):
    # The module uses numpy-hilbert-curve for these sizes, so check its generalised curve separately.
    assert np.array_equal(scans._gilbert(S, S), official_order("hilbert", S).numpy())


# ---- the official construction for S = 8, 16, 32, 64 -------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("S", POWER_OF_TWO_SIDES)
def test_direction_tables_match_the_official_construction(method, S):
    official = official_order(method, S)
    assert torch.equal(scan_order(method, S, S), official)
    expected = tables_by_torch_transforms(lambda h, w: official, S, S)
    assert torch.equal(direction_tables(method, S, S, 8), expected)
    assert torch.equal(direction_tables(method, S, S, 4), expected[[0, 1, 4, 5]])
    assert torch.equal(direction_tables(method, S, S, 2), expected[[0, 4]])


def test_facts_stated_in_the_spec():
    assert scan_order("zorder", 8, 8)[:8].tolist() == [0, 1, 8, 9, 2, 3, 10, 11]
    assert scan_order("zigzag", 8, 8)[:10].tolist() == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]
    for S, first_step in ((8, "down"), (16, "right"), (32, "down"), (64, "right")):
        order = scan_order("hilbert", S, S)
        assert order[0] == 0 and order[-1] == S - 1  # starts at (0, 0), ends at (0, S-1)
        assert order[1] == (S if first_step == "down" else 1), S


# ---- non-square grids: transforms, and the gather / scatter round trip -------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_non_square_directions_and_round_trip(method):
    H, W = 6, 10
    expected = tables_by_torch_transforms(lambda h, w: scan_order(method, h, w), H, W)
    tables = direction_tables(method, H, W, 8)
    assert torch.equal(tables, expected)

    # d3 is a horizontal flip of the grid (spec 2.4).
    flipped = torch.flip(torch.arange(H * W).reshape(H, W), dims=(1,)).reshape(-1)
    assert torch.equal(tables[3], flipped[scan_order(method, H, W)])

    x = torch.randn(2, 3, H * W, dtype=torch.float64)
    for table in tables:
        seq = x[..., table]
        back = torch.zeros_like(x)
        back[..., table] = seq
        assert torch.equal(back, x)
    # Merging all 8 identical sequences by summation gives 8x the input.
    merged = torch.zeros_like(x)
    for table in tables:
        merged[..., table] += x[..., table]
    torch.testing.assert_close(merged, 8 * x)


def test_cached_tables_cannot_be_corrupted_by_callers():
    tables = direction_tables("hilbert", 6, 10, 8)
    order = scan_order("hilbert", 6, 10)
    tables.zero_()
    order.zero_()
    assert torch.equal(torch.sort(direction_tables("hilbert", 6, 10, 8)[0]).values, torch.arange(60))
    assert torch.equal(torch.sort(scan_order("hilbert", 6, 10)).values, torch.arange(60))


# ---- errors ------------------------------------------------------------------------------------------------

def test_unknown_method_names_it_and_the_choices():
    with pytest.raises(ValueError, match=r"'spiral'.*sweep, scan, zorder, zigzag, hilbert"):
        scan_order("spiral", 8, 8)
    with pytest.raises(UserError, match="spiral"):
        direction_tables("spiral", 8, 8, 8)


@pytest.mark.parametrize("K", [0, 1, 3, 6, 16])
def test_bad_direction_count(K):
    with pytest.raises(ValueError, match=str(K)):
        direction_tables("hilbert", 8, 8, K)


@pytest.mark.parametrize("H, W", [(0, 4), (4, -1), (2.5, 4)])
def test_bad_grid_size(H, W):
    with pytest.raises(ValueError):
        scan_order("sweep", H, W)

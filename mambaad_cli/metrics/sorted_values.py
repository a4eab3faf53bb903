"""The normal pixels of a class, sorted once, answering "how many values lie below q?".

The sort is the only O(N log N) step of the pixel metrics. Every metric afterwards asks rank
questions for a few query values (a binary search each), so the N values are not touched again.
Backends: numpy on the CPU (np.sort of float32 is SIMD-vectorised, about 2x faster than torch.sort
on a CPU, and releases the GIL: the values are split into one sorted run per core, sorted in
threads, and a rank query sums its binary searches over the runs - no merge needed); torch for
tensors on an accelerator (one torch.sort there; only the answers, one integer per query, return).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MAX_RUNS = 8  # sorted runs on the CPU: one per core, at most this many
MIN_RUN = 1 << 20  # below this many values a single run is as fast


def is_torch_tensor(x) -> bool:
    """True for a torch.Tensor, without importing torch when the caller never did."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def usable_cores() -> int:
    """Cores this process may run on (respects taskset / container CPU sets where the OS tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class SortedValues:
    """float32 values held as sorted runs; built from chunks (all numpy, or all torch on one device).
    The numpy chunks are consumed: the runs are sorted in their place where possible."""

    def __init__(self, chunks: list):
        chunks = [c for c in chunks if c.shape[0] > 0]
        self._torch = bool(chunks) and is_torch_tensor(chunks[0])
        if not chunks:
            self.runs = []
        elif self._torch:
            import torch

            flat = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
            self.runs = [torch.sort(flat).values]
        else:
            flat = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
            n_runs = int(np.clip(flat.size // MIN_RUN, 1, min(MAX_RUNS, usable_cores())))
            self.runs = np.array_split(flat, n_runs)  # views: sorted in place, no copy
            if n_runs == 1:
                flat.sort()
            else:
                with ThreadPoolExecutor(n_runs) as pool:
                    list(pool.map(np.ndarray.sort, self.runs))

    @property
    def n(self) -> int:
        return sum(int(r.shape[0]) for r in self.runs)

    def extremes(self) -> tuple[np.float32, np.float32]:
        """(min, max); only for a non-empty set."""
        ends = [r[[0, -1]] for r in self.runs]
        ends = np.stack([e.cpu().numpy() if self._torch else e for e in ends])
        return np.float32(ends[:, 0].min()), np.float32(ends[:, 1].max())

    def count_below(self, queries: np.ndarray, inclusive: bool = False) -> np.ndarray:
        """int64 count of values < q (or <= q if inclusive) for each float32 query."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        total = np.zeros(queries.shape, dtype=np.int64)
        if self._torch:
            import torch

            q = torch.from_numpy(queries).to(self.runs[0].device)
            for run in self.runs:
                total += torch.searchsorted(run, q, right=inclusive).cpu().numpy()
            return total
        side = "right" if inclusive else "left"
        for run in self.runs:
            total += np.searchsorted(run, queries, side=side)
        return total

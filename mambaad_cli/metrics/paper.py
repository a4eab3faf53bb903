"""Paper-era pixel metrics (reference/mambaad_spec.md 5.2): what ADer's April-2024 code reported.

  P-F1max@21   maps min-max normalised over the class, norm = (map - min) / (max - min) in float64;
               21 thresholds t = np.arange(0, 1 + 1e-3, 0.05); predicted = norm > t; pooled pixel
               counts; F1 = 2PR / (P + R + 1e-8) with P = tp / (pred + 1e-8), R = tp / (n_def + 1e-8);
               max over t. Constant maps predict nothing: 0.
  AUPRO@paper  cal_pro_score with max_step=100: thresholds np.arange(min, max, (max - min) / 100) over
               the class's raw maps (float64); predicted = map > th; PRO = mean over all GT regions of
               the covered fraction; FPR = false positives / normal pixels; keep points with
               FPR < 0.3, re-normalise their FPRs min-max to [0, 1], trapezoid (sklearn.metrics.auc).
               nan where that recipe divides by zero (constant maps, fewer than two distinct kept
               FPRs), where ADer's code would crash or return nan.

Evaluated exactly, without binarising the maps: each threshold becomes the smallest float32 value
that passes it (a bisection over float32 values on the very float64 comparison the recipe makes),
and the number of pixels at or above that value is a binary search in the sorted pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import auc

from mambaad_cli.metrics.pixel import AUPRO_FPR_LIMIT, Positives
from mambaad_cli.metrics.sorted_values import SortedValues

F1_THRESHOLDS = np.arange(0.0, 1.0 + 1e-3, 0.05)  # ADer's 21 thresholds on normalised maps
PRO_STEPS = 100  # max_step_aupro in MambaAD's configs
EPS = 1e-8


def paper_pixel_metrics(pos: Positives, neg: SortedValues) -> dict[str, float]:
    nan = float("nan")
    if pos.n == 0 or neg.n == 0:
        return {"P-F1max@21": nan, "AUPRO@paper": nan}
    neg_lo, neg_hi = neg.extremes()
    lo, hi = min(pos.values[0], neg_lo), max(pos.values[-1], neg_hi)
    counter = _AboveCounter(pos, neg, lo, hi)
    return {"P-F1max@21": _f1max_21(counter, float(lo), float(hi)),
            "AUPRO@paper": _aupro_paper(counter, float(lo), float(hi))}


class _AboveCounter:
    """Counts of pixels passing monotone predicates, batched: one search call for all thresholds."""

    def __init__(self, pos: Positives, neg: SortedValues, lo: np.float32, hi: np.float32):
        self.pos, self.neg, self.lo, self.hi = pos, neg, lo, hi
        self.weight_from = np.r_[np.cumsum(pos.weights[::-1])[::-1], 0.0]  # weight of pos[i:]

    def count(self, predicates: list[Callable[[float], bool]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each predicate: (#defect pixels, their weight sum, #normal pixels) that pass it."""
        cuts = np.array([_first_passing(p, self.lo, self.hi) for p in predicates], dtype=np.float32)
        first = np.searchsorted(self.pos.values, cuts, side="left")
        neg_pass = self.neg.n - self.neg.count_below(cuts)
        return self.pos.n - first, self.weight_from[first], neg_pass


def _f1max_21(counter: _AboveCounter, lo: float, hi: float) -> float:
    if hi == lo:  # (x - min) / 0 is nan everywhere: nothing is predicted, F1 = 0
        return 0.0
    preds = [lambda x, t=t: (x - lo) / (hi - lo) > t for t in F1_THRESHOLDS]
    tp, _, fp = counter.count(preds)
    precision = tp / (tp + fp + EPS)
    recall = tp / (counter.pos.n + EPS)
    return float(np.max(2.0 * precision * recall / (precision + recall + EPS)))


def _aupro_paper(counter: _AboveCounter, lo: float, hi: float) -> float:
    if hi == lo:
        return float("nan")
    thresholds = np.arange(lo, hi, (hi - lo) / PRO_STEPS)
    _, covered, fp = counter.count([lambda x, th=th: x > th for th in thresholds])
    pro = covered / counter.pos.n_regions
    fpr = fp / counter.neg.n
    keep = fpr < AUPRO_FPR_LIMIT
    fpr, pro = fpr[keep], pro[keep]
    if fpr.size < 2 or fpr.max() == fpr.min():
        return float("nan")
    return float(auc((fpr - fpr.min()) / (fpr.max() - fpr.min()), pro))


def _first_passing(predicate: Callable[[float], bool], lo: np.float32, hi: np.float32) -> np.float32:
    """Smallest float32 x in [lo, hi] with predicate(float(x)) true (predicate monotone in x);
    +inf when even hi fails. Bisection over float32 values in their total order."""
    if predicate(float(lo)):
        return lo
    if not predicate(float(hi)):
        return np.float32(np.inf)
    low, high = _float32_rank(lo), _float32_rank(hi)  # predicate fails at low, passes at high
    while high - low > 1:
        mid = (low + high) // 2
        if predicate(float(_float32_at_rank(mid))):
            high = mid
        else:
            low = mid
    return _float32_at_rank(high)


def _float32_rank(x: np.float32) -> int:
    """An integer that orders float32 values like their values (+0 and -0 share rank 0)."""
    bits = int(np.array(x, dtype=np.float32).view(np.int32))
    return bits if bits >= 0 else -(bits & 0x7FFFFFFF)


def _float32_at_rank(rank: int) -> np.float32:
    bits = rank if rank >= 0 else (-rank) | 0x80000000
    return np.array(bits, dtype=np.uint32).view(np.float32)[()]

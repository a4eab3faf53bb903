"""Exact pixel metrics of one class: P-AUROC, P-AP, P-F1max and AUPRO, from one sort.

The defect pixels ("positives", a few percent of all pixels) are sorted with their region weights;
the normal pixels ("negatives") are sorted once in SortedValues. For each distinct positive value v
two binary searches give how many negatives lie below / at v, and every metric follows from those
counts with cumulative sums. Ties are handled as one threshold per distinct value, as scikit-learn
does: a block of tied positives and negatives is one diagonal step of the ROC / PRO curve.

Definitions (all thresholds t, "predicted defect" = map >= t):
  P-AUROC   area under the ROC curve, trapezoid through tied blocks (= sklearn roc_auc_score)
            = P(pos > neg) + P(pos == neg) / 2, the Mann-Whitney form used here.
  P-AP      step-wise average precision, sum over recall steps of precision (= sklearn).
  P-F1max   max over thresholds of 2PR/(P+R) = 2 tp / (tp + fp + n_pos).
  AUPRO     MVTec reference: PRO(t) = mean over all GT regions of the class of the covered fraction
            of the region, FPR(t) = fraction of normal pixels >= t; PRO integrated over FPR in
            [0, 0.3] (trapezoid, the point at 0.3 linearly interpolated), divided by 0.3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mambaad_cli.metrics.sorted_values import SortedValues

AUPRO_FPR_LIMIT = 0.3


@dataclass
class Positives:
    """Defect pixels of a class, sorted ascending, each with weight 1 / area of its GT region."""

    values: np.ndarray  # float32, ascending
    weights: np.ndarray  # float64, same order
    n_regions: int

    @classmethod
    def from_pixels(cls, values: np.ndarray, areas: np.ndarray, n_regions: int) -> Positives:
        order = np.argsort(values, kind="stable")
        return cls(values[order], 1.0 / areas[order].astype(np.float64), n_regions)

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    def distinct(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct values (ascending), how many pixels hold each, and the sum of their weights."""
        starts = np.flatnonzero(np.r_[True, self.values[1:] != self.values[:-1]])
        counts = np.diff(np.r_[starts, self.n])
        return self.values[starts], counts.astype(np.int64), np.add.reduceat(self.weights, starts)


def exact_pixel_metrics(pos: Positives, neg: SortedValues) -> dict[str, float]:
    nan = float("nan")
    if pos.n == 0 or neg.n == 0:  # one label only: every pixel metric is undefined
        return {"P-AUROC": nan, "P-AP": nan, "P-F1max": nan, "AUPRO": nan}
    n_pos, n_neg = pos.n, neg.n
    value, count, weight = pos.distinct()
    neg_lt = neg.count_below(value)  # negatives strictly below each distinct positive value
    neg_le = neg.count_below(value, inclusive=True)
    neg_ge = n_neg - neg_lt  # false positives at threshold t = value
    tp_ge = np.cumsum(count[::-1])[::-1]  # true positives at threshold t = value

    # Integer sums: exact up to n_pos * n_neg ~ 1e15 (far beyond a dataset's pixels).
    auroc = float(np.sum(count * (neg_lt + neg_le))) / (2.0 * n_pos * n_neg)
    # Recall steps only where positives sit, so the step-wise AP sums over distinct positive values;
    # between them F1 only falls (fp grows at fixed tp), so its max is at one of them too.
    ap = float(np.sum(count * (tp_ge / (tp_ge + neg_ge)))) / n_pos
    f1max = float(np.max(2.0 * tp_ge / (tp_ge + neg_ge + n_pos)))
    return {"P-AUROC": auroc, "P-AP": ap, "P-F1max": f1max,
            "AUPRO": _aupro(weight, (n_neg - neg_le) / n_neg, neg_ge / n_neg, pos.n_regions)}


def _aupro(weight: np.ndarray, fpr_above: np.ndarray, fpr_at: np.ndarray, n_regions: int) -> float:
    """Integral of PRO over FPR in [0, limit] / limit, summed pixel group by pixel group.

    PRO(t) is a sum of per-pixel weights, so the integral is too: a group of tied defect pixels
    (value v, weight sum w) adds 0 to PRO while FPR < fpr_above(v), rises linearly to w while FPR
    crosses the tied block [fpr_above, fpr_at] (the trapezoid's diagonal) and stays w after it.
    Its share of the area up to the limit L is therefore
      (L - b) + (b - a) / 2     if b <= L           (a = fpr_above, b = fpr_at)
      (L - a)^2 / (2 (b - a))   if a < L < b        (the linear interpolation at L)
      0                         if a >= L.
    """
    lim = AUPRO_FPR_LIMIT
    a, b = fpr_above, fpr_at
    share = np.zeros_like(a)
    full = b <= lim
    share[full] = (lim - b[full]) + (b[full] - a[full]) / 2.0
    cut = (a < lim) & (b > lim)
    share[cut] = (lim - a[cut]) ** 2 / (2.0 * (b[cut] - a[cut]))
    return float(np.sum(weight * share)) / (n_regions * lim)

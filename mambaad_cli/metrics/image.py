"""Image-level metrics, straight from scikit-learn (a few hundred scores per class: no need to be clever).

I-AUROC = roc_auc_score, I-AP = average_precision_score (step-wise), I-F1max = max over all
thresholds of 2PR/(P+R) on precision_recall_curve, finite values only (ADer's mF1_max_sp_max).
All three are nan when the class has only normal or only defective images.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score


def image_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    if labels.size == 0 or labels.all() or not labels.any():
        return {"I-AUROC": float("nan"), "I-AP": float("nan"), "I-F1max": float("nan")}
    f1max, _ = f1max_and_threshold(scores, labels)
    return {"I-AUROC": float(roc_auc_score(labels, scores)),
            "I-AP": float(average_precision_score(labels, scores)),
            "I-F1max": f1max}


def f1max_and_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Max F1 over all thresholds and the score threshold (predict defect if score >= it) reaching it.
    An oracle threshold: chosen on the evaluated images themselves."""
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    f1 = np.where(np.isfinite(f1), f1, -1.0)
    best = int(np.argmax(f1[:-1]))  # the last point (recall 0) has no threshold and F1 = 0
    return float(f1[best]), float(thresholds[best])

"""Metrics vs independent references: scikit-learn, a plain threshold-loop AUPRO (MVTec definition)
and straightforward re-implementations of the paper-era recipes (reference/mambaad_spec.md 5.2)."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from mambaad_cli.errors import UserError
from mambaad_cli.metrics import (
    ALL_KEYS,
    METRIC_KEYS,
    PAPER_KEYS,
    MetricAccumulator,
    evaluate_class,
    mean_metrics,
)

# ---------------------------------------------------------------- data


def make_class(seed, n=10, size=16, levels=8, n_defective=5):
    """Random maps with heavy ties (quantised to `levels` values; None = continuous) and masks with
    a few blobs on the first n_defective images; image scores rounded to 1 decimal (more ties)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n_defective):
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(0, size - 2, 2)
            h, w = rng.integers(1, 5, 2)
            masks[i, r:r + h, c:c + w] = True
    maps = rng.random((n, size, size)) + 0.35 * masks
    if levels is not None:
        maps = np.round(maps * levels) / levels
    maps = maps.astype(np.float32)
    scores = np.round(maps.reshape(n, -1).max(1) + 0.2 * rng.random(n), 1)
    return scores, masks.reshape(n, -1).any(1), maps, masks


def regions_of(masks):
    """(image index, region mask) for each 8-connected GT region."""
    out = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        out += [(i, lab == k) for k in range(1, n + 1)]
    return out


# ---------------------------------------------------------------- references


def f1max_reference(labels, scores):
    p, r, _ = precision_recall_curve(labels, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = 2 * p * r / (p + r)
    return np.max(f1[np.isfinite(f1)])


def aupro_reference(maps, masks, limit=0.3):
    """Threshold loop over every distinct value (map >= t), trapezoid up to FPR = limit."""
    regions, normal = regions_of(masks), ~masks
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        hit = maps >= t
        fprs.append((hit & normal).sum() / normal.sum())
        pros.append(np.mean([hit[i][r].sum() / r.sum() for i, r in regions]))
    fprs, pros = np.array(fprs), np.array(pros)
    k = int(np.argmax(fprs > limit))  # the lowest threshold has FPR 1, so k exists
    x = np.r_[fprs[:k], limit]
    y = np.r_[pros[:k], np.interp(limit, fprs[:k + 1], pros[:k + 1])]
    return np.trapezoid(y, x) / limit


def aupro_paper_reference(maps, masks, max_step=100, expect_fpr=0.3):
    """ADer's cal_pro_score (April 2024), with scipy labelling instead of skimage."""
    amaps = maps.astype(np.float64)
    regions, inverse = regions_of(masks), ~masks
    min_th, max_th = amaps.min(), amaps.max()
    pros, fprs = [], []
    for th in np.arange(min_th, max_th, (max_th - min_th) / max_step):
        binary = amaps > th
        pros.append(np.mean([binary[i][r].sum() / r.sum() for i, r in regions]))
        fprs.append((binary & inverse).sum() / inverse.sum())
    pros, fprs = np.array(pros), np.array(fprs)
    keep = fprs < expect_fpr
    fprs = fprs[keep]
    return auc((fprs - fprs.min()) / (fprs.max() - fprs.min()), pros[keep])


def f1max_21_reference(maps, masks, eps=1e-8):
    """ADer's mF1_max_px: 21 thresholds on class min-max normalised maps, pooled pixel counts."""
    amaps = maps.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = (amaps - amaps.min()) / (amaps.max() - amaps.min())
    best = []
    for t in np.arange(0.0, 1.0 + 1e-3, 0.05):
        pr = norm > t
        tp = np.logical_and(masks, pr).sum()
        precision, recall = tp / (pr.sum() + eps), tp / (masks.sum() + eps)
        best.append(2 * precision * recall / (precision + recall + eps))
    return max(best)


def sklearn_metrics(scores, labels, maps, masks):
    y, s = masks.ravel(), maps.ravel()
    return {"I-AUROC": roc_auc_score(labels, scores), "I-AP": average_precision_score(labels, scores),
            "I-F1max": f1max_reference(labels, scores), "P-AUROC": roc_auc_score(y, s),
            "P-AP": average_precision_score(y, s), "P-F1max": f1max_reference(y, s)}


def run(backend, scores, labels, maps, masks, torch_inputs=False):
    acc = MetricAccumulator(backend=backend)
    if torch_inputs:
        scores, labels, maps, masks = map(torch.from_numpy, (scores, labels, maps, masks))
    acc.update(scores, labels, maps, masks)
    return acc.compute()


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("seed,levels", [(0, 3), (1, 8), (2, 20), (3, None)])
def test_exact_metrics_match_sklearn_and_aupro_reference(seed, levels, backend):
    data = make_class(seed, levels=levels)
    got = run(backend, *data, torch_inputs=backend == "torch")
    assert list(got) == list(ALL_KEYS)
    for key, want in sklearn_metrics(*data).items():
        assert got[key] == pytest.approx(want, abs=1e-6), key
    assert got["AUPRO"] == pytest.approx(aupro_reference(data[2], data[3]), abs=1e-4)


@pytest.mark.parametrize("seed,levels", [(4, 20), (5, 7), (6, None)])
def test_paper_variants_match_recipe(seed, levels):
    scores, labels, maps, masks = make_class(seed, levels=levels)
    got = evaluate_class(scores, labels, maps, masks)
    assert got["P-F1max@21"] == pytest.approx(f1max_21_reference(maps, masks), abs=1e-9)
    assert got["AUPRO@paper"] == pytest.approx(aupro_paper_reference(maps, masks), abs=1e-9)


@pytest.mark.parametrize("levels", [8, 20])
def test_paper_variants_on_values_at_threshold_boundaries(levels):
    # maps k/levels in [0, 1] sit exactly on some thresholds of both recipes (t = 0.05 k, th = 0.01 k):
    # "norm > t" and "map > th" must be the recipe's float64 comparisons, strict.
    scores, labels, maps, masks = make_class(7, levels=levels)
    maps = np.clip(maps, 0, 1)
    got = evaluate_class(scores, labels, maps, masks)
    assert got["P-F1max@21"] == pytest.approx(f1max_21_reference(maps, masks), abs=1e-12)
    assert got["AUPRO@paper"] == pytest.approx(aupro_paper_reference(maps, masks), abs=1e-12)


def test_regions_are_8_connected():
    # two squares touching at a corner: one region with 8-connectivity, two with 4-connectivity
    masks = np.zeros((2, 12, 12), dtype=bool)
    masks[0, 2:5, 2:5] = masks[0, 5:9, 5:9] = True
    rng = np.random.default_rng(8)
    maps = (rng.random(masks.shape) + 0.5 * masks).astype(np.float32)
    maps[0, 5:9, 5:9] += 1.0  # the two squares are found at very different thresholds
    got = evaluate_class(maps.reshape(2, -1).max(1), masks.reshape(2, -1).any(1), maps, masks)
    assert len(regions_of(masks)) == 1
    assert got["AUPRO"] == pytest.approx(aupro_reference(maps, masks), abs=1e-4)


def test_streaming_updates_equal_one_call():
    scores, labels, maps, masks = make_class(9, n=12, levels=10)
    acc = MetricAccumulator()
    for sl in (slice(0, 5), slice(5, 6), slice(6, 12)):
        acc.update(scores[sl], labels[sl], maps[sl], masks[sl])
    streamed, whole = acc.compute(), evaluate_class(scores, labels, maps, masks)
    for key in ALL_KEYS:
        assert streamed[key] == pytest.approx(whole[key], abs=1e-12), key
    assert acc.compute() == streamed  # compute twice: same answer
    assert acc.counts()["images"] == 12 and acc.counts()["regions"] == len(regions_of(masks))


def test_constant_maps():
    scores, labels, maps, masks = make_class(10)
    maps = np.full_like(maps, 0.25)
    got = evaluate_class(np.zeros_like(scores), labels, maps, masks)
    for key, want in sklearn_metrics(np.zeros_like(scores), labels, maps, masks).items():
        assert got[key] == pytest.approx(want, abs=1e-6), key
    assert got["AUPRO"] == pytest.approx(aupro_reference(maps, masks), abs=1e-4)
    assert got["P-F1max@21"] == pytest.approx(f1max_21_reference(maps, masks))
    assert math.isnan(got["AUPRO@paper"])  # the recipe divides by max - min = 0


def test_class_without_defective_image():
    scores, labels, maps, masks = make_class(11, n_defective=0)
    got = evaluate_class(scores, labels, maps, masks)
    assert all(math.isnan(got[k]) for k in ALL_KEYS)


def test_class_without_normal_image():
    scores, labels, maps, masks = make_class(12, n=6, n_defective=6)
    assert labels.all()
    got = evaluate_class(scores, labels, maps, masks)
    assert all(math.isnan(got[k]) for k in ("I-AUROC", "I-AP", "I-F1max"))
    want = sklearn_metrics(np.r_[scores, 0], np.r_[labels, False], maps, masks)  # pixel part only
    for key in ("P-AUROC", "P-AP", "P-F1max"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    assert got["AUPRO"] == pytest.approx(aupro_reference(maps, masks), abs=1e-4)


def test_perfect_and_inverted_detectors():
    _, labels, _, masks = make_class(13, levels=None)
    rng = np.random.default_rng(13)
    maps = (masks + 0.5 * rng.random(masks.shape)).astype(np.float32)
    perfect = evaluate_class(maps.reshape(len(maps), -1).max(1), labels, maps, masks)
    assert all(perfect[k] == pytest.approx(1.0, abs=1e-12) for k in METRIC_KEYS)
    inverted = evaluate_class(-maps.reshape(len(maps), -1).max(1), labels, -maps, masks)
    assert inverted["I-AUROC"] == pytest.approx(0.0, abs=1e-12)
    assert inverted["P-AUROC"] == pytest.approx(0.0, abs=1e-12)
    assert inverted["AUPRO"] == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_raise_user_error():
    scores, labels, maps, masks = make_class(14)
    with pytest.raises(UserError, match="shapes"):
        evaluate_class(scores, labels, maps, masks[:, :-1])
    with pytest.raises(UserError, match="shapes"):
        evaluate_class(scores[:-1], labels, maps, masks)
    maps[0, 0, 0] = np.nan
    with pytest.raises(UserError, match="NaN.*--precision fp32.*MAMBAAD_ENCODER_FOLD=0"):
        evaluate_class(scores, labels, maps, masks)


def test_mean_metrics_skips_undefined_classes():
    a = {k: 0.5 for k in ALL_KEYS}
    b = {**{k: 0.7 for k in ALL_KEYS}, "I-AUROC": float("nan")}
    c = {**{k: float("nan") for k in ALL_KEYS}, "P-AP": 0.9}
    mean = mean_metrics({"a": a, "b": b, "c": c})
    assert mean["I-AUROC"] == pytest.approx(0.5) and mean["n_classes"]["I-AUROC"] == 1
    assert mean["P-AUROC"] == pytest.approx(0.6) and mean["n_classes"]["P-AUROC"] == 2
    assert mean["P-AP"] == pytest.approx((0.5 + 0.7 + 0.9) / 3) and mean["n_classes"]["P-AP"] == 3
    assert math.isnan(mean_metrics({"c": {"AUPRO": float("nan")}})["AUPRO"])
    assert list(METRIC_KEYS) + list(PAPER_KEYS) == list(ALL_KEYS)


def test_sorted_runs_split_over_threads_agree(monkeypatch):
    # large classes are sorted as several runs in threads; force that on a tiny class
    import mambaad_cli.metrics.sorted_values as sv

    monkeypatch.setattr(sv, "MIN_RUN", 100)
    monkeypatch.setattr(sv, "usable_cores", lambda: 4)
    data = make_class(15, levels=6)
    got = evaluate_class(*data)
    assert len(sv.SortedValues([np.asarray(data[2][~data[3]])]).runs) == 4
    for key, want in sklearn_metrics(*data).items():
        assert got[key] == pytest.approx(want, abs=1e-6), key
    assert got["AUPRO"] == pytest.approx(aupro_reference(data[2], data[3]), abs=1e-4)
    assert got["AUPRO@paper"] == pytest.approx(aupro_paper_reference(data[2], data[3]), abs=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_maps_are_sorted_on_the_device_and_agree():
    data = make_class(16, n=12, size=32, levels=12)
    want = evaluate_class(*data)
    acc = MetricAccumulator()
    acc.update(data[0], data[1], torch.from_numpy(data[2]).cuda(), torch.from_numpy(data[3]).cuda())
    got = acc.compute()
    assert acc._normal[0].is_cuda  # the normal pixels stayed on the device
    for key in ALL_KEYS:
        assert got[key] == pytest.approx(want[key], abs=1e-9, nan_ok=True), key

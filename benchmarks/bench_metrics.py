"""Benchmark the metrics package against the common research path, on the same synthetic maps.

    python benchmarks/bench_metrics.py                       # ours on all 15 classes, sklearn on 3
    python benchmarks/bench_metrics.py --sklearn-classes 15  # the full baseline (minutes)
    python benchmarks/bench_metrics.py --device cuda         # ours with the maps on the GPU

Data: 1,725 float32 maps 256x256 split into MVTec AD's 15 test classes (same image counts), smooth
(low-resolution noise upsampled bicubically) with a raised, blurred response on defect blobs; about
half the images carry 1-3 elliptic defect blobs. Generated class by class from fixed seeds, so each
method sees identical maps; generation time is not counted.

"ours": MetricAccumulator.update() on batches of 32, then compute(): all seven metrics plus the
two paper-era variants, exact. "sklearn path": roc_auc_score + average_precision_score on all
pixels of the class, precision_recall_curve for the pixel F1-max, the image metrics, and the
200-threshold-loop AUPRO of cflow / RD4AD / ADer-legacy code (binarise all maps per threshold, mean
region overlap, FPR). The loop here labels regions once per class with scipy instead of calling
skimage regionprops per threshold: it is faster than the original, so the speed-up is a lower bound.
Each method runs in its own process; peak RSS is that process's ru_maxrss (it includes the
interpreter, the libraries and the class's maps being fed in); "metric peak" is tracemalloc's peak
of allocations made inside the metric calls (numpy and python; torch CPU buffers are not traced).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time
import tracemalloc

import cv2
import numpy as np

MVTEC_TEST_COUNTS = {
    "bottle": 83, "cable": 150, "capsule": 132, "carpet": 117, "grid": 78, "hazelnut": 110, "leather": 124,
    "metal_nut": 115, "pill": 167, "screw": 160, "tile": 117, "toothbrush": 42, "transistor": 100,
    "wood": 79, "zipper": 151,
}
BATCH = 32


def make_class(index: int, n: int, size: int):
    """Deterministic synthetic class: scores, labels, maps (n, size, size) float32, masks bool."""
    rng = np.random.default_rng(1000 + index)
    maps = np.empty((n, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        low = rng.random((size // 16, size // 16)).astype(np.float32)
        m = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
        if rng.random() < 0.5:
            blob = np.zeros((size, size), dtype=np.uint8)
            for _ in range(rng.integers(1, 4)):
                center = tuple(int(c) for c in rng.integers(size // 8, size - size // 8, 2))
                axes = tuple(int(a) for a in rng.integers(3, size // 8, 2))
                cv2.ellipse(blob, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            masks[i] = blob > 0
            strength = rng.uniform(0.2, 1.0)  # some defects are easy, some hide in the noise
            m += strength * cv2.GaussianBlur(blob.astype(np.float32), (0, 0), 4)
        maps[i] = cv2.GaussianBlur(m, (0, 0), 4)  # the spec's sigma-4 smoothing
    scores = maps.reshape(n, -1).max(1)
    return scores, masks.reshape(n, -1).any(1), maps, masks


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ------------------------------------------------------------------ the two methods


def run_ours(classes, size, device, queue):
    from mambaad_cli.metrics import MetricAccumulator

    if device != "cpu":
        import torch  # only then: torch alone adds ~0.5 GB of RSS

    base = _rss_mb()
    results, seconds, traced_peak = {}, 0.0, 0
    for index, (name, n) in classes:
        scores, labels, maps, masks = make_class(index, n, size)
        if device != "cpu":
            maps_in = torch.from_numpy(maps).to(device)
            torch.cuda.synchronize()
        else:
            maps_in = maps
        tracemalloc.start()
        t0 = time.perf_counter()
        acc = MetricAccumulator()
        for s in range(0, n, BATCH):
            acc.update(scores[s:s + BATCH], labels[s:s + BATCH], maps_in[s:s + BATCH], masks[s:s + BATCH])
        results[name] = acc.compute()
        seconds += time.perf_counter() - t0
        traced_peak = max(traced_peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        del acc, maps_in
    queue.put({"seconds": seconds, "rss_mb": _rss_mb(), "base_mb": base, "traced_mb": traced_peak / 2**20,
               "results": results})


def cflow_aupro(masks, maps, max_step=200, expect_fpr=0.3):
    """The research-code AUPRO: uniform thresholds, FPR < 0.3 rescaled min-max, sklearn.auc."""
    from scipy import ndimage
    from sklearn.metrics import auc

    regions = []
    for i, mask in enumerate(masks):
        lab, k = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(i, np.nonzero(lab == r)) for r in range(1, k + 1)]
    inverse = ~masks
    n_inverse = inverse.sum()
    lo, hi = maps.min(), maps.max()
    pros, fprs = [], []
    binary = np.zeros_like(masks)
    for th in np.arange(lo, hi, (hi - lo) / max_step):
        np.greater(maps, th, out=binary)
        pros.append(np.mean([binary[i][rr, cc].sum() / rr.size for i, (rr, cc) in regions]))
        fprs.append(np.logical_and(inverse, binary).sum() / n_inverse)
    pros, fprs = np.array(pros), np.array(fprs)
    keep = fprs < expect_fpr
    f = fprs[keep]
    return auc((f - f.min()) / (f.max() - f.min()), pros[keep])


def run_sklearn(classes, size, queue):
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    base = _rss_mb()
    parts = {"auroc+ap": 0.0, "pr_curve": 0.0, "aupro_loop": 0.0, "image": 0.0}
    results = {}
    for index, (name, n) in classes:
        scores, labels, maps, masks = make_class(index, n, size)
        y, s = masks.ravel(), maps.ravel()
        t0 = time.perf_counter()
        res = {"P-AUROC": roc_auc_score(y, s), "P-AP": average_precision_score(y, s)}
        t1 = time.perf_counter()
        p, r, _ = precision_recall_curve(y, s)
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = 2 * p * r / (p + r)
        res["P-F1max"] = np.max(f1[np.isfinite(f1)])
        t2 = time.perf_counter()
        res["AUPRO@200"] = cflow_aupro(masks, maps)
        t3 = time.perf_counter()
        res["I-AUROC"] = roc_auc_score(labels, scores)
        res["I-AP"] = average_precision_score(labels, scores)
        t4 = time.perf_counter()
        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            parts[key] += dt
        results[name] = res
    queue.put({"parts": parts, "rss_mb": _rss_mb(), "base_mb": base, "results": results})


def in_process(target, *args):
    ctx = mp.get_context("spawn")  # a clean process: its ru_maxrss is its own
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


# ------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--sklearn-classes", type=int, default=3,
                    help="classes the sklearn path runs on (spread over small..large); 15 = all")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where ours receives the maps")
    args = ap.parse_args()

    classes = list(enumerate(MVTEC_TEST_COUNTS.items()))
    n_images = sum(MVTEC_TEST_COUNTS.values())
    by_size = sorted(classes, key=lambda c: c[1][1])
    k = max(1, min(args.sklearn_classes, len(classes)))
    picks = [round(j * (len(by_size) - 1) / (k - 1)) for j in range(k)] if k > 1 else [len(by_size) // 2]
    subset = sorted({by_size[p][0]: by_size[p] for p in picks}.values())
    sub_images = sum(c[1][1] for c in subset)
    scale = n_images / sub_images

    cores = len(os.sched_getaffinity(0))
    print(f"{n_images} maps {args.size}x{args.size} float32 in {len(classes)} classes "
          f"({n_images * args.size ** 2 / 1e6:.0f} M pixels); usable CPU cores: {cores}; "
          f"ours on {args.device}")
    ours = in_process(run_ours, classes, args.size, args.device)
    base = in_process(run_sklearn, subset, args.size)
    base_total = sum(base["parts"].values())

    extrap = "" if k == len(classes) else f", extrapolated x{scale:.2f} from {sub_images} images"
    print(f"sklearn path ran on {len(subset)} classes: {', '.join(c[1][0] for c in subset)}{extrap}")
    rows = [("ours (all 9 metrics, exact)", ours["seconds"], ours["rss_mb"], ours["base_mb"]),
            ("sklearn path, all 15 classes" + (" (extrapolated)" if extrap else ""), base_total * scale,
             base["rss_mb"], base["base_mb"])]
    print(f"\n{'method':<44}{'time s':>10}{'peak RSS MB':>13}{'RSS after imports':>19}")
    for name, sec, rss, b in rows:
        print(f"{name:<44}{sec:>10.2f}{rss:>13.0f}{b:>19.0f}")
    for part, sec in base["parts"].items():
        print(f"  sklearn {part:<34}{sec * scale:>10.2f}")
    print(f"speed-up: {base_total * scale / ours['seconds']:.1f}x   (AUROC+AP alone: "
          f"{base['parts']['auroc+ap'] * scale / ours['seconds']:.1f}x); "
          f"ours' traced metric peak: {ours['traced_mb']:.0f} MB")

    worst = {key: 0.0 for key in ("P-AUROC", "P-AP", "P-F1max", "I-AUROC", "I-AP")}
    for _, (name, _) in subset:
        for key in worst:
            worst[key] = max(worst[key], abs(ours["results"][name][key] - base["results"][name][key]))
    print("max |ours - sklearn| on those classes: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    print(f"{'class':<12}{'AUPRO exact':>12}{'AUPRO@paper':>12}{'200-loop':>10}")
    for _, (name, _) in subset:
        r = ours["results"][name]
        print(f"{name:<12}{r['AUPRO']:>12.4f}{r['AUPRO@paper']:>12.4f}{base['results'][name]['AUPRO@200']:>10.4f}")


if __name__ == "__main__":
    main()

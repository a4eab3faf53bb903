"""Streaming evaluation of one class: add batches with update(), get every metric with compute().

Memory: the accumulator keeps the class's pixel values as float32 (4 bytes a pixel, split into
normal and defect pixels as they arrive), the defect pixels' region areas (int32) and the image
scores. So memory is bounded by the largest class, not by the dataset: MVTec's largest class at
256x256 is 167 images = 11 M pixels = 44 MB; compute() adds one copy while concatenating and the
defect pixels' sort indices. The masks are not kept.
A tighter bound that stays exact is possible but not built: keep each batch sorted and merge the
batches at the end (k-way merge, spilling sorted runs to disk), or keep only the pixels whose rank
can still matter. Binning the maps into a histogram bounds memory but is not exact.

Device: maps that are torch tensors on an accelerator stay there; the normal pixels are sorted and
searched on the device (torch.sort / torch.searchsorted). CPU inputs (numpy or torch) use numpy.
"""

from __future__ import annotations

import numpy as np

from mambaad_cli.errors import UserError
from mambaad_cli.metrics.image import f1max_and_threshold, image_metrics
from mambaad_cli.metrics.keys import ALL_KEYS
from mambaad_cli.metrics.paper import paper_pixel_metrics
from mambaad_cli.metrics.pixel import Positives, exact_pixel_metrics
from mambaad_cli.metrics.regions import defect_pixel_areas
from mambaad_cli.metrics.sorted_values import SortedValues, is_torch_tensor

BACKENDS = ("auto", "numpy", "torch")
NOT_FINITE = (
    "anomaly maps contain NaN or infinite values (a model that diverged in training, or a 16-bit overflow "
    "when scoring in bf16: try --precision fp32, or MAMBAAD_ENCODER_FOLD=0 to score without the encoder's "
    "float16 copy)"
)


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if is_torch_tensor(x) else np.asarray(x)


def _as_bool(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.bool_ else x > 0.5


class MetricAccumulator:
    """Collects one class's batches; compute() returns the metrics of keys.ALL_KEYS.

    backend: "auto" (torch for maps on an accelerator, numpy otherwise), "numpy", or "torch"
    (torch on the maps' device, CPU included: useful to test that path without a GPU).
    """

    def __init__(self, backend: str = "auto"):
        if backend not in BACKENDS:
            raise UserError(f"metrics backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        self.backend = backend
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._normal: list = []  # float32 normal-pixel values per batch (numpy or torch)
        self._defect: list[np.ndarray] = []  # float32 defect-pixel values per batch
        self._areas: list[np.ndarray] = []  # int32 area of each defect pixel's region
        self._n_regions = 0

    def update(self, scores, labels, maps, masks) -> None:
        """scores (n,), labels (n,) bool/0-1, maps (n, H, W) float, masks (n, H, W) bool/0-1."""
        scores, labels = _to_numpy(scores).reshape(-1), _as_bool(_to_numpy(labels).reshape(-1))
        masks = _as_bool(_to_numpy(masks))
        _check_shapes(scores, labels, maps, masks)
        on_device = is_torch_tensor(maps) and (self.backend == "torch" or
                                               (self.backend == "auto" and maps.device.type != "cpu"))
        if on_device:
            import torch

            maps = maps.detach().float()
            if not bool(torch.isfinite(maps).all()):
                raise UserError(NOT_FINITE)
            dev_masks = torch.from_numpy(masks).to(maps.device)
            self._normal.append(maps[~dev_masks])
            defect = maps[dev_masks].cpu().numpy()
        else:
            maps = _to_numpy(maps).astype(np.float32, copy=False)
            if not np.isfinite(maps).all():
                raise UserError(NOT_FINITE)
            self._normal.append(maps[~masks])
            defect = maps[masks]
        self._defect.append(defect)
        for mask in masks:
            if mask.any():
                areas, n_regions = defect_pixel_areas(mask)
                self._areas.append(areas)
                self._n_regions += n_regions
        self._scores.append(scores)
        self._labels.append(labels)

    def compute(self) -> dict[str, float]:
        """All metrics of the batches so far (more batches may follow; compute again then)."""
        scores, labels = self._image_arrays()
        normal = SortedValues(self._normal)
        self._normal = list(normal.runs)  # keep the sorted runs: a later compute re-sorts cheaply
        defect = Positives.from_pixels(_cat(self._defect, np.float32), _cat(self._areas, np.int32),
                                       self._n_regions)
        result = {**image_metrics(scores, labels), **exact_pixel_metrics(defect, normal),
                  **paper_pixel_metrics(defect, normal)}
        return {k: result[k] for k in ALL_KEYS}

    def counts(self) -> dict[str, int]:
        _, labels = self._image_arrays()
        return {"images": int(labels.size), "normal": int((~labels).sum()), "defective": int(labels.sum()),
                "regions": self._n_regions, "defect_pixels": sum(a.size for a in self._defect),
                "normal_pixels": sum(int(v.shape[0]) for v in self._normal)}

    def score_stats(self) -> dict[str, float]:
        """Image-score statistics per label and the oracle F1-max threshold (nan where undefined)."""
        scores, labels = self._image_arrays()
        stats: dict[str, float] = {}
        for name, sel in (("normal", ~labels), ("defective", labels)):
            part = scores[sel].astype(np.float64)
            for stat, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max)):
                stats[f"{name}_{stat}"] = float(fn(part)) if part.size else float("nan")
        both = labels.any() and not labels.all()
        stats["f1max_threshold"] = f1max_and_threshold(scores, labels)[1] if both else float("nan")
        return stats

    def image_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32, labels bool) of every image so far, in the order they were added."""
        return _cat(self._scores, np.float32), _cat(self._labels, np.bool_)

    def _image_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return _cat(self._scores, np.float64), _cat(self._labels, np.bool_)

    # ----------------------------------------------------------------- merging (distributed evaluation)

    def state(self) -> dict[str, np.ndarray | int]:
        """Everything collected so far as CPU numpy arrays: what one process sends to be merged."""
        return {"scores": _cat(self._scores, np.float32), "labels": _cat(self._labels, np.bool_),
                "normal": _cat([_to_numpy(v) for v in self._normal], np.float32),
                "defect": _cat(self._defect, np.float32), "areas": _cat(self._areas, np.int32),
                "n_regions": self._n_regions}

    @classmethod
    def from_states(cls, states: list[dict], backend: str = "auto", device=None) -> MetricAccumulator:
        """One accumulator holding the states in order: equal to one accumulator fed the batches of the
        first state, then the second's, ... (the same arrays, so compute() gives the same numbers).
        device: an accelerator to sort the normal pixels on (torch), as update() does with maps there."""
        acc = cls(backend)
        for s in states:
            normal = s["normal"]
            if device is not None and getattr(device, "type", "cpu") != "cpu":
                import torch

                normal = torch.from_numpy(normal).to(device)
            acc._normal.append(normal)
            acc._scores.append(s["scores"])
            acc._labels.append(s["labels"])
            acc._defect.append(s["defect"])
            acc._areas.append(s["areas"])
            acc._n_regions += int(s["n_regions"])
        return acc


def evaluate_class(scores, labels, maps, masks) -> dict[str, float]:
    """The seven metrics (keys.METRIC_KEYS) and the paper-era variants (keys.PAPER_KEYS) of one class.

    scores (n,), labels (n,), maps (n, H, W) float32, masks (n, H, W) bool/0-1: numpy arrays or
    torch tensors. Fractions in [0, 1]; nan where a metric is undefined: image metrics when the class
    has one image label only, pixel metrics when it has no defect or no normal pixel."""
    acc = MetricAccumulator()
    acc.update(scores, labels, maps, masks)
    return acc.compute()


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype=dtype)


def _check_shapes(scores: np.ndarray, labels: np.ndarray, maps, masks: np.ndarray) -> None:
    n = scores.shape[0]
    if len(maps.shape) != 3 or tuple(maps.shape) != masks.shape or labels.shape[0] != n or maps.shape[0] != n:
        raise UserError(f"metrics input shapes disagree: scores {tuple(scores.shape)}, labels "
                        f"{tuple(labels.shape)}, maps {tuple(maps.shape)}, masks {masks.shape}; "
                        f"expected (n,), (n,), (n, H, W), (n, H, W)")

"""`predict`: anomaly scores, heat-map overlays and masks for any images, with a trained run.

Preprocessing and scoring are eval's: read_image -> image_to_tensor(image_size) -> model ->
anomaly_map(sigma) -> image_scores (max of the map at the model's resolution), so an image gets the
same score from predict as from eval. The map is then resized (bilinear) to the image's own size
for the overlay, the mask (map >= threshold) and the optional .npy.

Verdict: "anomalous" when score >= threshold. The threshold of an image is its class's threshold
from model.json; the class is --class, or the class folder of the model's data root the image lies
under; an image of unknown class gets the mean of the per-class thresholds (and the widest of the
per-class colour scales).
"""

from __future__ import annotations

import csv
import glob
import io
import math
import os
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

from mambaad_cli.atomic import write_text, write_with
from mambaad_cli.config import PRECISIONS, Config
from mambaad_cli.data.demo import default_demo_root
from mambaad_cli.data.errors import DataError
from mambaad_cli.data.imageio import is_image_file, read_image, write_png
from mambaad_cli.data.resize import image_to_tensor
from mambaad_cli.engine.checkpoint import load_model
from mambaad_cli.engine.device import resolve_device
from mambaad_cli.engine.progress import make_progress
from mambaad_cli.engine.runs import LATEST, resolve_run_dir
from mambaad_cli.engine.scoring import make_scorer
from mambaad_cli.errors import UserError
from mambaad_cli.model import image_scores
from mambaad_cli.viz.overlay import PREDICTED_OUTLINE, heat_overlay

CSV_COLUMNS = ["path", "class", "score", "threshold", "verdict", "overlay", "mask", "map"]
ANOMALOUS, NORMAL = "anomalous", "normal"


# --------------------------------------------------------------------------- thresholds and colour scales


@dataclass
class Calibration:
    """Per-class thresholds and colour scales of a run (model.json), with fallbacks for older runs."""

    thresholds: dict[str, float]
    sources: dict[str, str]
    ranges: dict[str, tuple[float, float]]

    @classmethod
    def from_model_json(cls, info: dict[str, Any]) -> Calibration:
        stats = info.get("score_stats") or {}
        names = list(info.get("class_names") or []) or sorted(set(info.get("thresholds") or {}) | set(stats))
        thresholds, sources, ranges = {}, {}, {}
        for name in names:
            thr, source = _class_threshold(info, stats.get(name) or {}, name)
            if thr is not None:
                thresholds[name], sources[name] = thr, source
            rng = (info.get("map_range") or {}).get(name)
            if rng and len(rng) == 2 and all(_finite(v) for v in rng) and rng[1] > rng[0]:
                ranges[name] = (float(rng[0]), float(rng[1]))
            elif thr is not None:
                ranges[name] = (0.0, 1.5 * thr if thr > 0 else 1.0)
        return cls(thresholds, sources, ranges)

    def threshold(self, cls_name: str) -> float:
        """The class's threshold; an unknown class ("") gets the mean of the per-class thresholds."""
        if cls_name in self.thresholds:
            return self.thresholds[cls_name]
        if not cls_name and self.thresholds:
            return float(np.mean(list(self.thresholds.values())))
        what = f"class {cls_name!r}" if cls_name else "any class"
        raise UserError(f"model.json has no threshold for {what}: pass --threshold VALUE")

    def map_range(self, cls_name: str) -> tuple[float, float]:
        """The class's colour scale; an unknown class gets the span of all classes' scales."""
        if cls_name in self.ranges:
            return self.ranges[cls_name]
        if self.ranges:
            return min(r[0] for r in self.ranges.values()), max(r[1] for r in self.ranges.values())
        return (0.0, 1.0)

    def with_threshold(self, value: float, class_names: Sequence[str]) -> Calibration:
        """Every class (and unknown ones) at one user-given threshold; the colour scales stay the model's."""
        ranges = dict(self.ranges)
        for name in class_names:
            ranges.setdefault(name, (0.0, 1.5 * value if value > 0 else 1.0))
        return Calibration(
            {n: value for n in class_names} | {"": value}, {n: "--threshold" for n in class_names}, ranges
        )


NOT_FINITE_MAP = ("its anomaly map is not finite (a 16-bit overflow? try --precision fp32, or "
                  "MAMBAAD_ENCODER_FOLD=0 to score without the encoder's float16 copy)")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _class_threshold(info: dict[str, Any], stats: dict[str, Any], name: str) -> tuple[float | None, str]:
    """model.json's threshold; for runs without one, the oracle F1-max threshold of the last evaluation,
    else normal mean + 3 std of its scores."""
    thr = (info.get("thresholds") or {}).get(name)
    if _finite(thr):
        source = (info.get("threshold_info") or {}).get(name) or {}
        return float(thr), str(source.get("rule") or source.get("source") or "model.json")
    if _finite(stats.get("f1max_threshold")):
        return float(stats["f1max_threshold"]), "F1-max on the test split (no calibrated threshold)"
    if _finite(stats.get("normal_mean")) and _finite(stats.get("normal_std")):
        return float(stats["normal_mean"] + 3 * stats["normal_std"]), "normal mean + 3 std (test split)"
    return None, ""


def parse_threshold(text: str | float | None) -> float | None:
    """--threshold: "auto" (None: model.json's per-class thresholds) or a number."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "auto"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--threshold {text}: expected auto or a number") from None
    if not math.isfinite(value):
        raise UserError(f"--threshold {text}: expected a finite number")
    return value


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputImage:
    path: Path  # the file
    name: Path  # output name without suffix, relative to --out (mirrors the input's folders)


def collect_images(inputs: Sequence[str | Path], exclude: Path | None = None) -> list[InputImage]:
    """Image files from files, folders (recursive) and glob patterns, in order, without duplicates.

    A file given by name is taken whatever its extension (an unreadable one is reported later);
    folders and globs contribute image files only. `exclude`: a folder to skip (the output folder)."""
    found: list[InputImage] = []
    seen: set[Path] = set()
    used_names: set[Path] = set()
    skip = exclude.resolve() if exclude is not None else None

    def add(path: Path, name: Path) -> None:
        real = path.resolve()
        if real in seen or (skip is not None and real.is_relative_to(skip)):
            return
        seen.add(real)
        stem, n = name.with_suffix(""), 1
        while stem in used_names:  # the same relative name from two inputs
            n += 1
            stem = name.with_suffix("").with_name(f"{name.stem}-{n}")
        used_names.add(stem)
        found.append(InputImage(path, stem))

    def add_folder(folder: Path, base: Path) -> None:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and is_image_file(p):
                add(p, p.relative_to(base))

    for item in inputs:
        text = str(item)
        p = Path(text).expanduser()
        if p.is_file():
            add(p, Path(p.name))
        elif p.is_dir():
            add_folder(p, p)
        elif glob.has_magic(text):
            base = _glob_base(Path(text).expanduser())
            for match in sorted(glob.glob(str(Path(text).expanduser()), recursive=True)):
                m = Path(match)
                if m.is_dir():
                    add_folder(m, base)
                elif m.is_file() and is_image_file(m):
                    add(m, m.relative_to(base) if m.is_relative_to(base) else Path(m.name))
        else:
            raise UserError(f"input not found: {text}")
    return found


def _glob_base(pattern: Path) -> Path:
    """The folder part of a glob pattern before its first wildcard."""
    parts = []
    for part in pattern.parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def class_of(path: Path, data_root: Path | None, class_names: Sequence[str]) -> str:
    """The class folder of the model's data root that `path` lies under, else ""."""
    if data_root is None:
        return ""
    try:
        rel = path.resolve().relative_to(data_root)
    except ValueError:
        return ""
    return rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] in class_names else ""


def data_root_of(cfg: Config) -> Path | None:
    root = (
        default_demo_root()
        if cfg.data.dataset == "demo" and cfg.data.root in ("", "demo")
        else Path(cfg.data.root).expanduser()
    )
    try:
        return root.resolve()
    except OSError:
        return None


def default_run(runs_dir: Path = Path("runs")) -> Path:
    """The newest runs/<preset>/latest, for `predict` without --model."""
    candidates = [p for p in runs_dir.glob(f"*/{LATEST}") if (p / "model.json").is_file()]
    if not candidates:
        raise UserError(
            f"no --model given and no trained run under {runs_dir}/ (train one, or pass --model RUN)"
        )
    return max(candidates, key=lambda p: (p / "model.json").stat().st_mtime)


# --------------------------------------------------------------------------- loading


class _ImageFiles(Dataset):
    """(index, original RGB image or None, model input tensor or None, error message or None)."""

    def __init__(self, items: list[InputImage], image_size: int):
        self.items, self.image_size = items, image_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        try:
            image = read_image(self.items[index].path)
        except DataError as e:
            return index, None, None, str(e)
        return index, image, image_to_tensor(image, self.image_size), None


def _as_list(batch: list) -> list:
    """collate_fn: keep the samples as they are (module level, so workers can pickle it)."""
    return batch


# --------------------------------------------------------------------------- predict


@dataclass
class Prediction:
    path: str
    cls_name: str
    score: float
    threshold: float
    verdict: str
    overlay: str
    mask: str
    map: str = ""


@dataclass
class PredictResult:
    out_dir: Path
    run_dir: Path
    predictions: list[Prediction] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0
    device: str = "cpu"

    @property
    def images_per_s(self) -> float:
        return len(self.predictions) / max(self.seconds, 1e-9)


def resize_map(amap: np.ndarray, height: int, width: int) -> np.ndarray:
    """A float32 map resized (bilinear) to (height, width)."""
    if amap.shape == (height, width):
        return amap
    return cv2.resize(amap, (width, height), interpolation=cv2.INTER_LINEAR)


def predict(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    run: str | Path | None = None,
    threshold: str | float | None = "auto",
    class_name: str | None = None,
    save_maps: bool = False,
    device: str | None = None,
    batch_size: int | None = None,
    num_workers: int = 0,
    show_progress: bool = True,
    precision: str | None = None,
    writers: int | None = None,
    cuda_graphs: bool | str | None = None,
) -> PredictResult:
    """Score every image of `inputs`; write DIR/scores.csv and per image an overlay and a mask PNG
    (and a float16 .npy map with save_maps). Unreadable images are skipped and listed. ``precision``
    (fp32 | tf32 | bf16) defaults to the run's eval.precision. ``writers``: threads that resize the maps
    and write the PNGs while the next batch is scored (default: up to 8, one per CPU core).
    ``cuda_graphs`` (auto | True | False) defaults to the run's eval.cuda_graphs: on a GPU, full batches
    are scored by replaying a CUDA graph from the fourth on, as eval scores."""
    run_dir = resolve_run_dir(run if run is not None else default_run())
    if precision not in (None, *PRECISIONS):
        raise UserError(f"--precision {precision}: expected {', '.join(PRECISIONS)}")
    if writers is not None and writers < 1:
        raise UserError(f"--writers {writers}: expected 1 or more")
    fixed = parse_threshold(threshold)
    out = Path(out_dir)
    items = collect_images(inputs, exclude=out)
    if not items:
        raise UserError(f"no images found in {', '.join(str(i) for i in inputs)}")

    torch_device = resolve_device(device or "auto")
    model, cfg, info = load_model(run_dir, torch_device)
    # eval's own scoring (engine/scoring.py), in the chosen precision. Graphed as eval's: with the outputs
    # written by threads, scoring small images one eager batch at a time could set predict's pace on a GPU
    cfg.eval.precision = precision or cfg.eval.precision
    cfg.eval.cuda_graphs = cfg.eval.cuda_graphs if cuda_graphs is None else cuda_graphs
    scorer = make_scorer(model, cfg, torch_device)
    class_names = list(info.get("class_names") or [])
    if class_name and class_name not in class_names:
        raise UserError(f"--class {class_name}: not a class of this model ({', '.join(class_names)})")
    calib = Calibration.from_model_json(info)
    if fixed is not None:
        calib = calib.with_threshold(fixed, class_names)
    elif not calib.thresholds:
        raise UserError(f"{run_dir / 'model.json'} has no thresholds: pass --threshold VALUE")
    root = data_root_of(cfg)
    size = cfg.data.image_size

    result = PredictResult(out_dir=out, run_dir=run_dir, device=str(torch_device))
    batch_size = batch_size or cfg.eval.batch_size
    loader = DataLoader(
        _ImageFiles(items, size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_as_list,
    )
    # The outputs of an image (a full-size map, an overlay and a mask PNG) took about a third of predict's
    # time for 1024x1024 images on 2 CPU cores, and would be nearly all of it behind a GPU: threads write
    # them (OpenCV and NumPy release the GIL) while the next batch is scored. In input order.
    writers = writers or min(8, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(writers, thread_name_prefix="predict-writer") if writers > 1 else None
    pending: deque[Future] = deque()
    in_flight = max(4 * writers, 2 * batch_size)  # a bound on the maps and images held for the writers
    start = time.perf_counter()
    try:
        with make_progress(show_progress) as progress, torch.inference_mode():
            task = progress.add_task("predict", total=len(items), extra="")
            for batch in loader:
                good = [b for b in batch if b[3] is None]
                result.skipped += [(str(items[b[0]].path), b[3]) for b in batch if b[3] is not None]
                if good:
                    images = torch.stack([b[2] for b in good]).to(torch_device)
                    maps = scorer(images)
                    maps_np, scores = maps.cpu().numpy(), image_scores(maps).cpu().numpy()
                    for (index, image, _, _), amap, score in zip(good, maps_np, scores, strict=True):
                        item = items[index]
                        if not np.isfinite(amap).all():  # no verdict from NaN (NaN >= threshold is False)
                            result.skipped.append((str(item.path), NOT_FINITE_MAP))
                            continue
                        cls_name = class_name or class_of(item.path, root, class_names)
                        args = (item, image, amap, float(score), cls_name, calib, out, save_maps)
                        if pool is None:
                            result.predictions.append(_write_outputs(*args))
                            continue
                        pending.append(pool.submit(_write_outputs, *args))
                        while len(pending) > in_flight:
                            result.predictions.append(pending.popleft().result())
                progress.update(
                    task, advance=len(batch), extra=f"{len(result.skipped)} skipped" if result.skipped else ""
                )
            while pending:  # a failed write raises here, as it would have in the loop
                result.predictions.append(pending.popleft().result())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # files being written land whole (atomic writes)
    result.seconds = time.perf_counter() - start
    if not result.predictions:
        raise UserError(f"no readable images among {len(items)} input file(s): {result.skipped[0][1]}")
    write_text(out / "scores.csv", scores_csv(result.predictions))
    if result.skipped:
        write_text(out / "skipped.csv", rows_csv(["path", "reason"], result.skipped))
    return result


def _write_outputs(
    item: InputImage,
    image: np.ndarray,
    amap: np.ndarray,
    score: float,
    cls_name: str,
    calib: Calibration,
    out: Path,
    save_maps: bool,
) -> Prediction:
    threshold = calib.threshold(cls_name)
    lo, hi = calib.map_range(cls_name)
    full = resize_map(amap, *image.shape[:2])
    mask = full >= threshold
    names = {kind: item.name.with_name(f"{item.name.name}_{kind}") for kind in ("overlay", "mask", "map")}
    overlay_path = names["overlay"].with_suffix(".png")
    mask_path = names["mask"].with_suffix(".png")
    write_png(out / overlay_path, heat_overlay(image, full, lo, hi, outlines=[(mask, PREDICTED_OUTLINE)]))
    write_png(out / mask_path, mask)
    map_path = ""
    if save_maps:
        map_path = str(names["map"].with_suffix(".npy"))
        write_with(out / map_path, lambda tmp: _save_npy(tmp, full.astype(np.float16)))
    return Prediction(
        path=str(item.path),
        cls_name=cls_name,
        score=score,
        threshold=threshold,
        verdict=ANOMALOUS if score >= threshold else NORMAL,
        overlay=str(overlay_path),
        mask=str(mask_path),
        map=map_path,
    )


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append .npy to the temporary name
        np.save(f, array)


def rows_csv(header: list[str], rows: list[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def scores_csv(predictions: list[Prediction]) -> str:
    return rows_csv(
        CSV_COLUMNS,
        [
            [p.path, p.cls_name, f"{p.score:.6f}", f"{p.threshold:.6f}", p.verdict, p.overlay, p.mask, p.map]
            for p in predictions
        ],
    )


def summary_table(result: PredictResult) -> Table:
    """Per class (unknown: "-"): images, anomalous, score range, threshold."""
    table = Table(
        title=f"predict: {len(result.predictions)} images, {result.images_per_s:.1f} images/s "
        f"({result.device})",
        title_justify="left",
    )
    for col, justify in (
        ("class", "left"),
        ("images", "right"),
        ("anomalous", "right"),
        ("min score", "right"),
        ("max score", "right"),
        ("threshold", "right"),
    ):
        table.add_column(col, justify=justify, style="cyan" if col == "class" else None)
    by_class: dict[str, list[Prediction]] = {}
    for p in result.predictions:
        by_class.setdefault(p.cls_name, []).append(p)
    for name in sorted(by_class):
        preds = by_class[name]
        scores = [p.score for p in preds]
        thresholds = sorted({round(p.threshold, 6) for p in preds})
        table.add_row(
            name or "-",
            str(len(preds)),
            str(sum(p.verdict == ANOMALOUS for p in preds)),
            f"{min(scores):.4f}",
            f"{max(scores):.4f}",
            f"{thresholds[0]:.4f}" if len(thresholds) == 1 else "various",
        )
    if result.skipped:
        table.add_section()
        table.add_row("unreadable", str(len(result.skipped)), "", "", "", "", style="red")
    return table

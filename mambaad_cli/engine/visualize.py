"""`visualize`: an HTML report of a run on its test split (curves, histograms, worst cases, metrics).

The test split is scored again with eval's preprocessing and anomaly_map. Memory stays bounded: per
image only the score, label and path are kept; per class the `worst` highest-scoring normal images
and lowest-scoring defective images keep their maps (float16, at the model's resolution).
"""

from __future__ import annotations

import heapq
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from mambaad_cli import __version__
from mambaad_cli.atomic import write_text
from mambaad_cli.data import build_datasets
from mambaad_cli.engine.checkpoint import load_model
from mambaad_cli.engine.device import resolve_device
from mambaad_cli.engine.predict import ANOMALOUS, NORMAL, Calibration, rows_csv
from mambaad_cli.engine.progress import make_progress
from mambaad_cli.engine.runs import resolve_run_dir
from mambaad_cli.engine.scoring import indices_by_class, make_scorer, score_batches
from mambaad_cli.errors import UserError
from mambaad_cli.viz.overlay import PREDICTED_OUTLINE, TRUTH_OUTLINE, heat_overlay, side_by_side
from mambaad_cli.viz.report import ClassSection, Report, Tile, render_report

REPORT_DIR = "report"


@dataclass
class _Case:
    """A test image kept for the worst-cases grid."""

    score: float
    image: np.ndarray  # uint8 RGB at the model's resolution
    amap: np.ndarray  # float16
    mask: np.ndarray  # bool ground truth
    path: str
    defect: str


class WorstCases:
    """The k images with the largest `key`, in a heap (only k maps are held at a time)."""

    def __init__(self, k: int):
        self.k = k
        self._heap: list[tuple[float, int, _Case]] = []
        self._counter = itertools.count()

    def wants(self, key: float) -> bool:
        """Whether an image with this key would enter (check before building its case: no copies)."""
        return self.k > 0 and (len(self._heap) < self.k or key > self._heap[0][0])

    def add(self, key: float, case: _Case) -> None:
        item = (key, next(self._counter), case)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def worst_first(self) -> list[_Case]:
        return [c for _, _, c in sorted(self._heap, key=lambda e: (-e[0], e[1]))]


@dataclass
class VisualizeResult:
    report_path: Path
    scores_path: Path
    sections: list[ClassSection]
    seconds: float


def _to_uint8_image(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def _short(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


def _tile(case: _Case, threshold: float | None, lo: float, hi: float, is_error: bool, root: Path) -> Tile:
    amap = case.amap.astype(np.float32)
    outlines = [(case.mask, TRUTH_OUTLINE)]
    if threshold is not None:
        outlines.append((amap >= threshold, PREDICTED_OUTLINE))
    picture = side_by_side(case.image, heat_overlay(case.image, amap, lo, hi, outlines=outlines))
    caption = f"score {case.score:.4g} · {case.defect} · {_short(case.path, root)}"
    return Tile(picture=picture, caption=caption, is_error=is_error)


@torch.inference_mode()
def score_test_split(
    model, test_ds, cfg, device, calib: Calibration, worst: int = 4, show_progress: bool = True
) -> tuple[list[ClassSection], list[list]]:
    """Per class: a ClassSection (scores, labels, worst cases as tiles); and one CSV row per image."""
    sections, rows = [], []
    with make_progress(show_progress) as progress:
        task = progress.add_task("visualize", total=len(test_ds), extra="")
        scorer = make_scorer(model, cfg, device)  # one for all classes: a CUDA graph captured once
        for cls_name, indices in indices_by_class(test_ds).items():
            threshold = calib.thresholds.get(cls_name)
            lo, hi = calib.map_range(cls_name)
            scores, labels = [], []
            high_normal, low_defect = WorstCases(worst), WorstCases(worst)
            for sb in score_batches(model, test_ds, cfg, device, indices, scorer):
                batch, maps, masks = sb.batch, sb.maps, sb.masks
                for j, (score, label) in enumerate(zip(sb.scores.tolist(), sb.labels.tolist(), strict=True)):
                    scores.append(score)
                    labels.append(label)
                    verdict = "" if threshold is None else (ANOMALOUS if score >= threshold else NORMAL)
                    rows.append(
                        [
                            batch["path"][j],
                            cls_name,
                            batch["defect"][j],
                            int(label),
                            f"{score:.6f}",
                            "" if threshold is None else f"{threshold:.6f}",
                            verdict,
                        ]
                    )
                    # worst false negatives: lowest defective scores; worst false positives: highest normal
                    keep, key = (low_defect, -score) if label else (high_normal, score)
                    if keep.wants(key):
                        keep.add(
                            key,
                            _Case(
                                score,
                                _to_uint8_image(batch["image"][j]),
                                maps[j].float().cpu().numpy().astype(np.float16),
                                masks[j].numpy(),
                                batch["path"][j],
                                batch["defect"][j],
                            ),
                        )
                progress.update(task, advance=len(sb.scores), extra=cls_name)
            s, y = np.asarray(scores, np.float64), np.asarray(labels, bool)
            root = Path(test_ds.root)
            sections.append(
                ClassSection(
                    name=cls_name,
                    scores=s,
                    labels=y,
                    threshold=threshold,
                    threshold_source=calib.sources.get(cls_name, "none"),
                    map_range=(lo, hi),
                    highest_normal=[
                        _tile(c, threshold, lo, hi, threshold is not None and c.score >= threshold, root)
                        for c in high_normal.worst_first()
                    ],
                    lowest_defective=[
                        _tile(c, threshold, lo, hi, threshold is not None and c.score < threshold, root)
                        for c in low_defect.worst_first()
                    ],
                )
            )
    return sections, rows


def _facts(run_dir: Path, cfg, info: dict) -> list[tuple[str, str]]:
    enc = cfg.model.encoder
    dec = cfg.model.decoder
    trained = f"{info.get('epoch', '?')} epoch(s), {info.get('step', '?')} steps"
    if info.get("train_seconds") is not None:
        trained += f", {info['train_seconds']:.0f} s"
    return [
        ("run", str(run_dir)),
        ("dataset", f"{cfg.data.dataset} ({cfg.data.root or 'generated demo set'})"),
        ("preset", cfg.preset),
        ("image size", f"{cfg.data.image_size} x {cfg.data.image_size}, Gaussian sigma {cfg.eval.sigma}"),
        ("encoder", f"{enc.name} ({enc.weights})"),
        ("decoder", f"depths {dec.depths}, {dec.scan} scan, {dec.directions} directions"),
        ("trained", trained),
        (
            "mambaad",
            f"{info.get('version', '?')} (report by {__version__}, {time.strftime('%Y-%m-%d %H:%M')})",
        ),
    ]


def visualize_run(
    run: str | Path,
    out_dir: str | Path | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    worst: int = 4,
    show_progress: bool = True,
) -> VisualizeResult:
    """Score the run's test split and write OUT/report.html (self-contained) and OUT/test_scores.csv;
    OUT defaults to RUN/report."""
    start = time.perf_counter()
    run_dir = resolve_run_dir(run)
    torch_device = resolve_device(device or "auto")
    model, cfg, info = load_model(run_dir, torch_device)
    if batch_size:
        cfg.eval.batch_size = int(batch_size)
    _, test_ds, _ = build_datasets(cfg.data)
    if len(test_ds) == 0:
        raise UserError(f"{run_dir}: the test split of {cfg.data.root or cfg.data.dataset} is empty")
    calib = Calibration.from_model_json(info)
    sections, rows = score_test_split(model, test_ds, cfg, torch_device, calib, worst, show_progress)

    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    config_path = run_dir / "config.yaml"
    report = Report(
        title=f"MambaAD report: {cfg.preset} / {run_dir.name}",
        facts=_facts(run_dir, cfg, info),
        metrics=metrics,
        sections=sections,
        config_yaml=config_path.read_text() if config_path.is_file() else cfg.to_yaml(),
    )
    out = Path(out_dir) if out_dir is not None else run_dir / REPORT_DIR
    report_path, scores_path = out / "report.html", out / "test_scores.csv"
    write_text(
        scores_path, rows_csv(["path", "class", "defect", "label", "score", "threshold", "verdict"], rows)
    )
    write_text(report_path, render_report(report))
    return VisualizeResult(report_path, scores_path, sections, time.perf_counter() - start)


def summary_table(result: VisualizeResult) -> Table:
    """Per class: test images, threshold, errors at the threshold, image AUROC of the recomputed scores."""
    from sklearn.metrics import roc_auc_score

    table = Table(title=f"visualize: {result.report_path}", title_justify="left")
    for col in ("class", "normal", "defective", "threshold", "FP", "FN", "I-AUROC %"):
        table.add_column(
            col, justify="left" if col == "class" else "right", style="cyan" if col == "class" else None
        )
    for sec in result.sections:
        fp, fn = sec.errors
        both = sec.labels.any() and not sec.labels.all()
        auroc = f"{100 * roc_auc_score(sec.labels, sec.scores):.1f}" if both else "n/a"
        thr = "n/a" if sec.threshold is None else f"{sec.threshold:.4g}"
        table.add_row(
            sec.name, str(int((~sec.labels).sum())), str(int(sec.labels.sum())), thr, str(fp), str(fn), auroc
        )
    return table

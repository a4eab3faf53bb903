"""The HTML report of a run: one self-contained file (images as base64 PNG, plots as inline SVG).

Sections: the run's facts, the metrics table (metrics.json), per class the image-level ROC and
precision-recall curves and the score histograms with the threshold, the normal images with the
highest scores and the defective images with the lowest (false positives / negatives at the
threshold are marked), and the resolved config.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from html import escape
from typing import Any

import cv2
import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from mambaad_cli.metrics import METRIC_KEYS
from mambaad_cli.viz.colormap import colorbar
from mambaad_cli.viz.plots import histogram_svg, pr_svg, roc_svg


@dataclass
class Tile:
    """One image of the worst-cases grid: the image and its overlay side by side."""

    picture: np.ndarray  # uint8 RGB
    caption: str
    is_error: bool  # a false positive / false negative at the threshold


@dataclass
class ClassSection:
    name: str
    scores: np.ndarray  # image scores of the class's test images
    labels: np.ndarray  # bool, True = defective
    threshold: float | None
    threshold_source: str
    map_range: tuple[float, float]
    highest_normal: list[Tile] = field(default_factory=list)  # worst false positives first
    lowest_defective: list[Tile] = field(default_factory=list)  # worst false negatives first

    @property
    def errors(self) -> tuple[int, int]:
        """(false positives, false negatives) at the threshold."""
        if self.threshold is None:
            return 0, 0
        predicted = self.scores >= self.threshold
        return int((predicted & ~self.labels).sum()), int((~predicted & self.labels).sum())


@dataclass
class Report:
    title: str
    facts: list[tuple[str, str]]
    metrics: dict[str, Any] | None  # the metrics.json payload
    sections: list[ClassSection]
    config_yaml: str


def png_data_uri(rgb: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)
    if not ok:
        raise ValueError("could not encode a PNG for the report")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _pct(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "<span class='na'>n/a</span>"
    return f"{100 * float(v):.1f}"


def _num(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.4g}"


def class_plots(section: ClassSection) -> list[str]:
    """ROC, precision-recall and histogram SVGs of one class (scikit-learn computes the curves)."""
    y, s = section.labels.astype(int), section.scores
    both = bool(y.any() and not y.all())
    if both:
        fpr, tpr, _ = roc_curve(y, s)
        precision, recall, _ = precision_recall_curve(y, s)
        roc = roc_svg(fpr, tpr, roc_auc_score(y, s), title="Image ROC")
        pr = pr_svg(
            recall,
            precision,
            average_precision_score(y, s),
            float(y.mean()),
            title="Image precision-recall",
        )
    else:
        roc, pr = (
            roc_svg(None, None, None, "Image ROC"),
            pr_svg(None, None, None, None, "Image precision-recall"),
        )
    hist = histogram_svg(s[~section.labels], s[section.labels], section.threshold, title="Image scores")
    return [roc, pr, hist]


def _metric_columns(metrics: dict[str, Any]) -> list[str]:
    present = {k for row in metrics.get("classes", {}).values() for k in (row or {})}
    return [*METRIC_KEYS, *(k for k in ("I-F1@thr",) if k in present)]


def metrics_table_html(report: Report) -> str:
    metrics = report.metrics
    cols = _metric_columns(metrics) if metrics else []
    head = "".join(
        f"<th>{escape(c)}</th>" for c in ["class", "normal", "defective", *cols, "threshold", "FP", "FN"]
    )
    rows = []
    for sec in report.sections:
        row = (metrics or {}).get("classes", {}).get(sec.name) or {}
        fp, fn = sec.errors
        cells = [
            f"<td class='name'><a href='#cls-{escape(sec.name)}'>{escape(sec.name)}</a></td>",
            f"<td>{int((~sec.labels).sum())}</td>",
            f"<td>{int(sec.labels.sum())}</td>",
            *(f"<td>{_pct(row.get(c))}</td>" for c in cols),
            f"<td>{_num(sec.threshold)}</td>",
            f"<td class='{'bad' if fp else ''}'>{fp}</td>",
            f"<td class='{'bad' if fn else ''}'>{fn}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if metrics:
        mean = metrics.get("mean") or {}
        n_normal = sum(int((~s.labels).sum()) for s in report.sections)
        n_defect = sum(int(s.labels.sum()) for s in report.sections)
        fps = sum(s.errors[0] for s in report.sections)
        fns = sum(s.errors[1] for s in report.sections)
        rows.append(
            "<tr class='mean'><td class='name'>mean</td>"
            f"<td>{n_normal}</td><td>{n_defect}</td>"
            + "".join(f"<td>{_pct(mean.get(c))}</td>" for c in cols)
            + f"<td></td><td>{fps}</td><td>{fns}</td></tr>"
        )
    note = (
        ""
        if metrics
        else (
            "<p class='note'>No metrics.json in this run: run <code>mambaad eval RUN</code> "
            "for the seven metrics.</p>"
        )
    )
    return (
        f"{note}<table class='metrics'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        "<p class='note'>Metrics in %, from metrics.json; n/a = undefined (one label only). "
        "FP / FN: test images on the wrong side of the class's threshold (defective when score &ge; "
        "threshold).</p>"
    )


def _tiles_html(tiles: list[Tile], kind: str) -> str:
    if not tiles:
        return "<p class='note'>none</p>"
    parts = []
    for tile in tiles:
        badge = (
            f"<span class='badge err'>{kind}</span>"
            if tile.is_error
            else "<span class='badge ok'>correct</span>"
        )
        parts.append(
            f"<figure class='tile'><img src='{png_data_uri(tile.picture)}' alt=''>"
            f"<figcaption>{badge} {escape(tile.caption)}</figcaption></figure>"
        )
    return "<div class='tiles'>" + "".join(parts) + "</div>"


def class_section_html(section: ClassSection) -> str:
    lo, hi = section.map_range
    plots = "".join(f"<div class='plot'>{svg}</div>" for svg in class_plots(section))
    fp, fn = section.errors
    scale = (
        f"<div class='scale'><span>{_num(lo)}</span><img src='{png_data_uri(colorbar(160, 10))}' alt=''>"
        f"<span>{_num(hi)}</span> colour scale of this class (fixed); white outline: map &ge; threshold; "
        f"green outline: ground truth</div>"
    )
    return (
        f"<section class='cls' id='cls-{escape(section.name)}'>"
        f"<h2>{escape(section.name)}</h2>"
        f"<p class='sub'>threshold {_num(section.threshold)} ({escape(section.threshold_source)}) &middot; "
        f"{fp} false positive(s), {fn} false negative(s) at the threshold</p>"
        f"<div class='plots'>{plots}</div>{scale}"
        "<h3>Normal images with the highest scores</h3>"
        f"{_tiles_html(section.highest_normal, 'false positive')}"
        "<h3>Defective images with the lowest scores</h3>"
        f"{_tiles_html(section.lowest_defective, 'false negative')}"
        "</section>"
    )


CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; color: #222;
       margin: 0; background: #f5f6f8; }
main { max-width: 1220px; margin: 0 auto; padding: 20px 28px 40px; }
h1 { font-size: 24px; margin: 6px 0 2px; }
h2 { font-size: 19px; margin: 0 0 2px; }
h3 { font-size: 13px; margin: 12px 0 6px; color: #444; text-transform: uppercase; letter-spacing: .04em; }
.card, section.cls { background: #fff; border: 1px solid #e1e3e8; border-radius: 8px; padding: 14px 18px;
                     margin: 14px 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 3px 14px;
           margin: 0; font-size: 13px; }
dl.facts dt { color: #666; } dl.facts dd { margin: 0; font-family: ui-monospace, Menlo, monospace;
           font-size: 12px; overflow-wrap: anywhere; }
table.metrics { border-collapse: collapse; font-size: 13px; width: 100%; font-variant-numeric: tabular-nums; }
table.metrics th { text-align: right; font-weight: 600; border-bottom: 2px solid #ccd; padding: 5px 7px;
                   background: #f0f2f6; }
table.metrics th:first-child, table.metrics td.name { text-align: left; }
table.metrics td { text-align: right; padding: 4px 7px; border-bottom: 1px solid #eceef2; }
table.metrics tr.mean td { font-weight: 700; border-top: 2px solid #ccd; }
table.metrics td.bad { color: #c0392b; font-weight: 600; }
table.metrics a { color: #1f5fbf; text-decoration: none; }
.na { color: #999; }
.note { font-size: 12px; color: #666; margin: 6px 0; }
.sub { font-size: 13px; color: #555; margin: 0 0 8px; }
.plots { display: flex; gap: 10px; flex-wrap: wrap; }
.plot { border: 1px solid #eceef2; border-radius: 6px; background: #fff; }
.scale { font-size: 12px; color: #555; display: flex; align-items: center; gap: 6px; margin: 8px 0 0; }
.scale img { height: 10px; width: 160px; border: 1px solid #ccc; }
.tiles { display: flex; gap: 10px; flex-wrap: wrap; }
.tile { margin: 0; width: 280px; }
.tile img { width: 280px; height: auto; display: block; border-radius: 4px; border: 1px solid #ddd; }
.tile figcaption { font-size: 11.5px; color: #444; margin-top: 3px; overflow-wrap: anywhere;
                   line-height: 1.35; }
.badge { display: inline-block; font-size: 10.5px; padding: 0 6px; border-radius: 8px; font-weight: 600; }
.badge.err { background: #fde2de; color: #b03020; } .badge.ok { background: #e3f1e6; color: #2d7a3e; }
details pre { font-size: 12px; background: #f7f7f9; padding: 10px; border-radius: 6px; overflow: auto; }
summary { cursor: pointer; font-weight: 600; }
"""


def render_report(report: Report) -> str:
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in report.facts)
    sections = "".join(class_section_html(s) for s in report.sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(report.title)}</title><style>{CSS}</style></head>
<body><main>
<h1>{escape(report.title)}</h1>
<div class="card"><dl class="facts">{facts}</dl></div>
<div class="card"><h2>Metrics</h2>{metrics_table_html(report)}</div>
{sections}
<div class="card"><details><summary>Resolved config (config.yaml)</summary>
<pre>{escape(report.config_yaml)}</pre></details></div>
</main></body></html>
"""

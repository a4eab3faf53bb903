"""ROC curves, precision-recall curves and score histograms as inline SVG.

Written by hand because the plotting libraries are not dependencies of the package; SVG keeps the
report self-contained, small and sharp at any zoom. Each function returns one `<svg>` element.
The curves themselves are computed elsewhere (scikit-learn); this module only draws.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

NORMAL_COLOR = "#2f6fd0"
DEFECT_COLOR = "#d6452f"
CURVE_COLOR = "#2f6fd0"
THRESHOLD_COLOR = "#222222"
GRID_COLOR = "#e3e3e3"
AXIS_COLOR = "#888888"
FONT = "font-family='system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif'"

WIDTH, HEIGHT = 370, 250
MARGIN = {"left": 46, "right": 12, "top": 24, "bottom": 38}


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float) -> str:
    return f"{value:.4g}"


class _Frame:
    """Maps data coordinates to pixels inside the plot area and draws the axes."""

    def __init__(
        self,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        title: str,
        x_label: str,
        y_label: str,
        width: int = WIDTH,
        height: int = HEIGHT,
    ):
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.width, self.height = width, height
        self.left, self.top = MARGIN["left"], MARGIN["top"]
        self.plot_w = width - MARGIN["left"] - MARGIN["right"]
        self.plot_h = height - MARGIN["top"] - MARGIN["bottom"]
        self.parts: list[str] = []
        self.title, self.x_label, self.y_label = title, x_label, y_label

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.plot_w

    def py(self, y: float) -> float:
        return self.top + (1.0 - (y - self.y0) / (self.y1 - self.y0)) * self.plot_h

    def axes(self, x_ticks: list[float], y_ticks: list[float]) -> None:
        bottom, right = self.top + self.plot_h, self.left + self.plot_w
        for t in y_ticks:
            y = self.py(t)
            self.parts.append(
                f"<line x1='{self.left}' y1='{y:.1f}' x2='{right}' y2='{y:.1f}' stroke='{GRID_COLOR}'/>"
            )
            self.parts.append(
                f"<text x='{self.left - 5}' y='{y + 3.5:.1f}' text-anchor='end' "
                f"font-size='10' fill='#555'>{_label(t)}</text>"
            )
        for t in x_ticks:
            x = self.px(t)
            self.parts.append(
                f"<line x1='{x:.1f}' y1='{self.top}' x2='{x:.1f}' y2='{bottom}' stroke='{GRID_COLOR}'/>"
            )
            self.parts.append(
                f"<text x='{x:.1f}' y='{bottom + 13}' text-anchor='middle' "
                f"font-size='10' fill='#555'>{_label(t)}</text>"
            )
        self.parts.append(
            f"<rect x='{self.left}' y='{self.top}' width='{self.plot_w}' "
            f"height='{self.plot_h}' fill='none' stroke='{AXIS_COLOR}'/>"
        )
        self.parts.append(
            f"<text x='{self.left + self.plot_w / 2:.1f}' y='{self.height - 6}' "
            f"text-anchor='middle' font-size='11' fill='#333'>{escape(self.x_label)}</text>"
        )
        cy = self.top + self.plot_h / 2
        self.parts.append(
            f"<text x='12' y='{cy:.1f}' text-anchor='middle' font-size='11' fill='#333' "
            f"transform='rotate(-90 12 {cy:.1f})'>{escape(self.y_label)}</text>"
        )
        self.parts.append(
            f"<text x='{self.left}' y='15' font-size='12' font-weight='600' "
            f"fill='#222'>{escape(self.title)}</text>"
        )

    def polyline(self, xs, ys, color: str, width: float = 2.0, dash: str = "") -> None:
        points = " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in zip(xs, ys, strict=True))
        dash_attr = f" stroke-dasharray='{dash}'" if dash else ""
        self.parts.append(
            f"<polyline points='{points}' fill='none' stroke='{color}' "
            f"stroke-width='{width}'{dash_attr} stroke-linejoin='round'/>"
        )

    def rect(self, x0: float, x1: float, y: float, color: str, opacity: float) -> None:
        left, right, top, bottom = self.px(x0), self.px(x1), self.py(y), self.py(self.y0)
        self.parts.append(
            f"<rect x='{left:.1f}' y='{top:.1f}' width='{max(right - left, 0):.1f}' "
            f"height='{max(bottom - top, 0):.1f}' fill='{color}' fill-opacity='{opacity}' "
            f"stroke='{color}' stroke-width='0.8'/>"
        )

    def note(
        self, text: str, x: float, y: float, anchor: str = "start", color: str = "#222", size: int = 11
    ) -> None:
        self.parts.append(
            f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' font-size='{size}' "
            f"fill='{color}'>{escape(text)}</text>"
        )

    def legend(self, entries: list[tuple[str, str]]) -> None:
        """Colour swatches with labels in one row at the top right, beside the title."""
        x = self.left + self.plot_w
        for label, color in reversed(entries):
            self.note(label, x, 15, anchor="end", size=10)
            x -= 6.0 * len(label) + 4  # a generous width estimate for a 10 px sans-serif label
            self.parts.append(f"<rect x='{x - 10:.1f}' y='6' width='10' height='10' fill='{color}'/>")
            x -= 22

    def svg(self) -> str:
        body = "\n".join(self.parts)
        return (
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{self.width}' height='{self.height}' "
            f"viewBox='0 0 {self.width} {self.height}' {FONT} role='img' "
            f"aria-label='{escape(self.title)}'>\n{body}\n</svg>"
        )


def _undefined(frame: _Frame, why: str) -> str:
    frame.note(
        why, frame.left + frame.plot_w / 2, frame.top + frame.plot_h / 2, anchor="middle", color="#888"
    )
    return frame.svg()


def roc_svg(fpr: np.ndarray | None, tpr: np.ndarray | None, auroc: float | None, title: str = "ROC") -> str:
    """Image-level ROC curve with the chance diagonal; None when undefined (one label only)."""
    if auroc is not None:
        title = f"{title}: AUROC {100 * auroc:.1f} %"
    frame = _Frame((0.0, 1.0), (0.0, 1.0), title, "false positive rate", "true positive rate")
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    frame.axes(ticks, ticks)
    frame.polyline([0, 1], [0, 1], "#bbbbbb", width=1, dash="4 3")
    if fpr is None or tpr is None:
        return _undefined(frame, "undefined: one label only")
    frame.polyline(fpr, tpr, CURVE_COLOR)
    return frame.svg()


def pr_steps(recall: np.ndarray, precision: np.ndarray) -> tuple[list[float], list[float]]:
    """Step path of scikit-learn's precision_recall_curve output whose area is its step-wise AP:
    walking up in recall, the step from R_{j-1} to R_j is drawn at P_j (ties in recall: vertical)."""
    r, p = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if r[0] > r[-1]:  # scikit-learn lists recall decreasing
        r, p = r[::-1], p[::-1]
    xs, ys = [float(r[0])], [float(p[0])]
    for j in range(1, len(r)):
        xs += [float(r[j - 1]), float(r[j])]
        ys += [float(p[j]), float(p[j])]
    return xs, ys


def pr_svg(
    recall: np.ndarray | None,
    precision: np.ndarray | None,
    ap: float | None,
    base_rate: float | None,
    title: str = "Precision-recall",
) -> str:
    """Image-level precision-recall curve (steps) with the positive rate as the chance line."""
    if ap is not None:
        title = f"{title}: AP {100 * ap:.1f} %"
    frame = _Frame((0.0, 1.0), (0.0, 1.02), title, "recall", "precision")
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    frame.axes(ticks, ticks)
    if recall is None or precision is None:
        return _undefined(frame, "undefined: one label only")
    if base_rate is not None:
        frame.polyline([0, 1], [base_rate, base_rate], "#bbbbbb", width=1, dash="4 3")
    xs, ys = pr_steps(recall, precision)
    frame.polyline(xs, ys, CURVE_COLOR)
    return frame.svg()


def histogram_svg(
    normal: np.ndarray,
    defective: np.ndarray,
    threshold: float | None,
    title: str = "Image scores",
    bins: int | None = None,
) -> str:
    """Overlaid histograms of the image scores of normal and defective images, the threshold marked."""
    normal, defective = np.asarray(normal, np.float64), np.asarray(defective, np.float64)
    values = np.concatenate([normal, defective])
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if threshold is not None and math.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    pad = 0.04 * (hi - lo) if hi > lo else 0.5 * max(abs(hi), 1e-3)
    lo, hi = lo - pad, hi + pad
    n_bins = bins or int(np.clip(round(2 * math.sqrt(max(values.size, 1))), 8, 40))
    edges = np.linspace(lo, hi, n_bins + 1)
    counts_n, _ = np.histogram(normal, edges)
    counts_d, _ = np.histogram(defective, edges)
    top = max(int(counts_n.max(initial=0)), int(counts_d.max(initial=0)), 1)
    y_ticks = [t for t in nice_ticks(0, top, 4) if float(t).is_integer()] or [0.0, float(top)]
    y_max = max(top, y_ticks[-1]) * 1.12  # headroom for the threshold's label
    frame = _Frame((lo, hi), (0.0, y_max), title, "image score", "images")
    frame.axes(nice_ticks(lo, hi, 5), y_ticks)
    for counts, color in ((counts_n, NORMAL_COLOR), (counts_d, DEFECT_COLOR)):
        for i, c in enumerate(counts):
            if c:
                frame.rect(edges[i], edges[i + 1], float(c), color, 0.45)
    if threshold is not None and math.isfinite(threshold):
        x = frame.px(threshold)
        frame.parts.append(
            f"<line x1='{x:.1f}' y1='{frame.top}' x2='{x:.1f}' "
            f"y2='{frame.top + frame.plot_h}' stroke='{THRESHOLD_COLOR}' "
            f"stroke-width='1.5' stroke-dasharray='5 3'/>"
        )
        right_half = x > frame.left + frame.plot_w / 2  # label on the side with room
        frame.note(
            f"threshold {_label(threshold)}",
            x - 4 if right_half else x + 4,
            frame.top + 12,
            anchor="end" if right_half else "start",
            size=10,
        )
    frame.legend([(f"normal ({normal.size})", NORMAL_COLOR), (f"defective ({defective.size})", DEFECT_COLOR)])
    return frame.svg()

"""visualize: the report's content against metrics.json and scikit-learn; the SVG plots; worst cases."""

import base64
import csv
import json
import re
import shutil
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from test_predict import train_tiny_run

from mambaad_cli.cli import main
from mambaad_cli.engine.visualize import WorstCases, visualize_run
from mambaad_cli.metrics import METRIC_KEYS
from mambaad_cli.viz.plots import MARGIN, histogram_svg, nice_ticks, pr_steps, roc_svg
from mambaad_cli.viz.screenshot import find_chromium, screenshot

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("visualize")
    data_root, cfg, run_dir = train_tiny_run(tmp_path)
    result = visualize_run(run_dir, worst=2, show_progress=False)
    return run_dir, result, result.report_path.read_text()


def test_report_holds_the_metrics_table_of_metrics_json(report):
    run_dir, result, html = report
    metrics = json.loads((run_dir / "metrics.json").read_text())
    table = html[html.index("<table class='metrics'>") : html.index("</table>")]
    for key in METRIC_KEYS:
        assert f"<th>{key}</th>" in table
    for cls_name, row in metrics["classes"].items():
        line = re.search(rf"<tr><td class='name'><a href='#cls-{cls_name}'>.*?</tr>", table).group(0)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", line)
        for key in METRIC_KEYS:  # columns: class, normal, defective, then the metrics in order
            value = row[key]
            expect = "n/a" if value is None else f"{100 * value:.1f}"
            assert expect in cells[3 + METRIC_KEYS.index(key)]
    assert "<tr class='mean'>" in table


def test_recomputed_test_scores_agree_with_eval(report):
    """visualize scores the test split again: its image AUROC per class is eval's."""
    run_dir, result, _ = report
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = list(csv.DictReader(result.scores_path.open()))
    assert len(rows) == 8
    for cls_name in ("disc", "stripes"):
        mine = [r for r in rows if r["class"] == cls_name]
        auroc = roc_auc_score([int(r["label"]) for r in mine], [float(r["score"]) for r in mine])
        assert auroc == pytest.approx(metrics["classes"][cls_name]["I-AUROC"], abs=1e-6)
        for r in mine:
            assert r["verdict"] == ("anomalous" if float(r["score"]) >= float(r["threshold"]) else "normal")


def test_report_is_self_contained_with_images_and_svgs(report):
    _, result, html = report
    sources = re.findall(r"src='([^']*)'", html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for uri in sources:
        png = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert png is not None and png.size > 0
    assert (
        "<link" not in html
        and "<script" not in html
        and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    )
    assert html.count("<svg") == 3 * 2  # ROC, PR, histogram per class
    for svg in re.findall(r"<svg.*?</svg>", html, flags=re.S):
        ET.fromstring(svg)  # well-formed
    # worst=2: two normal and two defective tiles per class, each image + overlay side by side
    assert html.count("<figure class='tile'>") == 2 * 2 * 2
    assert "Resolved config" in html and "tf_efficientnet_lite0" in html


def test_roc_polyline_maps_the_curve_into_the_plot_area():
    fpr, tpr = np.array([0.0, 0.0, 0.5, 1.0]), np.array([0.0, 0.5, 1.0, 1.0])
    root = ET.fromstring(roc_svg(fpr, tpr, 0.875))
    width, height = float(root.get("width")), float(root.get("height"))
    curve = root.findall(f"{SVG}polyline")[-1]
    points = [tuple(map(float, p.split(","))) for p in curve.get("points").split()]
    left, bottom = MARGIN["left"], height - MARGIN["bottom"]
    right, top = width - MARGIN["right"], MARGIN["top"]
    expect = [(left + f * (right - left), bottom - t * (bottom - top)) for f, t in zip(fpr, tpr, strict=True)]
    assert np.allclose(points, expect, atol=0.06)
    assert "AUROC 87.5 %" in ET.tostring(root, encoding="unicode")


def test_pr_steps_enclose_the_average_precision():
    rng = np.random.default_rng(4)
    labels = rng.random(60) < 0.4
    scores = rng.random(60) + 0.6 * labels
    precision, recall, _ = precision_recall_curve(labels, scores)
    xs, ys = pr_steps(recall, precision)
    # steps are horizontal or vertical, so the trapezoid rule gives their area exactly
    area = sum((xs[i] - xs[i - 1]) * (ys[i] + ys[i - 1]) / 2 for i in range(1, len(xs)))
    assert area == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_histogram_bars_follow_numpy_counts():
    rng = np.random.default_rng(5)
    normal, defective = rng.normal(1, 0.1, 50), rng.normal(1.5, 0.2, 30)
    root = ET.fromstring(histogram_svg(normal, defective, 1.25, bins=10))
    rects = [r for r in root.findall(f"{SVG}rect") if r.get("fill-opacity")]
    by_color = {}
    for r in rects:
        by_color.setdefault(r.get("fill"), []).append((float(r.get("x")), float(r.get("height"))))
    lo, hi = min(normal.min(), defective.min()), max(normal.max(), defective.max())
    pad = 0.04 * (hi - lo)
    edges = np.linspace(lo - pad, hi + pad, 11)
    for values, color in ((normal, "#2f6fd0"), (defective, "#d6452f")):
        counts = np.histogram(values, edges)[0]
        heights = [h for _, h in sorted(by_color[color])]
        nonzero = counts[counts > 0]
        assert len(heights) == len(nonzero)
        assert np.allclose(np.array(heights) / heights[0], nonzero / nonzero[0], atol=0.02)
    assert "threshold 1.25" in ET.tostring(root, encoding="unicode")


def test_nice_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0, 1, 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    ticks = nice_ticks(2.4312, 3.0871, 5)
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0]) and ticks[0] >= 2.4312 and ticks[-1] <= 3.0871 and len(ticks) >= 3


def test_worst_cases_keep_the_k_largest():
    rng = np.random.default_rng(6)
    keys = rng.random(50)
    keep = WorstCases(3)
    for i, k in enumerate(keys):
        if keep.wants(k):
            keep.add(k, i)
    assert keep.worst_first() == list(np.argsort(-keys)[:3])


def test_visualize_command_and_errors(report, tmp_path, capsys):
    run_dir, _, _ = report
    assert (
        main(["visualize", str(run_dir), "--out", str(tmp_path / "rep"), "--worst", "1", "--no-progress"])
        == 0
    )
    assert (tmp_path / "rep" / "report.html").is_file() and "I-AUROC" in capsys.readouterr().out
    assert main(["visualize", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "run folder not found" in capsys.readouterr().err
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "model.json", bare / "model.json")
    assert main(["visualize", str(bare), "--no-progress"]) == 2
    assert "no model.safetensors" in capsys.readouterr().err


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(report, tmp_path):
    _, result, _ = report
    shot = screenshot(result.report_path, tmp_path / "shot.png", width=1000, height=1400, timeout=120)
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (1400, 1000)
    assert image.std() > 20  # text, plots and pictures, not a blank page

"""Render a run's HTML report in headless Chromium and save a screenshot (docs/report.png).

    mambaad train --preset demo --epochs 1 --output-dir /tmp/vizruns --run-name r1
    python benchmarks/screenshot_report.py /tmp/vizruns/demo/r1 --out docs/report.png

Runs `visualize` for the run first (unless --no-visualize), then Debian's `chromium` package
(`apt-get install chromium`) with a throw-away profile and no network features.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mambaad_cli.engine.runs import resolve_run_dir
from mambaad_cli.engine.visualize import REPORT_DIR, visualize_run
from mambaad_cli.viz.screenshot import screenshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--out", default="docs/report.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--worst", type=int, default=4)
    parser.add_argument("--no-visualize", action="store_true", help="use the report already there")
    args = parser.parse_args()
    run_dir = resolve_run_dir(args.run)
    if args.no_visualize:
        html = run_dir / REPORT_DIR / "report.html"
    else:
        html = visualize_run(run_dir, worst=args.worst, device="cpu").report_path
    screenshot(html, Path(args.out), args.width, args.height)
    print(f"wrote {args.out} from {html}")


if __name__ == "__main__":
    main()

"""Render an HTML file to a PNG in headless Chromium (Debian's `chromium` package), offline."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from mambaad_cli.errors import UserError


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 2000, timeout: int = 300) -> Path:
    """Screenshot of the page's top width x height pixels; a throw-away profile, no network features."""
    browser = find_chromium()
    if browser is None:
        raise UserError("chromium not found: apt-get install -y chromium")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={png.resolve()}",
                f"--window-size={width},{height}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
    return png

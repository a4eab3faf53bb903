"""Run folders: runs/<preset>/<run-name>/ and the `latest` pointer beside them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mambaad_cli.config import Config
from mambaad_cli.errors import UserError

LATEST = "latest"


def new_run_dir(cfg: Config) -> Path:
    name = cfg.run_name or time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(cfg.output_dir) / cfg.preset / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"--run-name {name}: {run_dir} already exists (choose another name or use --resume)")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def point_latest(run_dir: Path) -> None:
    """Make <preset>/latest point at run_dir (a relative symlink, replaced atomically)."""
    link = run_dir.parent / LATEST
    tmp = run_dir.parent / f".{LATEST}.{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        # File systems without symlinks get a text file naming the run instead.
        (run_dir.parent / f"{LATEST}.txt").write_text(run_dir.name + "\n")


def resolve_run_dir(path: str | Path) -> Path:
    """Accept a run folder, a `latest` link, or a preset folder (its latest run)."""
    p = Path(path)
    if not p.exists():
        if p.name == LATEST and (p.parent / f"{LATEST}.txt").is_file():
            p = p.parent / (p.parent / f"{LATEST}.txt").read_text().strip()
        else:
            raise UserError(f"run folder not found: {path}")
    if p.is_dir() and not (p / "model.json").is_file() and (p / LATEST).exists():
        p = p / LATEST
    p = p.resolve()
    if not (p / "model.json").is_file():
        raise UserError(f"{path}: not a run folder (no model.json in it)")
    return p

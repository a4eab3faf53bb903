"""What prepare-data found wrong with a dataset, and what it did about each finding.

One bad file never stops a whole run: it is skipped and listed. With `strict`, the first finding
raises DataError instead (for pipelines that must not run on a partially broken dataset).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

from mambaad_cli.data.errors import DataError

logger = logging.getLogger("mambaad.data")

SKIPPED = "image skipped"
IGNORED = "file ignored"
CLASS_SKIPPED = "class skipped"


class Problem(NamedTuple):
    path: str  # the file or folder, relative to the dataset root when it lies inside it
    issue: str  # what is wrong with it
    action: str  # what was done: SKIPPED, IGNORED or CLASS_SKIPPED


class ProblemLog:
    """Collects problems in the order they are found; raises on the first one when strict."""

    def __init__(self, root: str | os.PathLike, strict: bool = False, tolerated: tuple[str, ...] = ()):
        """strict: raise on the first problem, except those whose action is in `tolerated`
        (recorded instead: e.g. an ignored stray file loses no data)."""
        self.root = Path(root)
        self.strict = strict
        self.tolerated = tolerated
        self.problems: list[Problem] = []

    def relative(self, path: str | os.PathLike) -> str:
        p = Path(path)
        try:
            return p.relative_to(self.root).as_posix() or "."
        except ValueError:
            return str(p)

    def add(self, path: str | os.PathLike, issue: str, action: str) -> None:
        shown = self.relative(path)
        if self.strict and action not in self.tolerated:
            raise DataError(f"{self.root / shown}: {issue} (--strict stops at the first problem)")
        self.problems.append(Problem(shown, issue, action))

    def warn_summary(self, what: str) -> None:
        """One logged warning for the problems of an on-the-fly scan (no prepare-data report)."""
        if not self.problems:
            return
        first = self.problems[0]
        more = ""
        if len(self.problems) > 1:
            more = f" (and {len(self.problems) - 1} more; `mambaad prepare-data` lists them)"
        logger.warning("%s: %s: %s, %s%s", what, first.path, first.issue, first.action, more)

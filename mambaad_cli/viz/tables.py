"""Rich tables of results: metrics per class (in %) and dataset counts."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

UNDEFINED = "n/a"  # a metric that is undefined for the class (one label only)


def _pct(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return UNDEFINED
    return f"{100 * float(v):.1f}"


def metrics_table(result, title: str = "metrics (%)", columns: list[str] | None = None) -> Table:
    """One row per class and a bold mean row; `result` is an engine EvalResult."""
    from mambaad_cli.metrics import METRIC_KEYS

    cols = columns or list(METRIC_KEYS)
    table = Table(title=title, title_justify="left")
    table.add_column("class", style="cyan")
    for c in cols:
        table.add_column(c, justify="right")
    for name in sorted(result.per_class):
        table.add_row(name, *(_pct(result.per_class[name].get(c)) for c in cols))
    table.add_section()
    table.add_row("mean", *(_pct(result.mean.get(c)) for c in cols), style="bold")
    return table


def counts_table(counts: dict[str, dict[str, int]], title: str = "images") -> Table:
    """counts: {class: {column: n}} -> a table with a total row."""
    cols: list[str] = []
    for row in counts.values():
        cols += [c for c in row if c not in cols]
    table = Table(title=title, title_justify="left")
    table.add_column("class", style="cyan")
    for c in cols:
        table.add_column(c, justify="right")
    for name in sorted(counts):
        table.add_row(name, *(str(counts[name].get(c, 0)) for c in cols))
    table.add_section()
    table.add_row("total", *(str(sum(r.get(c, 0) for r in counts.values())) for c in cols), style="bold")
    return table

"""The prepare-data problem list as a rich table (the counts table is viz.tables.counts_table)."""

from __future__ import annotations

from collections import Counter

from rich.table import Table

from mambaad_cli.data.problems import Problem


def problems_table(problems: list[Problem], limit: int = 50) -> Table:
    """The first `limit` problems, one row each; a caption counts them by action."""
    by_action = Counter(p.action for p in problems)
    caption = ", ".join(f"{action}: {n}" for action, n in sorted(by_action.items()))
    if len(problems) > limit:
        caption += f" (first {limit} of {len(problems)} shown)"
    table = Table(
        title=f"{len(problems)} problem(s)", title_justify="left", caption=caption, caption_justify="left"
    )
    table.add_column("file", style="yellow", overflow="fold")
    table.add_column("problem", overflow="fold")
    table.add_column("action")
    for p in problems[:limit]:
        table.add_row(p.path, p.issue, p.action)
    return table

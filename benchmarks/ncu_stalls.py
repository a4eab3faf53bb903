"""Stall samples of one kernel from Nsight Compute's source page (SASS, CSV): the totals by reason, each loop
(a backward branch) with its share and reasons, and the instructions with the most samples.

    ncu --set full --import-source yes -o rep ...                       # on the GPU machine
    ncu -i rep.ncu-rep --page source --print-source sass --csv > sass.csv
    python benchmarks/ncu_stalls.py sass.csv --top 30
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import Counter
from pathlib import Path

SAMPLES = "Warp Stall Sampling (All Samples)"


def read_source_page(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(column names, rows) of the CSV; the first line names the kernel, the second the columns."""
    lines = list(csv.reader(path.read_text().splitlines()))
    header = next(i for i, line in enumerate(lines) if "Source" in line and SAMPLES in line)
    names = lines[header]
    rows = [line for line in lines[header + 1:] if len(line) == len(names)]
    return names, [dict(zip(names, line, strict=True)) for line in rows]


def _number(row: dict[str, str], key: str) -> float:
    try:
        return float(row.get(key, "0").replace(",", ""))
    except ValueError:
        return 0.0


def loops(rows: list[dict[str, str]]) -> list[tuple[int, int]]:
    """(first, last) row index of each loop: a branch back to an earlier address in the listing."""
    index = {int(row["Address"], 16): i for i, row in enumerate(rows)}
    found = []
    for i, row in enumerate(rows):
        target = re.search(r"BRA\s.*?(0x[0-9a-f]+)", row["Source"])
        if target and int(target.group(1), 16) in index and index[int(target.group(1), 16)] < i:
            found.append((index[int(target.group(1), 16)], i))
    return sorted(found, key=lambda loop: loop[1] - loop[0])


def report(names: list[str], rows: list[dict[str, str]], top: int) -> list[str]:
    reasons = [n for n in names if n.startswith("stall_") and "Not Issued" not in n]
    total = sum(_number(r, SAMPLES) for r in rows) or 1.0

    def shares(part: list[dict[str, str]], k: int = 7) -> str:
        counts = Counter({reason: sum(_number(r, reason) for r in part) for reason in reasons})
        whole = sum(counts.values()) or 1.0
        return ", ".join(f"{reason[6:]} {100 * v / whole:.1f} %" for reason, v in counts.most_common(k))

    out = [f"{int(total)} samples; {shares(rows, 10)}"]
    for first, last in loops(rows):
        part = rows[first:last + 1]
        out.append(f"loop rows {first}-{last} ({last - first + 1} instructions): "
                   f"{100 * sum(_number(r, SAMPLES) for r in part) / total:.1f} % of samples; {shares(part)}")
    ranked = sorted(range(len(rows)), key=lambda i: -_number(rows[i], SAMPLES))[:top]
    for i in ranked:
        reason = max(reasons, key=lambda name: _number(rows[i], name))
        samples = _number(rows[i], SAMPLES)
        out.append(f"{i:6d} {samples:8.0f} {100 * samples / total:5.1f} % {reason[6:]:16s} "
                   f"{' '.join(rows[i]['Source'].split())[:80]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="ncu --page source --print-source sass --csv output")
    parser.add_argument("--top", type=int, default=25, help="instructions listed, most samples first")
    args = parser.parse_args()
    print("\n".join(report(*read_source_page(args.csv), args.top)))


if __name__ == "__main__":
    main()

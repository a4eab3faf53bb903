"""Where the GPU idles in a profiled step: reads a chrome trace written by model_throughput.py --trace and
prints, for the GPU events (kernels, copies, memsets), the span, the time some event runs (their union), the
time two or more overlap, the idle gaps by size, and the kernels by total time.

    python benchmarks/trace_gaps.py trace_train.json[.gz] [--top 30]

A trace of replayed CUDA graphs lists each graph's kernels when CUPTI reports them (it does on recent
drivers); steps are told apart by gaps longer than --step-gap ms.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json


def gpu_events(path: str) -> list[tuple[float, float, str, int]]:
    """(start us, end us, name, stream) of every GPU-side event, sorted by start."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        trace = json.load(f)
    rows = []
    for e in trace.get("traceEvents", []):
        if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"):
            start = float(e["ts"])
            rows.append((start, start + float(e.get("dur", 0.0)), e.get("name", "?"), int(e.get("tid", 0))))
    return sorted(rows)


def summarise(events: list[tuple[float, float, str, int]], top: int) -> str:
    """Busy, overlapping and idle time of one stretch of events (at least one), and its top kernels."""
    boundaries = sorted([(s, 1) for s, _, _, _ in events] + [(e, -1) for _, e, _, _ in events])
    busy = overlap = 0.0
    depth, last = 0, boundaries[0][0]
    gaps = []
    for t, step in boundaries:
        if depth >= 1:
            busy += t - last
        if depth >= 2:
            overlap += t - last
        if depth == 0 and t > last:
            gaps.append(t - last)
        depth += step
        last = t
    span = events[-1][1] - events[0][0]
    lines = [f"GPU events {len(events)} on {len({s for *_, s in events})} streams; span {span / 1e3:.3f} ms, "
             f"busy {busy / 1e3:.3f} ms ({100 * busy / span:.1f} %), "
             f"two or more at once {overlap / 1e3:.3f} ms"]
    for lo, hi in ((0, 2), (2, 5), (5, 20), (20, 100), (100, 1e12)):
        sel = [g for g in gaps if lo <= g < hi]
        lines.append(f"  idle gaps {lo}-{hi if hi < 1e12 else 'inf'} us: {len(sel)}, {sum(sel) / 1e3:.3f} ms")
    by_name: dict[str, list[float]] = collections.defaultdict(list)
    for s, e, name, _ in events:
        by_name[name].append(e - s)
    lines.append(f"{'total ms':>9} {'count':>6} {'mean us':>8}  kernel")
    for name, durs in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(f"{sum(durs) / 1e3:9.3f} {len(durs):6d} {sum(durs) / len(durs):8.1f}  {name[:100]}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--step-gap", type=float, default=1.0, help="ms of idle that separate two steps")
    args = parser.parse_args()
    events = gpu_events(args.trace)
    if not events:
        print(f"{args.trace}: no GPU events (kernels, copies, memsets): a CPU run, or CUPTI reported none")
        return
    steps, current = [], []
    for ev in events:
        if current and ev[0] - max(e for _, e, _, _ in current[-50:]) > args.step_gap * 1e3:
            steps.append(current)
            current = []
        current.append(ev)
    if current:
        steps.append(current)
    print(f"{len(steps)} stretches of GPU work separated by more than {args.step_gap} ms idle")
    for i, step in enumerate(steps):
        print(f"\n# stretch {i}\n" + summarise(step, args.top if i == len(steps) - 1 else 0))


if __name__ == "__main__":
    main()

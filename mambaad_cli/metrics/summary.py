"""The mean over classes that papers report ("m" prefix): a plain mean of per-class metrics."""

from __future__ import annotations

import math

from mambaad_cli.metrics.keys import ALL_KEYS


def mean_metrics(per_class: dict[str, dict[str, float]]) -> dict:
    """{metric: mean over classes} skipping classes where the metric is nan/None (undefined there);
    nan if no class defines it. "n_classes" maps each metric to how many classes entered its mean."""
    keys = list(ALL_KEYS) + [k for m in per_class.values() for k in m if k not in ALL_KEYS]
    keys = list(dict.fromkeys(keys))
    out: dict = {}
    used: dict[str, int] = {}
    for key in keys:
        values = [float(m[key]) for m in per_class.values() if _is_number(m.get(key))]
        values = [v for v in values if not math.isnan(v)]
        if not values and not any(key in m for m in per_class.values()):
            continue
        out[key] = math.fsum(values) / len(values) if values else float("nan")
        used[key] = len(values)
    out["n_classes"] = used
    return out


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return not isinstance(v, bool)

"""Image and pixel metrics of anomaly detection, exact and fast (one sort per class), and AUPRO.

    from mambaad_cli.metrics import evaluate_class, MetricAccumulator, mean_metrics, METRIC_KEYS
"""

from mambaad_cli.metrics.accumulator import MetricAccumulator, evaluate_class
from mambaad_cli.metrics.keys import ALL_KEYS, METRIC_KEYS, PAPER_KEYS
from mambaad_cli.metrics.summary import mean_metrics

__all__ = ["ALL_KEYS", "METRIC_KEYS", "PAPER_KEYS", "MetricAccumulator", "evaluate_class", "mean_metrics"]

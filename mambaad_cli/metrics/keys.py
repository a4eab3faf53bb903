"""Names of the metrics, in the order tables and files show them."""

# The seven numbers of the paper's tables, computed exactly (see accumulator.py for the definitions).
METRIC_KEYS = ("I-AUROC", "I-AP", "I-F1max", "P-AUROC", "P-AP", "P-F1max", "AUPRO")

# Paper-era variants (reference/mambaad_spec.md 5.2): what ADer's April-2024 code reports for
# P-F1max and AUPRO. They differ from the exact definitions, so they carry their own names.
PAPER_KEYS = ("P-F1max@21", "AUPRO@paper")

ALL_KEYS = METRIC_KEYS + PAPER_KEYS

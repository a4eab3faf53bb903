"""The MambaAD model: build_model(config) -> MambaAD, and the anomaly map shared by evaluate/predict."""

from __future__ import annotations

from mambaad_cli.model.anomaly_map import anomaly_map, image_scores
from mambaad_cli.model.mambaad import MambaAD

__all__ = ["MambaAD", "anomaly_map", "build_model", "image_scores"]


def build_model(config) -> MambaAD:
    """config: the full Config (its .model is used) or a ModelConfig."""
    return MambaAD(getattr(config, "model", config))

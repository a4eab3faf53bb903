"""Train, evaluate and predict; run folders and checkpoints. Usable from Python without the CLI."""

from mambaad_cli.engine.evaluate import EvalResult, evaluate, evaluate_run
from mambaad_cli.engine.predict import PredictResult, predict
from mambaad_cli.engine.train import TrainResult, train
from mambaad_cli.engine.visualize import VisualizeResult, visualize_run

__all__ = [
    "EvalResult",
    "PredictResult",
    "TrainResult",
    "VisualizeResult",
    "evaluate",
    "evaluate_run",
    "predict",
    "train",
    "visualize_run",
]

"""Train, evaluate and predict; run folders and checkpoints. Usable from Python without the CLI."""

from mambaad_cli.engine.evaluate import EvalResult, evaluate, evaluate_run
from mambaad_cli.engine.train import TrainResult, train

__all__ = ["EvalResult", "TrainResult", "evaluate", "evaluate_run", "train"]

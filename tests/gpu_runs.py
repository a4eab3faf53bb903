"""Shared by the GPU tests that compare a graphed training step with the eager one: deterministic
algorithms, and the same model trained both ways from one start."""

import contextlib
import copy
import os

import torch

from mambaad_cli.engine.graphs import GraphedStep
from mambaad_cli.engine.train import make_train_step

# cuBLAS is deterministic across streams with a fixed workspace (read when cuBLAS starts: set on import,
# before any test runs)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@contextlib.contextmanager
def deterministic():
    """torch's deterministic algorithms and cuDNN's deterministic mode, restored after."""
    saved = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.deterministic = saved[1]


def trainable_flat(model: torch.nn.Module) -> torch.Tensor:
    """Every trainable parameter, flattened into one CPU tensor."""
    return torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad]).cpu()


def eager_then_graphed(reference: torch.nn.Module, cfg, batches: list[torch.Tensor]) -> dict:
    """Copies of `reference` trained on `batches` by make_train_step with plain SGD (AdamW's capturable and
    plain forms differ), eager then graphed: {graphed: (losses, trainable parameters)}, on the CPU. The
    graphed run must have captured its step."""
    runs = {}
    for graphed in (False, True):
        model = copy.deepcopy(reference)
        params = [p for p in model.parameters() if p.requires_grad]
        step = make_train_step(model, model, torch.optim.SGD(params, lr=1e-3), cfg, graphed)
        runs[graphed] = (torch.stack([step(x) for x in batches]).cpu(), trainable_flat(model))
        assert isinstance(step, GraphedStep) is graphed and (not graphed or step.captured)
    return runs

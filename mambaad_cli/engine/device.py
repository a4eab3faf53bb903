"""Device selection and seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from mambaad_cli.errors import UserError


def resolve_device(name: str) -> torch.device:
    """'auto' -> the first CUDA device when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
    return device


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # Bitwise-repeatable runs: slower kernels, and an error on ops that have no deterministic version.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:  # the run's config decides, also for a process that trained deterministically before
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True

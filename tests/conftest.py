"""Test-session setup shared by every test module."""

import os

import pytest
import torch

# Triton reads TRITON_INTERPRET when triton.language is first imported, so it is set here, before any test
# module imports triton: on a machine without a GPU the Triton kernels then run in Triton's CPU interpreter
# (tests/test_triton_scan.py). Nothing else runs Triton kernels on CPU.
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture
def triton_kernels_run():
    """Skips a test whose Triton kernels can run neither on a GPU nor in the interpreter (TRITON_INTERPRET
    set by hand to 0 on a machine without one). Modules of kernel tests use it for every test:
    pytestmark = pytest.mark.usefixtures("triton_kernels_run")."""
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU and TRITON_INTERPRET is not set (tests/conftest.py sets it before triton loads)")


@pytest.fixture(autouse=True)
def _torch_global_modes_restored():
    """train sets PyTorch's deterministic mode and cudnn.benchmark for the process (engine/device.py); each
    test starts from the session's, so that one test's training does not change what auto picks in the
    next (kernels/dispatch.resolve_backend)."""
    saved = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.benchmark = saved[1]

"""Test-session setup shared by every test module."""

import os

import torch

# Triton reads TRITON_INTERPRET when triton.language is first imported, so it is set here, before any test
# module imports triton: on a machine without a GPU the Triton kernels then run in Triton's CPU interpreter
# (tests/test_triton_scan.py). Nothing else runs Triton kernels on CPU.
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

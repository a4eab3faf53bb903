"""The Mamba-1 selective scan: one dispatching entry point, the chunked PyTorch path and the oracle.

``selective_scan`` picks a backend (torch / cuda / triton, see kernels/dispatch.py); ``selective_scan_torch``
is the chunked CPU-friendly implementation; ``selective_scan_ref`` is the plain sequential loop used as the
correctness reference.
"""

from .dispatch import selective_scan
from .reference import selective_scan_ref
from .torch_scan import selective_scan_torch

__all__ = ["selective_scan", "selective_scan_ref", "selective_scan_torch"]

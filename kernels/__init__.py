"""The Mamba-1 selective scan: one dispatching entry point, the fast paths and the oracle.

``selective_scan`` picks a backend (torch / cuda / triton, see kernels/dispatch.py); ``selective_scan_torch``
is the chunked CPU-friendly implementation; ``selective_scan_ref`` is the plain sequential loop used as the
correctness reference; ``selective_scan_directions`` is the SS2D core (K directional scans through index
tables, merged in natural order), fused into one Triton kernel on GPUs.
"""

from .directions import selective_scan_directions
from .dispatch import selective_scan
from .reference import selective_scan_ref
from .torch_scan import selective_scan_torch

__all__ = ["selective_scan", "selective_scan_directions", "selective_scan_ref", "selective_scan_torch"]

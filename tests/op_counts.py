"""Counting the dtype conversions that reach the kernels, for tests of the weight copies (a dispatch mode:
cheaper than torch.profiler, which took 100 s for four small forwards on a 2-core CPU)."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# under inference_mode the mode sees aten.to.dtype itself, before its decomposition into _to_copy
CASTS = (torch.ops.aten._to_copy.default, torch.ops.aten.to.dtype)


class CountCasts(TorchDispatchMode):
    """Within `with CountCasts() as c:`, c.casts counts the dtype conversions (aten._to_copy, or aten.to.dtype
    where inference_mode hands the mode that op before its decomposition)."""

    def __init__(self):
        super().__init__()
        self.casts = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in CASTS:
            self.casts += 1
        return func(*args, **(kwargs or {}))

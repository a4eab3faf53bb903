"""Cheap host-side launches for small kernels.

Small scans are bound by the host, not the GPU: on the H200 host a forward + backward at 8192 x 64 took
1.18 ms of Python and launches for 0.58 ms of kernels (kernels/NOTES.md, v1.8). Two pieces of Triton's
host path cost tens of microseconds per call there and are replaced here:

- ``triton.cdiv`` and ``triton.next_power_of_2`` are constexpr-function wrappers (Triton 3.8) that unwrap
  every argument on each call: plain integer arithmetic does the same on the host.
- ``Autotuner.run`` rebuilds dictionaries of all (about 70) arguments on every launch to find its cached
  pick. ``launch_tuned`` builds the same key from the arguments it has and launches the picked config's
  kernel directly; before the first pick, or where the key does not match (another Triton's key format),
  it goes through the autotuner, so a miss costs time, never correctness.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def cdiv(x: int, y: int) -> int:
    return -(-x // y)


def next_power_of_2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def tuner_key(tuner: Any, named: Mapping[str, Any], args: Sequence[Any]) -> tuple:
    """The key under which ``tuner`` (a triton Autotuner) caches its pick: the values of its key arguments,
    then the dtype of every positional argument that has one, as Autotuner.run builds it (Triton 3.2-3.8)."""
    return tuple([named[k] for k in tuner.keys] + [str(a.dtype) for a in args if hasattr(a, "dtype")])


def launch_tuned(tuner: Any, grid: Callable[[dict], tuple] | tuple, args: Sequence[Any],
                 consts: dict[str, Any], named: Mapping[str, Any]) -> None:
    """``tuner[grid](*args, **consts)``, without the autotuner's per-call bookkeeping once it has a pick.

    ``named`` maps the tuner's key names to their values (those among ``args`` by name, and ``consts``)."""
    if len(tuner.configs) == 1:
        config = tuner.configs[0]
    else:
        config = tuner.cache.get(tuner_key(tuner, named, args))
    if config is None or config.pre_hook is not None:
        tuner[grid](*args, **consts)
        return
    tuner.fn[grid](*args, **consts, **config.all_kwargs())

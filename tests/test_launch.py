"""kernels/launch.py: host arithmetic, and the autotuner bypass against the installed Triton's own Autotuner.

On CPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1), where the
Autotuner looks its picks up exactly as on a GPU: a test that seeds its cache under ``tuner_key`` and sees
no new entry after a call proves that the key is the one this Triton builds.
"""

from __future__ import annotations

import os

import pytest
import torch

from kernels.launch import cdiv, launch_tuned, next_power_of_2, tuner_key

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 63, 64, 65, 1000, 4096])
def test_host_arithmetic_matches_triton(n):
    assert next_power_of_2(max(n, 1)) == triton.next_power_of_2(max(n, 1))
    for d in (1, 2, 3, 16, 128):
        assert cdiv(n, d) == triton.cdiv(n, d)


@triton.jit
def _fill_kernel(out_ptr, n, VALUE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.zeros([BLOCK], tl.float32) + VALUE, mask=offs < n)


def _tuner():
    if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU and TRITON_INTERPRET is not set")
    configs = [triton.Config({"VALUE": 3.0, "BLOCK": 16}), triton.Config({"VALUE": 7.0, "BLOCK": 32})]
    return triton.autotune(configs, key=["n"])(_fill_kernel)


def _grid(n):
    return lambda meta: (cdiv(n, meta["BLOCK"]),)


def test_tuner_key_is_the_autotuners_own():
    tuner = _tuner()
    out = torch.zeros(40, device=DEVICE)
    tuner.cache[tuner_key(tuner, {"n": 40}, (out, 40))] = tuner.configs[1]  # the pick, seeded
    tuner[_grid(40)](out, 40)
    assert len(tuner.cache) == 1  # found under our key: no tuning, no second entry
    assert torch.all(out == 7.0)  # and the seeded config ran


def test_launch_tuned_runs_the_pick_without_the_autotuner(monkeypatch):
    tuner = _tuner()
    out = torch.zeros(40, device=DEVICE)
    tuner.cache[tuner_key(tuner, {"n": 40}, (out, 40))] = tuner.configs[1]
    calls = []
    run = tuner.run
    monkeypatch.setattr(tuner, "run", lambda *a, **k: calls.append(1) or run(*a, **k))
    launch_tuned(tuner, _grid(40), (out, 40), {}, {"n": 40})
    assert calls == [] and torch.all(out == 7.0)


def test_launch_tuned_goes_through_the_autotuner_before_a_pick(monkeypatch):
    tuner = _tuner()
    out = torch.zeros(40, device=DEVICE)
    calls = []
    monkeypatch.setattr(tuner, "run", lambda *a, **k: calls.append(k.get("grid")))
    launch_tuned(tuner, _grid(40), (out, 40), {}, {"n": 40})
    assert len(calls) == 1  # a miss: the autotuner tunes (here stubbed) and launches


@triton.jit
def _fill_flag_kernel(out_ptr, n, FLAG: tl.constexpr, VALUE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.zeros([BLOCK], tl.float32) + VALUE + FLAG, mask=offs < n)


def test_a_constexpr_in_the_key_keeps_one_pick_per_value(monkeypatch):
    # the scan forwards' keys hold STORE_CKPT (a constexpr passed by name), so that training and inference
    # keep picks of their own: under our key as under the autotuner's, each value finds its own pick
    _tuner()  # the same skip
    configs = [triton.Config({"VALUE": 3.0, "BLOCK": 16}), triton.Config({"VALUE": 7.0, "BLOCK": 32})]
    tuner = triton.autotune(configs, key=["n", "FLAG"])(_fill_flag_kernel)
    out = torch.zeros(40, device=DEVICE)
    for flag, pick in ((True, 1), (False, 0)):
        tuner.cache[tuner_key(tuner, {"n": 40, "FLAG": flag}, (out, 40))] = tuner.configs[pick]
    assert len(tuner.cache) == 2  # two keys
    tuner[_grid(40)](out, 40, FLAG=True)  # the autotuner itself finds the seeded pick
    assert len(tuner.cache) == 2 and torch.all(out == 8.0)
    calls = []
    monkeypatch.setattr(tuner, "run", lambda *a, **k: calls.append(1))
    launch_tuned(tuner, _grid(40), (out, 40), {"FLAG": False}, {"n": 40, "FLAG": False})
    assert calls == [] and torch.all(out == 3.0)

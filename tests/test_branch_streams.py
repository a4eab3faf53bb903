"""The LSS module's local branches on streams of their own while a CUDA graph is captured
(model/branch_streams.py): the same results as one stream, eager or graphed, training and scoring."""

import copy

import pytest
import torch
from gpu_runs import deterministic, eager_then_graphed, trainable_flat

from mambaad_cli.config import load_preset
from mambaad_cli.engine.graphs import WARMUP_CALLS, GraphedStep
from mambaad_cli.model import branch_streams, build_model
from mambaad_cli.model.anomaly_map import anomaly_map
from mambaad_cli.model.branch_streams import KNOB, branch_streams_on, run_beside
from mambaad_cli.model.lss import LSSModule


def test_without_a_capture_the_branches_run_in_order_on_the_current_stream():
    calls = []

    def branch(tag):
        return lambda x: calls.append(tag) or x * tag

    x = torch.arange(4.0)
    out, side = run_beside(lambda: calls.append("main") or x + 1, [branch(2), branch(3)], x)
    assert calls == ["main", 2, 3]
    assert torch.equal(out, x + 1) and torch.equal(side[0], 2 * x) and torch.equal(side[1], 3 * x)
    assert not branch_streams_on(x)  # a CPU tensor never leaves its stream


def test_lss_module_is_the_global_chain_and_both_local_branches_fused():
    torch.manual_seed(0)
    lss = LSSModule(16, num_blocks=2, scan_backend="torch").eval()
    x = torch.randn(2, 8, 8, 16)
    g = x
    for block in lss.blocks:
        g = block(g)
    x_cf = x.permute(0, 3, 1, 2)
    mixed = torch.cat([g.permute(0, 3, 1, 2), lss.local5(x_cf), lss.local7(x_cf)], dim=1)
    expected = lss.fuse(mixed).permute(0, 2, 3, 1) + x
    with torch.no_grad():
        assert torch.allclose(lss(x), expected.detach(), atol=1e-6)


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="streams and CUDA graphs need a GPU")


def _deterministic_demo_model(device):
    # no DropPath (eager and graphed runs draw differently), the PyTorch scan (no atomics)
    cfg = load_preset("demo", {"model.encoder.weights": "none", "model.decoder.drop_path_rate": 0.0,
                               "model.decoder.scan_backend": "torch", "train.cuda_graphs": True})
    torch.manual_seed(0)
    return cfg, build_model(cfg).to(device)


@gpu
@pytest.mark.parametrize("knob", ["1", "0"])
def test_a_graphed_step_with_branch_streams_trains_and_scores_as_the_eager_one(monkeypatch, knob):
    monkeypatch.setenv(KNOB, knob)
    device = torch.device("cuda", 0)
    with deterministic():
        cfg, reference = _deterministic_demo_model(device)
        data = torch.Generator(device).manual_seed(1)
        batches = [torch.rand(4, 3, 64, 64, device=device, generator=data) for _ in range(WARMUP_CALLS + 4)]
        branch_streams._STREAMS.clear()
        out = eager_then_graphed(reference, cfg, batches)
        # a captured step used the branch streams exactly when the knob is on
        assert bool(branch_streams._STREAMS) is (knob == "1")
        assert not torch.equal(out[False][1], trainable_flat(reference))
        assert torch.equal(out[True][0], out[False][0])
        assert torch.equal(out[True][1], out[False][1])

        # scoring: the graphed maps are the eager ones
        model = copy.deepcopy(reference).eval()

        def score(x):
            with torch.no_grad():
                return anomaly_map(*model(x), out_size=64)

        scorer = GraphedStep(score)
        eager = [score(x) for x in batches]
        graphed = [scorer(x) for x in batches]
        assert scorer.captured
        for e, g in zip(eager, graphed, strict=True):
            assert torch.equal(e, g)

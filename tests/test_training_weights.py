"""A bf16 training step with copies of the weights autocast casts (engine/training_weights.py): the same
losses and weights, bit for bit, as autocast's own casts, with fewer casts; float32 weights throughout."""

import copy

import pytest
import torch
from gpu_runs import deterministic, eager_then_graphed
from op_counts import CountCasts

from mambaad_cli.config import load_preset
from mambaad_cli.engine.graphs import WARMUP_CALLS
from mambaad_cli.engine.train import adamw, make_train_step
from mambaad_cli.engine.training_weights import KNOB, TrainingCastWeights, train_cast_weights_on
from mambaad_cli.model import build_model


def _bf16_demo():
    # the PyTorch scan and no DropPath: the two runs below must take the same path and draws
    cfg = load_preset("demo", {"model.encoder.weights": "none", "model.decoder.drop_path_rate": 0.0,
                               "model.decoder.scan_backend": "torch", "train.precision": "bf16",
                               "data.image_size": 64, "model.decoder.depths": [1, 1, 1, 1]})
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def test_weight_copies_train_as_autocast_does_with_fewer_casts():
    cfg, reference = _bf16_demo()
    images = [torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    runs = {}
    for cast in (False, True):
        model = copy.deepcopy(reference)
        params = [p for p in model.parameters() if p.requires_grad]
        step = make_train_step(model, model, adamw(params, torch.device("cpu"), 1e-3, False), cfg,
                               graphs=False, cast_weights=cast)
        losses = [step(x) for x in images[:-1]]
        with CountCasts() as counter:
            losses.append(step(images[-1]))
        runs[cast] = (torch.stack(losses), torch.cat([p.detach().flatten() for p in params]), counter.casts)
        assert all(p.dtype == torch.float32 for p in model.state_dict().values() if p.is_floating_point())
    assert not torch.equal(runs[False][1], torch.cat([p.detach().flatten() for p in reference.parameters()
                                                      if p.requires_grad]))
    assert torch.equal(runs[True][0], runs[False][0])
    assert torch.equal(runs[True][1], runs[False][1])
    # each copied weight: one forward cast and one backward cast fewer, for two multi-tensor copies
    copied = len(TrainingCastWeights(reference).names)
    assert copied > 50
    assert runs[False][2] - runs[True][2] >= 2 * copied - 2


@pytest.mark.parametrize(("knob", "precision", "device", "graphs", "ddp", "expected"), [
    ("1", "bf16", "cuda", True, False, True),
    ("", "bf16", "cuda", True, False, True),  # the default since v1.19
    ("0", "bf16", "cuda", True, False, False),
    ("1", "fp32", "cuda", True, False, False),
    ("1", "bf16", "cpu", True, False, False),
    ("1", "bf16", "cuda", False, False, False),  # eager steps would swap attributes on the host each call
    ("1", "bf16", "cuda", True, True, False),  # DDP's hooks sit on the float32 parameters
])
def test_weight_copies_only_for_graphed_bf16_cuda_steps_of_one_process(monkeypatch, knob, precision, device,
                                                                       graphs, ddp, expected):
    if knob:
        monkeypatch.setenv(KNOB, knob)
    else:
        monkeypatch.delenv(KNOB, raising=False)
    assert train_cast_weights_on(precision, torch.device(device), graphs, ddp) is expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_a_graphed_step_with_weight_copies_trains_as_the_eager_autocast_one(monkeypatch):
    """On a GPU, deterministic (the PyTorch scan, no atomics): eager autocast steps, and graphed steps with
    the copies (the knob's path), give the same losses and weights."""
    monkeypatch.setenv(KNOB, "1")
    device = torch.device("cuda", 0)
    with deterministic():
        cfg, reference = _bf16_demo()
        cfg.train.cuda_graphs = True
        reference = reference.to(device)
        data = torch.Generator(device).manual_seed(1)
        batches = [torch.rand(4, 3, 64, 64, device=device, generator=data) for _ in range(WARMUP_CALLS + 4)]
        runs = eager_then_graphed(reference, cfg, batches)
        assert torch.equal(runs[True][0], runs[False][0])
        assert torch.equal(runs[True][1], runs[False][1])

"""The scorer's bf16 weight copies (engine/scoring_weights.py): the same maps as autocast's own casts, the
right parameters, refreshed when the weights change, and only where asked (CPU autocast stands in for CUDA's:
both cast Linear / conv / matmul operands to bf16 the same way)."""

import pytest
import torch
from op_counts import CountCasts

from mambaad_cli.config import load_preset
from mambaad_cli.engine.scoring import _scorer
from mambaad_cli.engine.scoring_weights import KNOB, CastWeights, autocast_cast_parameters, cast_weights_on
from mambaad_cli.model import build_model
from mambaad_cli.model.conv_bias import BiasBeforeNormConv2d

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(scope="module")
def model_and_cfg():
    cfg = load_preset("demo", {"model.encoder.weights": "none", "eval.precision": "bf16"})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # weights away from their initial values (norm weights of 1 round to themselves)
        for p in model.parameters():
            if p.requires_grad:
                p.mul_(1 + 0.1 * torch.rand_like(p))
    return model, cfg


def test_the_parameters_are_those_autocast_casts(model_and_cfg):
    model, _ = model_and_cfg
    names = autocast_cast_parameters(model)
    modules = dict(model.named_modules())
    assert names and len(set(names)) == len(names)
    assert not any(n.startswith("encoder.") for n in names)  # the frozen encoder has its own path
    for name in names:
        owner, _, leaf = name.rpartition(".")
        module = modules[owner]
        matmul_weight = leaf in ("x_proj_weight", "dt_projs_weight")
        assert isinstance(module, torch.nn.Linear | torch.nn.Conv2d) or matmul_weight
    kept = {n for n, _ in model.named_parameters()} - set(names)
    for leaf in ("A_logs", "Ds", "dt_projs_bias", "norm.weight", "out_norm.weight"):
        assert any(n.endswith(leaf) for n in kept)  # float32 operands stay float32


def test_maps_are_the_same_bits_as_autocasts_casts(model_and_cfg):
    model, cfg = model_and_cfg
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        plain = _scorer(model, cfg, CPU, graphs=False, cast=False)(images)
        cast = _scorer(model, cfg, CPU, graphs=False, cast=True)(images)
    assert torch.equal(cast, plain)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # functional_call put them back


def test_the_copies_leave_autocast_nothing_to_cast(model_and_cfg):
    """What the copies are for: one cast per weight fewer at each forward (counted on the CPU's autocast)."""
    model, cfg = model_and_cfg
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))

    def casts(cast: bool) -> int:
        scorer = _scorer(model, cfg, CPU, graphs=False, cast=cast)
        with torch.inference_mode():
            scorer(images)  # the copies are made at the first call
            with CountCasts() as counter:
                scorer(images)
        return counter.casts

    # scoring leaves out the LSS 1x1 convs' biases, which their instance norm cancels (model/conv_bias.py):
    # autocast casts those in neither run
    left_out = {f"{n}.bias" for n, m in model.named_modules() if isinstance(m, BiasBeforeNormConv2d)}
    cast_names = set(autocast_cast_parameters(model))
    assert left_out and left_out <= cast_names
    assert casts(False) - casts(True) >= len(cast_names - left_out)


def test_a_float32_operand_cast_would_change_the_maps(model_and_cfg):
    """The control: the same comparison sees a parameter that autocast keeps in float32 (A_logs)."""
    model, cfg = model_and_cfg
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    a_logs = next(n for n, _ in model.named_parameters() if n.endswith("A_logs"))
    wrong = CastWeights(model, [a_logs])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model(images)[1][0]
        changed = torch.func.functional_call(model, wrong.tensors(), (images,))[1][0]
    assert not torch.equal(plain, changed)


def test_copies_follow_changed_weights_in_place(model_and_cfg):
    model, _ = model_and_cfg
    name = autocast_cast_parameters(model)[0]
    param = dict(model.named_parameters())[name]
    weights = CastWeights(model, [name])
    first = weights.tensors()[name]
    assert first.dtype == torch.bfloat16 and torch.equal(first, param.detach().to(torch.bfloat16))
    assert weights.tensors()[name] is first  # unchanged weights: the same copy
    with torch.no_grad():
        param.add_(1.0)
    try:
        again = weights.tensors()[name]
        assert again is first  # the same storage, which a captured graph reads
        assert torch.equal(again, param.detach().to(torch.bfloat16))
    finally:
        with torch.no_grad():
            param.sub_(1.0)


@pytest.mark.parametrize(("knob", "precision", "device", "graphs", "expected"), [
    ("1", "bf16", CUDA, True, True),
    (None, "bf16", CUDA, True, True),  # the default since v1.16
    ("0", "bf16", CUDA, True, False),  # turned off
    ("1", "fp32", CUDA, True, False),  # nothing is cast in float32
    ("1", "bf16", CPU, True, False),
    ("1", "bf16", CUDA, False, False),  # eager scoring would pay functional_call's host time per batch
])
def test_only_graphed_bf16_cuda_scoring_uses_copies_unless_turned_off(monkeypatch, knob, precision, device,
                                                                      graphs, expected):
    if knob is None:
        monkeypatch.delenv(KNOB, raising=False)
    else:
        monkeypatch.setenv(KNOB, knob)
    assert cast_weights_on(precision, device, graphs) is expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_a_graphed_scorer_with_copies_gives_the_eager_maps(model_and_cfg):
    """On the GPU: warm-up calls, the capture and replays of a graphed scorer with the copies, against the
    plain eager scorer (the forward scan has no atomics: the same maps up to float32 rounding at most)."""
    model, cfg = model_and_cfg
    model = model.to(CUDA)
    try:
        plain = _scorer(model, cfg, CUDA, graphs=False, cast=False)
        graphed = _scorer(model, cfg, CUDA, graphs=True, cast=True)
        for i in range(6):
            images = torch.rand(2, 3, 64, 64, device=CUDA, generator=torch.Generator(CUDA).manual_seed(i))
            with torch.inference_mode():
                torch.testing.assert_close(graphed(images), plain(images), rtol=0, atol=1e-5)
        assert graphed.captured
    finally:
        model.to(CPU)

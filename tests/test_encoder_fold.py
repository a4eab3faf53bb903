"""The frozen encoder's fast path under 16-bit autocast (model/encoder_fold.py): a BatchNorm-folded copy of
the backbone in the autocast dtype. CPU only, random weights, small images."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mambaad_cli.config import EncoderConfig
from mambaad_cli.model.encoder import FrozenEncoder
from mambaad_cli.model.encoder_fold import FOLD_ENV, ConvAddReLU, fold_mode, folded_copy

# The default encoder (plain nn.BatchNorm2d) and the bundled one (timm BatchNormAct2d after Conv2dSame).
NAMES = ["resnet34.bt_in1k", "tf_efficientnet_lite0"]
# conv -> [+ residual] -> ReLU chains: ResNet-34's stem and both convs of its 13 blocks up to stage 3 (the
# 2 downsample convs feed the residual); EfficientNet-Lite's activation is ReLU6, which has no epilogue.
EPILOGUES = {"resnet34.bt_in1k": 27, "tf_efficientnet_lite0": 0}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def randomise_batchnorm(module: torch.nn.Module, seed: int) -> int:
    """Non-trivial running statistics and affine parameters (fresh ones make BatchNorm ~ the identity, which
    a wrong fold would pass); returns how many BatchNorm layers there are."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    with torch.no_grad():
        for bn in bns:
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
            bn.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            bn.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=gen) * 0.3)
    return len(bns)


def make_encoder(name: str, seed: int = 0) -> FrozenEncoder:
    torch.manual_seed(seed)
    enc = FrozenEncoder(EncoderConfig(name=name, weights="none"))
    randomise_batchnorm(enc.backbone, seed)
    return enc


@pytest.fixture(autouse=True)
def fold_on(monkeypatch):
    """The copy in training too is opt-in (MAMBAAD_ENCODER_FOLD=1): these tests are about the copy, so they
    turn it on (the encoders they make are in training mode, nn.Module's default)."""
    monkeypatch.setenv(FOLD_ENV, "1")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def bf16_forward(enc: FrozenEncoder, images: torch.Tensor) -> list[torch.Tensor]:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return enc(images)


@pytest.mark.parametrize("epilogues", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_folded_copy_matches_backbone_in_fp32(name, epilogues, images):
    enc = make_encoder(name)
    n_bn = sum(isinstance(m, _BatchNorm) for m in enc.backbone.modules())
    folded = folded_copy(enc.backbone, epilogues=epilogues)
    # every BatchNorm folded away: the default encoder must get the folded path, the bundled one does too
    assert (folded.folded, folded.unfolded) == (n_bn, 0)
    assert not any(isinstance(m, _BatchNorm) for m in folded.module.modules())
    n_epilogues = EPILOGUES[name] if epilogues else 0
    assert folded.epilogues == n_epilogues
    assert sum(isinstance(m, ConvAddReLU) for m in folded.module.modules()) == n_epilogues
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in folded.module.parameters())
    x = (images - enc.mean) / enc.std
    with torch.no_grad():
        want, got = enc.backbone(x), folded.module(x)
    assert len(got) == len(want) == 3
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert rel_err(g, w) < 1e-5
    # the source backbone is untouched (the copy is a deep copy)
    assert sum(isinstance(m, _BatchNorm) for m in enc.backbone.modules()) == n_bn


@pytest.mark.parametrize("name", NAMES)
def test_bf16_fast_path_matches_autocast_path(name, images, monkeypatch):
    enc = make_encoder(name)
    fast = bf16_forward(enc, images)
    assert enc._fold.entry is not None and enc._fold.entry.folded > 0  # the fast path ran
    monkeypatch.setenv(FOLD_ENV, "0")
    slow = bf16_forward(enc, images)
    reference = enc(images)  # fp32
    assert len(fast) == len(slow) == 3
    for f, s, r in zip(fast, slow, reference, strict=True):
        assert f.shape == s.shape and f.dtype == s.dtype == torch.bfloat16
        assert rel_err(f, s) < 2.5e-2
        assert rel_err(f, r) < 2.5e-2  # as close to fp32 as autocast's own path is
        assert rel_err(s, r) < 2.5e-2


def test_fold_env_switch_is_read_at_every_forward(images, monkeypatch):
    enc = make_encoder("resnet34.bt_in1k")
    monkeypatch.setenv(FOLD_ENV, "0")
    bf16_forward(enc, images)
    assert enc._fold.key is None and enc._fold.entry is None  # never built
    monkeypatch.setenv(FOLD_ENV, "bn")
    only_bn = bf16_forward(enc, images)
    assert (enc._fold.entry.folded, enc._fold.entry.epilogues) == (29, 0)
    monkeypatch.setenv(FOLD_ENV, "1")
    full = bf16_forward(enc, images)
    assert (enc._fold.entry.folded, enc._fold.entry.epilogues) == (29, 27)
    for a, b in zip(full, only_bn, strict=True):
        assert torch.equal(a, b)  # on the CPU ConvAddReLU runs the ops it replaced


def test_fast_path_leaves_state_dict_and_parameters_alone(images):
    enc = make_encoder("resnet34.bt_in1k")
    keys = list(enc.state_dict())
    params = [id(p) for p in enc.parameters()]
    buffers = [id(b) for b in enc.buffers()]
    modules = [id(m) for m in enc.modules()]
    bf16_forward(enc, images)
    fast = enc._fold.entry.module
    assert list(enc.state_dict()) == keys
    assert [id(p) for p in enc.parameters()] == params
    assert [id(b) for b in enc.buffers()] == buffers
    assert [id(m) for m in enc.modules()] == modules
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in enc.parameters())
    # .to() does not reach the copy (it is rebuilt for the new tensors instead)
    enc.to(torch.float64)
    assert all(p.dtype == torch.bfloat16 for p in fast.parameters())
    enc.to(torch.float32)
    bf16_forward(enc, images)
    assert enc._fold.entry.module is not fast


def test_load_state_dict_rebuilds_the_copy(images):
    enc = make_encoder("resnet34.bt_in1k", seed=0)
    other = make_encoder("resnet34.bt_in1k", seed=1)
    before = bf16_forward(enc, images)
    fast = enc._fold.entry.module
    again = bf16_forward(enc, images)
    assert enc._fold.entry.module is fast  # cached while nothing changes
    for b, a in zip(before, again, strict=True):
        assert torch.equal(b, a)
    enc.load_state_dict(other.state_dict())
    after = bf16_forward(enc, images)
    assert enc._fold.entry.module is not fast
    want = bf16_forward(other, images)
    for a, w, b in zip(after, want, before, strict=True):
        assert rel_err(a, w) < 1e-6
        assert rel_err(a, b) > 0.1


def test_fp32_path_is_the_backbone_bit_for_bit(images):
    enc = make_encoder("resnet34.bt_in1k")
    bf16_forward(enc, images)  # a fast copy exists, and must not be used outside autocast
    got = enc(images)
    with torch.no_grad():
        want = enc.backbone((images - enc.mean) / enc.std)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32
        assert torch.equal(g, w)


def test_channels_last_copy_keeps_the_layout(images):
    enc = make_encoder("resnet34.bt_in1k").to(memory_format=torch.channels_last)
    x = images.to(memory_format=torch.channels_last)
    out = bf16_forward(enc, x)
    convs = [m for m in enc._fold.entry.module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert all(o.is_contiguous(memory_format=torch.channels_last) for o in out)


def test_inference_mode_and_copies(images):
    enc = make_encoder("resnet34.bt_in1k")
    with torch.inference_mode():  # evaluation builds the copy under inference mode ...
        scored = bf16_forward(enc, images)
    assert enc._fold.entry is not None
    trained = bf16_forward(enc, images)  # ... and training's no-grad encoder forward uses it outside
    for a, b in zip(scored, trained, strict=True):
        assert torch.equal(a, b)
    # a deep copy (or pickle) of the encoder starts with an empty cache, and builds its own
    clone = copy.deepcopy(enc)
    assert clone._fold.entry is None and clone._fold.key is None
    for a, b in zip(bf16_forward(clone, images), trained, strict=True):
        assert torch.equal(a, b)
    # a backbone made of inference tensors keeps no version counters: the autocast path, no copy
    with torch.inference_mode():
        frozen = make_encoder("resnet34.bt_in1k")
    with torch.inference_mode():
        out = bf16_forward(frozen, images)
    assert frozen._fold.entry is None and out[0].dtype == torch.bfloat16


def autocast_backbone(enc: FrozenEncoder, images: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return enc.backbone((images - enc.mean) / enc.std)


@pytest.mark.parametrize("value", [None, "", "auto", "0"])
def test_training_and_cpus_run_autocasts_own_path(images, monkeypatch, value):
    """In training mode (the default's too; trained against the copy's features, tire's P-AP came out lower on
    the H200: module docstring of encoder_fold) and on CPUs, bf16 runs autocast's own path and builds no
    copy; with 0 in eval mode too."""
    if value is None:
        monkeypatch.delenv(FOLD_ENV)
    else:
        monkeypatch.setenv(FOLD_ENV, value)
    enc = make_encoder("resnet34.bt_in1k").train()
    out = bf16_forward(enc, images)
    assert enc._fold.key is None and enc._fold.entry is None
    for o, w in zip(out, autocast_backbone(enc, images), strict=True):
        assert torch.equal(o, w)
    if value is None or value == "0":  # eval mode: the default's CPU rule, and 0's everywhere
        enc.eval()
        assert enc._fold.key is None
        for o, w in zip(bf16_forward(enc, images), autocast_backbone(enc, images), strict=True):
            assert torch.equal(o, w)


@pytest.mark.parametrize("value", [None, "", "auto"])
@pytest.mark.parametrize(("training", "device", "expected"), [
    (False, "cuda", "fp16"),  # scoring on a GPU
    (True, "cuda", None),  # training: autocast's features, as trained since v1.15
    (False, "cpu", None),  # float16 convolutions are slow on CPUs
    (True, "cpu", None),
])
def test_the_default_is_the_fp16_copy_for_gpu_scoring(monkeypatch, value, training, device, expected):
    if value is None:
        monkeypatch.delenv(FOLD_ENV)
    else:
        monkeypatch.setenv(FOLD_ENV, value)
    assert fold_mode(training, device) == expected


@pytest.mark.parametrize("value", ["0", "1", "bn", "fp16"])
def test_a_mode_set_applies_in_training_and_scoring_alike(monkeypatch, value):
    monkeypatch.setenv(FOLD_ENV, value)
    want = {"0": None, "1": "all"}.get(value, value)
    assert {fold_mode(t, d) for t in (True, False) for d in ("cuda", "cpu")} == {want}


def test_eval_mode_uses_the_copy_and_training_mode_keeps_it_for_the_next(images, monkeypatch):
    """With the fold asked for in eval mode only (the default's rule, here on CPU through a patched rule),
    training-mode forwards run autocast's path and leave the copy cached for the next evaluation."""
    from mambaad_cli.model import encoder_fold

    monkeypatch.setattr(encoder_fold, "fold_mode", lambda training, device_type: None if training else "fp16")
    enc = make_encoder("resnet34.bt_in1k").eval()
    scored = bf16_forward(enc, images)
    entry = enc._fold.entry
    assert entry is not None and all(p.dtype == torch.float16 for p in entry.module.parameters())
    monkeypatch.setenv(FOLD_ENV, "fp16")
    monkeypatch.setattr(encoder_fold, "fold_mode", lambda training, device_type: "fp16")
    for a, b in zip(scored, bf16_forward(make_encoder("resnet34.bt_in1k"), images), strict=True):
        assert torch.equal(a, b)  # the float16 copy's features
    monkeypatch.setattr(encoder_fold, "fold_mode", lambda training, device_type: None if training else "fp16")
    enc.train()
    for o, w in zip(bf16_forward(enc, images), autocast_backbone(enc, images), strict=True):
        assert torch.equal(o, w)
    assert enc._fold.entry is entry


@pytest.mark.parametrize("name", NAMES)
def test_fp16_copy_is_closer_to_fp32_than_bf16_autocast(name, images, monkeypatch):
    """MAMBAAD_ENCODER_FOLD=fp16: the folded copy stored and run in float16 (3 more mantissa bits than bf16),
    its features handed on in autocast's dtype; nearer float32 than autocast's own bf16 path."""
    enc = make_encoder(name)
    reference = enc(images)  # fp32
    monkeypatch.setenv(FOLD_ENV, "0")
    autocast_path = bf16_forward(enc, images)
    monkeypatch.setenv(FOLD_ENV, "fp16")
    fp16 = bf16_forward(enc, images)
    entry = enc._fold.entry
    assert entry is not None and entry.folded > 0
    assert all(p.dtype == torch.float16 for p in entry.module.parameters())
    for f, a, r in zip(fp16, autocast_path, reference, strict=True):
        assert f.dtype == torch.bfloat16  # what the decoder gets under bf16 autocast, as before
        assert rel_err(f, r) < rel_err(a, r) / 2


def test_fp16_copy_past_fp16_range_is_not_used(images, monkeypatch):
    """A backbone whose features overflow float16 keeps the autocast path (bf16 has float32's range)."""
    enc = make_encoder("resnet34.bt_in1k")
    with torch.no_grad():
        enc.backbone.layer3[-1].bn2.weight.mul_(1e6)  # the last block's output far past 65504
    monkeypatch.setenv(FOLD_ENV, "fp16")
    out = bf16_forward(enc, images)
    assert enc._fold.key is not None and enc._fold.entry is None  # tried, refused
    assert all(bool(torch.isfinite(o).all()) for o in out)
    monkeypatch.setenv(FOLD_ENV, "0")
    for o, a in zip(out, bf16_forward(enc, images), strict=True):
        assert torch.equal(o, a)

"""LayerNormKeepDtype: nn.LayerNorm, except that a 16-bit input under 16-bit autocast stays 16-bit."""

import torch
from torch import nn

from mambaad_cli.model.norm import LayerNormKeepDtype


def pair(dim=48, seed=0):
    torch.manual_seed(seed)
    ref = nn.LayerNorm(dim)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    ours = LayerNormKeepDtype(dim)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def test_without_autocast_it_is_layer_norm():
    ref, ours = pair()
    x = torch.randn(3, 7, 48) * 3 + 1
    assert torch.equal(ours(x), ref(x))
    assert list(ours.state_dict()) == list(ref.state_dict())


def test_fp32_input_under_autocast_is_left_to_autocast():
    ref, ours = pair()
    x = torch.randn(4, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = ours(x), ref(x)
    assert a.dtype == b.dtype and torch.equal(a, b)


def test_bf16_input_under_bf16_autocast_stays_bf16_and_matches_fp32_norm():
    ref, ours = pair()
    x32 = (torch.randn(5, 9, 48) * 2 + 0.5).to(torch.bfloat16).float()  # values exact in bf16
    x16 = x32.to(torch.bfloat16).requires_grad_()
    x32.requires_grad_()
    g = torch.randn(5, 9, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16 = ours(x16)
    y32 = ref(x32)
    assert y16.dtype == torch.bfloat16
    rel = ((y16.float() - y32).norm() / y32.norm()).item()
    assert rel < 1e-2  # the output's bf16 rounding; a wrong mean or variance is off by far more
    (y16.float() * g).sum().backward()
    (y32 * g).sum().backward()
    assert x16.grad.dtype == torch.bfloat16 and ours.weight.grad.dtype == torch.float32
    grads = [(x16.grad.float(), x32.grad), (ours.weight.grad, ref.weight.grad),
             (ours.bias.grad, ref.bias.grad)]
    for a, b in grads:
        assert ((a - b).norm() / b.norm()).item() < 2e-2

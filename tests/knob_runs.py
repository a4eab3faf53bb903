"""An environment knob set or unset, and one forward and backward of a module with it: the tests that compare
a knob's path with the default's (bias + SiLU pass, B / C views, the cancelled conv bias, dt_proj's padding)
and those of where a knob applies."""

import contextlib

import torch


def ramp_loss(y):
    """A loss that weighs every output element differently (a ramp from -1 to 1), in fp32: so that each
    element's gradient is distinct and a swapped or dropped element shows."""
    return (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum()


def set_knob(monkeypatch, name, value):
    """Env name=value for the test; a value of None unsets it: the default."""
    if value is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, value)


def run_with_knob(monkeypatch, name, value, module, x, loss, autocast=None):
    """module(x) with env name=value and loss(y) backpropagated: (y detached, x's gradient, every parameter's
    gradient by name; a parameter without one fails). ``autocast``: a dtype to run the forward under. A
    value of None unsets the knob: the default."""
    set_knob(monkeypatch, name, value)
    module.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_()
    with torch.autocast(x.device.type, dtype=autocast) if autocast else contextlib.nullcontext():
        y = module(xi)
    loss(y).backward()
    return y.detach(), xi.grad, {n: p.grad.clone() for n, p in module.named_parameters()}

"""Conv2d whose bias gradient is one matrix product, for the decoder's and the fusion's biased convs.

Autograd's convolution backward takes a bias's gradient with PyTorch's reduction over (batch, H, W); on a
channels-last map that is a column sum of a (B*H*W, C) matrix, which its reduce kernel runs at a fraction of
the copy bandwidth: 20-63 us at the batch-16 maps of 32 x 32 and 64 x 64 on the H200, against 6-9 us for
ones(1, B*H*W) @ (B*H*W, C) in cuBLAS (benchmarks/bias_grad_bench.py, kernels/NOTES.md v1.19), 48 such
sums a training step with ResNet-34. BiasGradConv2d keeps nn.Conv2d's parameters, state dict and forward
kernels; its backward asks aten.convolution_backward for the input and weight gradients only and takes the
bias's as that product (float32 accumulation, as the reduction's; the rounding order differs).

It applies where it was timed: CUDA, a bias, channels-last gradients, a graph that wants the bias's
gradient; elsewhere (CPU, no grad, under torch.compile, MAMBAAD_CONV_BIAS_GRAD=sum) nn.Conv2d's own path.
MAMBAAD_CONV_BIAS_GRAD=mm takes it on any device (the CPU tests).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

KNOB = "MAMBAAD_CONV_BIAS_GRAD"


def bias_grad_by_product(rows_grad: torch.Tensor) -> torch.Tensor:
    """Column sums of a (M, C) matrix as ones(1, M) @ it, in its dtype: (C,)."""
    ones = torch.ones(1, rows_grad.shape[0], device=rows_grad.device, dtype=rows_grad.dtype)
    return torch.mm(ones, rows_grad).view(-1)


def bias_grad(grad: torch.Tensor) -> torch.Tensor:
    """A conv bias's gradient from the output gradient (B, C, H, W): the product on channels-last maps (a
    view as (B*H*W, C)), PyTorch's sum otherwise."""
    if grad.is_contiguous(memory_format=torch.channels_last):
        return bias_grad_by_product(grad.permute(0, 2, 3, 1).reshape(-1, grad.shape[1]))
    return grad.sum((0, 2, 3))


class _ConvProductBias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding, dilation, groups)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        want_x, want_w, want_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = None
        if want_x or want_w:
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad, x, weight, None, stride, padding, dilation, False, [0, 0], groups,
                [want_x, want_w, False])
        return grad_x, grad_w, bias_grad(grad) if want_b else None, None, None, None, None


def product_bias_grad_on(x: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Where BiasGradConv2d takes its own backward (module docstring)."""
    mode = os.environ.get(KNOB, "auto")  # auto: CUDA; mm: any device (tests); sum: never
    return (
        bias is not None
        and (x.is_cuda if mode == "auto" else mode == "mm")
        and torch.is_grad_enabled()
        and bias.requires_grad
        and not torch.compiler.is_compiling()
    )


class BiasGradConv2d(nn.Conv2d):
    """nn.Conv2d (zeros padding) with the bias gradient of bias_grad (module docstring)."""

    def _conv_forward(self, x, weight, bias):
        if self.padding_mode != "zeros" or not product_bias_grad_on(x, bias):
            return super()._conv_forward(x, weight, bias)
        if torch.is_autocast_enabled(x.device.type):  # autocast's casts for conv2d, made here (a custom
            dtype = torch.get_autocast_dtype(x.device.type)  # Function's forward is not autocast's to see)
            x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            return _ConvProductBias.apply(x, weight, bias, self.stride, self.padding, self.dilation,
                                          self.groups)

"""Conv2d whose bias gradient is one matrix product, for the decoder's and the fusion's biased convs.

Autograd's convolution backward takes a bias's gradient with PyTorch's reduction over (batch, H, W); on a
channels-last map that is a column sum of a (B*H*W, C) matrix, which its reduce kernel runs at a fraction of
the copy bandwidth: 20-63 us at the batch-16 maps of 32 x 32 and 64 x 64 on the H200, against 6-9 us for
ones(1, B*H*W) @ (B*H*W, C) in cuBLAS (kernels/channel_sums.py), 48 such sums a training step with
ResNet-34. BiasGradConv2d keeps nn.Conv2d's parameters, state dict and forward
kernels; its backward asks aten.convolution_backward for the input and weight gradients only and takes the
bias's as that product (float32 accumulation, as the reduction's; the rounding order differs).

It applies where it was timed: CUDA, a bias, channels-last gradients, a graph that wants the bias's
gradient; elsewhere (CPU, no grad, under torch.compile, MAMBAAD_CONV_BIAS_GRAD=sum) nn.Conv2d's own path.
MAMBAAD_CONV_BIAS_GRAD=mm takes it on any device (the CPU tests). On CUDA the forward of a biased 1x1 conv
of a channels-last map is one GEMM (gemm_1x1_on; MAMBAAD_CONV1X1_GEMM, the default since v1.21; bias-free
ones too since v1.23).

BiasBeforeNormConv2d is the LSS local branches' biased 1x1 conv, whose output an InstanceNorm2d normalises
at once (spec 1.5): the norm subtracts each map's per-channel mean, so a per-channel bias cancels exactly,
and its gradient is exactly zero. MAMBAAD_NORM_CONV_BIAS: `auto` (the default) leaves the bias out where no
gradient is taken (scoring: one broadcast add fewer per conv, +1.2 % / +1.7 % inference at batch 16 / 64 on
an H200), `skip` in training too (the bias gets a zero gradient; training was 0.2-0.4 % slower, within
noise), `add` never. The parameter stays in the state dict, so checkpoints load either way.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from kernels.channel_sums import channel_sums, map_rows

KNOB = "MAMBAAD_CONV_BIAS_GRAD"
GEMM_KNOB = "MAMBAAD_CONV1X1_GEMM"


def gemm_1x1_on(conv: nn.Conv2d, x: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """MAMBAAD_CONV1X1_GEMM: `auto` (the default) or `1` on CUDA, `any` on any device (tests), `0` never;
    `biased` (CUDA) and `any-biased` (any device) leave the bias-free ones to cuDNN, as v1.21-v1.22 did.
    Where it holds (a 1x1, stride-1, ungrouped conv of a channels-last map), the forward is one GEMM, with
    the bias, if any, in its epilogue (cuBLASLt), where PyTorch's cuDNN path adds a conv's bias in a
    broadcast kernel of its own (49 a batch-16 step in v1.18's trace; the LSS `fuse` and fusion's 1x1 convs
    here). On an H200 the biased ones gained 0.2-0.7 % training and 0.2-0.9 % inference at batch 16 and 64
    (kernels/NOTES.md v1.21); the bias-free ones (the LSS branches' in scoring, whose bias the instance norm
    cancels) another 0.2-0.7 % inference at batch 16, 0.1 % at 64 (v1.23)."""
    mode = os.environ.get(GEMM_KNOB, "auto")
    return (
        (x.is_cuda if mode in ("auto", "1", "biased") else mode in ("any", "any-biased"))
        and (bias is not None or mode not in ("biased", "any-biased"))
        and conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0)
        and conv.dilation == (1, 1) and conv.groups == 1
        and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    )


def gemm_1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv2d(x, weight, bias) for gemm_1x1_on's convs: the (B*H*W, C_in) rows of the channels-last map
    times the weight, returned as a channels-last (B, C_out, H, W) view."""
    b, _, h, w = x.shape
    # 2-D rows (a view), so that F.linear is one addmm: the bias in the GEMM's epilogue where cuBLASLt can
    return F.linear(map_rows(x), weight.flatten(1), bias).view(b, h, w, -1).permute(0, 3, 1, 2)


class _ConvProductBias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, gemm):
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding, dilation, groups)
        if gemm:
            return gemm_1x1(x, weight, bias)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        want_x, want_w, want_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = None
        if want_x or want_w:  # cuDNN's; as two GEMMs it was level or slower in the model (v1.22)
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad, x, weight, None, stride, padding, dilation, False, [0, 0], groups,
                [want_x, want_w, False])
        return grad_x, grad_w, channel_sums(grad) if want_b else None, None, None, None, None, None


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


NORM_KNOB = "MAMBAAD_NORM_CONV_BIAS"


class _ZeroBiasGrad(torch.autograd.Function):
    """y as it is, and a zero gradient for the bias that a following instance norm cancels: the exact
    derivative, where autograd would sum the incoming gradient's rounding noise."""

    @staticmethod
    def forward(ctx, y, bias):
        ctx.bias_like = (bias.shape, bias.dtype)
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):
        shape, dtype = ctx.bias_like
        return grad, grad.new_zeros(shape, dtype=dtype)


class BiasGradConv2d(nn.Conv2d):
    """nn.Conv2d (zeros padding) with the bias gradient of kernels.channel_sums (module docstring)."""

    def _conv_forward(self, x, weight, bias):
        gemm = self.padding_mode == "zeros" and gemm_1x1_on(self, x, bias)
        if self.padding_mode != "zeros" or not product_bias_grad_on(x, bias):
            return gemm_1x1(x, weight, bias) if gemm else super()._conv_forward(x, weight, bias)
        if torch.is_autocast_enabled(x.device.type):  # autocast's casts for conv2d, made here (a custom
            dtype = torch.get_autocast_dtype(x.device.type)  # Function's forward is not autocast's to see)
            x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            return _ConvProductBias.apply(x, weight, bias, self.stride, self.padding, self.dilation,
                                          self.groups, gemm)


class BiasBeforeNormConv2d(BiasGradConv2d):
    """A biased conv followed by an instance norm, which cancels its bias (module docstring)."""

    def _conv_forward(self, x, weight, bias):
        mode = os.environ.get(NORM_KNOB, "auto")
        grad = torch.is_grad_enabled() and bias is not None and bias.requires_grad
        if bias is None or mode == "add" or (grad and mode != "skip"):  # other values: as auto
            return super()._conv_forward(x, weight, bias)
        y = super()._conv_forward(x, weight, None)
        return _ZeroBiasGrad.apply(y, bias) if grad else y  # DDP expects a gradient for every parameter
